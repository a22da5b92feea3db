//! The gateway's shared consent state: what every gateway node must agree on when it decides
//! whether a consent may be used.
//!
//! - revoked consent ids, kept until the consent expires (after that the token is refused for
//!   its `exp` anyway);
//! - use counters for consents with `max_uses`;
//! - frequency limits from policy, counted per (consumer, subject, dataset) in fixed windows;
//! - a replay guard: a consumer's request id is admitted once within its time to live;
//! - each consumer agency's request rate (a sustained rate and a burst), so that every node
//!   enforces one agency-wide rate.
//!
//! One trait, [`ConsentState`], with an in-process back-end ([`MemoryState`], the default for a
//! single node) and a Redis back-end ([`RedisState`], for several nodes behind one service).
//! Both pass the same conformance suite (`tests/conformance.rs`), Redis against a real
//! `redis-server`. [`SharedState`] picks one at run time.
//!
//! The state never holds personal identifiers: the gateway passes a keyed pseudonym of the
//! subject (HMAC-SHA256 under its own key), never the ID the request names.
//!
//! [`ConsentState::admit`] is one atomic step: it checks everything before it changes anything,
//! so a refused request consumes no use and records no request id.

mod memory;
mod redis_state;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::time::{Duration, SystemTime};

pub use memory::{DEFAULT_CAPACITY, MemoryState};
pub use redis_state::{RedisOptions, RedisState};

/// Everything one request asks of the shared state. Each part is optional: a request under a
/// statute rule without a frequency limit needs no state at all.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The time the gateway decides at.
    pub now: SystemTime,
    /// The replay guard for the request's id.
    pub request: Option<RequestGuard<'a>>,
    /// The consent the request uses.
    pub consent: Option<ConsentUse<'a>>,
    /// The frequency limits that apply to the request (one per rule that has one), at most
    /// [`MAX_RATES`].
    pub rates: &'a [RateLimit<'a>],
    /// The consumer agency's request rate, checked first: a request that goes to the state
    /// anyway pays for its agency's rate in the same round trip.
    pub agency: Option<AgencyRate<'a>>,
}

/// The most frequency limits one admission may carry.
pub const MAX_RATES: usize = 16;

/// A consumer's request id, admitted once within `ttl`.
#[derive(Debug, Clone, Copy)]
pub struct RequestGuard<'a> {
    /// The consumer agency.
    pub consumer: &'a str,
    /// The request id the consumer chose.
    pub request_id: &'a str,
    /// How long the id is remembered.
    pub ttl: Duration,
}

/// The use of one consent.
#[derive(Debug, Clone, Copy)]
pub struct ConsentUse<'a> {
    /// The consent id (the token's `jti`).
    pub id: &'a str,
    /// When the consent expires (the token's `exp`); its state is kept until then.
    pub expires_at: SystemTime,
    /// How many requests the consent allows, if it limits them.
    pub max_uses: Option<u64>,
}

/// A frequency limit of one rule: at most `limit` requests per `window` for one consumer,
/// subject and dataset. Windows are fixed and aligned to the Unix epoch. Each rule counts on its
/// own.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit<'a> {
    /// The rule whose limit this is.
    pub rule: &'a str,
    /// The consumer agency.
    pub consumer: &'a str,
    /// The subject's pseudonym, never the subject's ID.
    pub subject: &'a str,
    /// The dataset.
    pub dataset: &'a str,
    /// Requests allowed per window.
    pub limit: u32,
    /// The window's length (at least one second).
    pub window: Duration,
}

/// A consumer agency's request rate: `per_second` sustained, and up to `burst` at once after a
/// quiet spell. It is a GCRA (generic cell rate algorithm, a token bucket kept as one number,
/// the "theoretical arrival time" of the next request): each request moves that time one
/// interval (1/`per_second`) on from the later of itself and now, and is refused if that puts it
/// more than `burst` intervals ahead of now. One number per agency, updated in one step.
#[derive(Debug, Clone, Copy)]
pub struct AgencyRate<'a> {
    /// The consumer agency.
    pub agency: &'a str,
    /// Requests per second, sustained (at least 1; at most 1,000,000: time is kept in
    /// microseconds).
    pub per_second: u32,
    /// Requests admitted at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl AgencyRate<'_> {
    /// The time one request takes from the allowance, in microseconds.
    pub fn interval_us(&self) -> u64 {
        (1_000_000 / u64::from(self.per_second.max(1))).max(1)
    }

    /// How far ahead of now the theoretical arrival time may run, in microseconds.
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us() * u64::from(self.burst.max(1))
    }

    /// One GCRA step: given the agency's theoretical arrival time `tat_us` and the time `now_us`
    /// (both in microseconds on one clock), the new arrival time if a request is admitted now,
    /// or how long until one would be. Every back-end (and the gateway's own in-process limiter)
    /// decides with this arithmetic; the Redis back-end runs the same in its script.
    pub fn step(&self, tat_us: u64, now_us: u64) -> Result<u64, Duration> {
        let next = tat_us.max(now_us) + self.interval_us();
        let ahead = next - now_us;
        if ahead > self.tolerance_us() {
            Err(Duration::from_micros(ahead - self.tolerance_us()))
        } else {
            Ok(next)
        }
    }
}

/// The answer to an [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; its uses and counts are recorded.
    Admitted {
        /// The consent's uses including this one, when the consent limits them.
        uses: Option<u64>,
    },
    /// Refused; nothing was recorded.
    Refused(Refusal),
}

/// Why the shared state refuses a request. The codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The consumer already sent this request id.
    Replayed,
    /// The consent was revoked.
    Revoked,
    /// The consent has been used `max_uses` times.
    UsesExhausted,
    /// The frequency limit is reached; a new window starts after `retry_after`.
    RateLimited {
        /// Until the next window.
        retry_after: Duration,
    },
    /// The consumer agency's request rate is used up; a request would be admitted after
    /// `retry_after`.
    AgencyRateLimited {
        /// Until the agency's next request fits.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Replayed => "request_replayed",
            Refusal::Revoked => "consent_revoked",
            Refusal::UsesExhausted => "consent_uses_exhausted",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::AgencyRateLimited { .. } => "agency_rate_limited",
        }
    }
}

/// The state cannot answer. The gateway fails closed: a request that needs the state is refused
/// (UNAVAILABLE), and nothing is released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The back-end cannot be reached or answered wrongly.
    #[error("the shared state is unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for the operator.
        reason: String,
    },
    /// The in-process state holds as many live entries as it may.
    #[error("the shared state is full ({entries} live entries)")]
    Full {
        /// Its capacity.
        entries: usize,
    },
    /// The request is not one the state can hold (an empty id, a window under one second).
    #[error("invalid state request: {0}")]
    Invalid(&'static str),
}

impl StateError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Unavailable { .. } => "state_unavailable",
            StateError::Full { .. } => "state_full",
            StateError::Invalid(_) => "state_invalid",
        }
    }
}

/// Shared consent state. Implementations are cheap to share between tasks.
pub trait ConsentState: Send + Sync {
    /// Checks the request against its agency's rate, the replay guard, revocations, use counts
    /// and the frequency limits, in that order, and records it only if every check passes: one
    /// atomic step.
    fn admit(
        &self,
        admission: &Admission<'_>,
    ) -> impl Future<Output = Result<Verdict, StateError>> + Send;

    /// Checks one request against its agency's rate alone, and counts it if it fits: the
    /// admission of a request that needs nothing else of the state (one round trip).
    fn throttle(
        &self,
        rate: &AgencyRate<'_>,
        now: SystemTime,
    ) -> impl Future<Output = Result<Verdict, StateError>> + Send {
        let admission = Admission {
            now,
            request: None,
            consent: None,
            rates: &[],
            agency: Some(*rate),
        };
        async move { self.admit(&admission).await }
    }

    /// Revokes a consent until `expires_at`. Revoking twice is the same as once.
    fn revoke(
        &self,
        consent_id: &str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Whether a consent is revoked.
    fn is_revoked(
        &self,
        consent_id: &str,
        now: SystemTime,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;
}

/// The start and end of the fixed window `now` falls in, as seconds since the Unix epoch, and
/// the time left until its end.
pub(crate) fn window_of(now: SystemTime, window: Duration) -> (u64, Duration) {
    let length = window.as_secs().max(1);
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let index = since_epoch.as_secs() / length;
    let end = Duration::from_secs((index + 1) * length);
    (index, end.saturating_sub(since_epoch))
}

/// Checks what every back-end refuses alike.
pub(crate) fn validate(admission: &Admission<'_>) -> Result<(), StateError> {
    if let Some(request) = admission.request
        && request.request_id.is_empty()
    {
        return Err(StateError::Invalid("empty request id"));
    }
    if let Some(consent) = admission.consent
        && consent.id.is_empty()
    {
        return Err(StateError::Invalid("empty consent id"));
    }
    if admission.rates.len() > MAX_RATES {
        return Err(StateError::Invalid(
            "more frequency limits than one admission may carry",
        ));
    }
    if admission
        .rates
        .iter()
        .any(|rate| rate.window < Duration::from_secs(1))
    {
        return Err(StateError::Invalid("a frequency window under one second"));
    }
    if let Some(agency) = admission.agency {
        if agency.agency.is_empty() {
            return Err(StateError::Invalid("an agency rate without an agency"));
        }
        if agency.per_second == 0 || agency.per_second > 1_000_000 || agency.burst == 0 {
            return Err(StateError::Invalid(
                "an agency rate outside 1 to 1,000,000 per second, or a burst of 0",
            ));
        }
    }
    Ok(())
}

/// A map key made of several parts, each prefixed with its length, so that no choice of parts
/// can produce another's key (`"a:b" + "c"` and `"a" + "b:c"` differ).
pub(crate) fn key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for part in parts {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key
}

/// The back-end a gateway runs with, chosen by its configuration.
#[derive(Debug)]
pub enum SharedState {
    /// In process: one node.
    Memory(MemoryState),
    /// Redis: several nodes.
    Redis(RedisState),
}

impl SharedState {
    /// `memory`, or a `redis://host:port[/db]` URL.
    pub fn from_config(value: &str) -> Result<SharedState, String> {
        if value == "memory" {
            return Ok(SharedState::Memory(MemoryState::new()));
        }
        if value.starts_with("redis://") {
            return RedisState::new(value, RedisOptions::default())
                .map(SharedState::Redis)
                .map_err(|error| error.to_string());
        }
        Err(format!(
            "shared state {value:?}: write `memory` (one node) or a redis://host:port URL"
        ))
    }
}

impl ConsentState for SharedState {
    async fn admit(&self, admission: &Admission<'_>) -> Result<Verdict, StateError> {
        match self {
            SharedState::Memory(state) => state.admit(admission).await,
            SharedState::Redis(state) => state.admit(admission).await,
        }
    }

    async fn revoke(
        &self,
        consent_id: &str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), StateError> {
        match self {
            SharedState::Memory(state) => state.revoke(consent_id, expires_at, now).await,
            SharedState::Redis(state) => state.revoke(consent_id, expires_at, now).await,
        }
    }

    async fn is_revoked(&self, consent_id: &str, now: SystemTime) -> Result<bool, StateError> {
        match self {
            SharedState::Memory(state) => state.is_revoked(consent_id, now).await,
            SharedState::Redis(state) => state.is_revoked(consent_id, now).await,
        }
    }
}
