//! The Redis back-end, for several gateway nodes that must agree: a revocation made through one
//! node holds on every node from the next request on.
//!
//! Keys (`PREFIX` is `isnad` unless configured; every variable part is length-prefixed, so
//! that no request id or consent id can be made to name another key):
//!
//! | key | value | expires |
//! |---|---|---|
//! | `PREFIX:req:<consumer><request id>` | `1` | after the replay guard's time to live |
//! | `PREFIX:revoked:<consent id>` | `1` | at the consent's expiry |
//! | `PREFIX:uses:<consent id>` | uses so far | at the consent's expiry |
//! | `PREFIX:rate:<rule><consumer><subject pseudonym><dataset><window s><window index>` | count | at the window's end |
//! | `PREFIX:agency:<agency>` | the agency's next theoretical arrival time (Redis clock, us) | when the agency is back to its full burst |
//!
//! [`ConsentState::admit`] is one Lua script: one round trip, atomic, every check before any
//! write. Every call is bounded by a timeout; any failure is [`StateError::Unavailable`], and
//! the connection manager reconnects by itself when Redis is back. Redis Cluster is not
//! supported (the script's keys may live on different shards).

use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Admission, ConsentState, Refusal, StateError, Verdict, key, validate, window_of};

/// Checks in order, then records: returns {0, uses or -1} when admitted, {1} replayed,
/// {2} revoked, {3} uses exhausted, {4, i} rate limited by the i-th limit (1-based), {5, us}
/// the agency's rate is used up for another `us` microseconds.
///
/// KEYS: request, revoked, uses, agency, then one rate window per limit.
/// ARGV: request? (0/1), request ttl ms, consent? (0/1), max uses (-1: none), consent expiry
/// (Unix ms), agency? (0/1), the agency's interval (us), its burst, then per limit: its count,
/// its window's end (Unix ms).
///
/// The agency's rate runs on Redis's clock (TIME), not the nodes': every node then moves one
/// arrival time on one clock, and a node whose clock is wrong cannot push an agency's
/// allowance into the future for the others. Times are microseconds, below 2^53, so exact in
/// Lua's doubles; they are written with `%.0f`, since Lua would print them in exponent form.
const ADMIT: &str = r"
local tat = 0
local now = 0
if ARGV[6] == '1' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  tat = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[7])
  local tolerance = tonumber(ARGV[7]) * tonumber(ARGV[8])
  if tat - now > tolerance then return {5, tat - now - tolerance} end
end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local uses = -1
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
  if ARGV[4] ~= '-1' then
    local used = tonumber(redis.call('GET', KEYS[3]) or '0')
    if used >= tonumber(ARGV[4]) then return {3} end
    uses = used + 1
  end
end
for i = 5, #KEYS do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then return {4, i - 4} end
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[4], string.format('%.0f', tat),
    'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1))
end
if ARGV[1] == '1' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[2]) end
if uses >= 0 then
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIREAT', KEYS[3], ARGV[5])
end
for i = 5, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i])
end
return {0, uses}
";

/// How the Redis back-end connects.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The first part of every key.
    pub prefix: String,
    /// The longest a call may take before it fails (closed).
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            prefix: "isnad".to_owned(),
            timeout: Duration::from_millis(250),
        }
    }
}

/// The Redis back-end. Cheap to share: the connection manager multiplexes one connection.
pub struct RedisState {
    connection: ConnectionManager,
    script: redis::Script,
    options: RedisOptions,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> StateError {
    StateError::Unavailable {
        reason: error.to_string(),
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl RedisState {
    /// A back-end for the Redis at `url`. It connects on first use, so a gateway starts while
    /// Redis is down (requests that need the state fail closed until it is up); it must be
    /// called within a Tokio runtime.
    pub fn new(url: &str, options: RedisOptions) -> Result<RedisState, StateError> {
        let client = redis::Client::open(url).map_err(|error| StateError::Unavailable {
            reason: format!("bad Redis URL: {error}"),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(RedisState {
            connection,
            script: redis::Script::new(ADMIT),
            options,
        })
    }

    fn key(&self, kind: &str, parts: &[&str]) -> String {
        format!("{}:{kind}:{}", self.options.prefix, key(parts))
    }

    /// Runs `call` within the timeout; any failure is `Unavailable`.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.options.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(unavailable(error)),
            Err(_) => Err(unavailable(format!(
                "no answer within {:?}",
                self.options.timeout
            ))),
        }
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let pong: String = self
            .bounded(redis::cmd("PING").query_async(&mut connection))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(unavailable(format!("PING answered {pong:?}")))
        }
    }
}

impl ConsentState for RedisState {
    async fn admit(&self, admission: &Admission<'_>) -> Result<Verdict, StateError> {
        validate(admission)?;
        let unused = format!("{}:unused", self.options.prefix);
        let request_key = admission.request.map_or_else(
            || unused.clone(),
            |guard| self.key("req", &[guard.consumer, guard.request_id]),
        );
        let agency_key = admission
            .agency
            .map_or_else(|| unused.clone(), |rate| self.key("agency", &[rate.agency]));
        let (revoked_key, uses_key) = admission.consent.map_or_else(
            || (unused.clone(), unused.clone()),
            |consent| {
                (
                    self.key("revoked", &[consent.id]),
                    self.key("uses", &[consent.id]),
                )
            },
        );
        let windows: Vec<_> = admission
            .rates
            .iter()
            .map(|rate| (rate, window_of(admission.now, rate.window)))
            .collect();
        let flag = |present: bool| if present { "1" } else { "0" };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(request_key)
            .key(revoked_key)
            .key(uses_key)
            .key(agency_key)
            .arg(flag(admission.request.is_some()))
            .arg(
                admission
                    .request
                    .map_or(0, |guard| guard.ttl.as_millis().max(1) as u64),
            )
            .arg(flag(admission.consent.is_some()))
            .arg(
                admission
                    .consent
                    .and_then(|consent| consent.max_uses)
                    .map_or(-1, |max| i64::try_from(max).unwrap_or(i64::MAX)),
            )
            .arg(
                admission
                    .consent
                    .map_or(0, |consent| unix_ms(consent.expires_at)),
            )
            .arg(flag(admission.agency.is_some()))
            .arg(admission.agency.map_or(0, |rate| rate.interval_us()))
            .arg(admission.agency.map_or(0, |rate| rate.burst));
        for (rate, (index, left)) in &windows {
            invocation
                .key(self.key(
                    "rate",
                    &[
                        rate.rule,
                        rate.consumer,
                        rate.subject,
                        rate.dataset,
                        &rate.window.as_secs().to_string(),
                        &index.to_string(),
                    ],
                ))
                .arg(rate.limit)
                .arg(unix_ms(admission.now + *left));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        match reply.as_slice() {
            [0, uses] => Ok(Verdict::Admitted {
                uses: u64::try_from(*uses).ok(),
            }),
            [1] => Ok(Verdict::Refused(Refusal::Replayed)),
            [2] => Ok(Verdict::Refused(Refusal::Revoked)),
            [3] => Ok(Verdict::Refused(Refusal::UsesExhausted)),
            [4, which] => Ok(Verdict::Refused(Refusal::RateLimited {
                retry_after: usize::try_from(*which)
                    .ok()
                    .and_then(|which| windows.get(which.checked_sub(1)?))
                    .map_or(Duration::ZERO, |(_, (_, left))| *left),
            })),
            [5, retry_us] => Ok(Verdict::Refused(Refusal::AgencyRateLimited {
                retry_after: Duration::from_micros(u64::try_from(*retry_us).unwrap_or(0)),
            })),
            other => Err(unavailable(format!("the admit script answered {other:?}"))),
        }
    }

    async fn revoke(
        &self,
        consent_id: &str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), StateError> {
        if consent_id.is_empty() {
            return Err(StateError::Invalid("empty consent id"));
        }
        if expires_at <= now {
            // Expired consents are refused for their `exp`; there is nothing to keep.
            return Ok(());
        }
        let key = self.key("revoked", &[consent_id]);
        let at = unix_ms(expires_at);
        let mut connection = self.connection.clone();
        // Create it, or keep the later of the two expiries: revoking twice is revoking once.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(at)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(at)
            .arg("GT")
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut connection)).await
    }

    async fn is_revoked(&self, consent_id: &str, _now: SystemTime) -> Result<bool, StateError> {
        let key = self.key("revoked", &[consent_id]);
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("EXISTS").arg(key).query_async(&mut connection))
            .await
    }
}
