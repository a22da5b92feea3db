//! Step 6: fetch from the provider agency over a pooled mTLS channel, presenting the gateway's
//! own certificate and accepting only the provider's SPIFFE ID, within the request's deadline,
//! refusing replies over `max_provider_reply_bytes`, behind a circuit breaker.
//!
//! The breaker counts consecutive failures per provider (unreachable, timed out, refusing the
//! gateway, failing; a subject the provider does not hold is an answer, not a failure). After
//! `circuit_failures` of them the circuit opens: for `circuit_open_ms` requests to that provider
//! fail at once with `provider_circuit_open` rather than tie up a connection and the caller's
//! deadline. Then one trial request goes through; its success closes the circuit, its failure
//! opens it again. Other providers are never affected.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use isnad_policy::{AgencyId, Catalogue};
use isnad_proto::v1::{FetchRequest, Value};
use isnad_tls::client::{ChannelSettings, Target};
use isnad_tls::policy::ExpectedPeer;
use isnad_tls::{LiveTls, SpiffeId};
use tokio::time::Instant;
use tonic::Code;

use super::{Denial, Step};
use crate::config::Limits;

mod unary;

use unary::{CallError, Upstream};

/// A provider's connections (several HTTP/2 connections, used in turn) and its circuit breaker.
#[derive(Debug)]
struct Pool {
    upstream: Upstream,
    breaker: Breaker,
}

/// A circuit breaker for one provider (see the module's documentation).
#[derive(Debug)]
struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    /// Set while the circuit is open; after it, one trial may go.
    open_until: Option<Instant>,
    /// A trial request is under way.
    trial: bool,
}

/// Leave to call a provider. Dropped without an outcome (the caller went away), a trial frees
/// its place for the next request.
struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    settled: bool,
}

impl Breaker {
    fn new(limits: &Limits) -> Breaker {
        Breaker {
            failures_to_open: limits.circuit_failures,
            open_for: Duration::from_millis(limits.circuit_open_ms),
            state: Mutex::new(BreakerState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A permit, or how long the circuit stays open.
    fn admit(&self) -> Result<Permit<'_>, Duration> {
        if self.failures_to_open == 0 {
            return Ok(self.permit(false));
        }
        let mut state = self.lock();
        match state.open_until {
            None => Ok(self.permit(false)),
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else if state.trial {
                    Err(Duration::ZERO)
                } else {
                    state.trial = true;
                    Ok(self.permit(true))
                }
            }
        }
    }

    fn permit(&self, trial: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            trial,
            settled: false,
        }
    }
}

impl Permit<'_> {
    fn succeeded(mut self) {
        self.settled = true;
        let mut state = self.breaker.lock();
        state.consecutive_failures = 0;
        state.open_until = None;
        state.trial = false;
    }

    fn failed(mut self, provider: &AgencyId) {
        self.settled = true;
        let breaker = self.breaker;
        if breaker.failures_to_open == 0 {
            return;
        }
        let mut state = breaker.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let opens = self.trial || state.consecutive_failures == breaker.failures_to_open;
        state.trial = false;
        if opens {
            state.open_until = Some(Instant::now() + breaker.open_for);
            tracing::warn!(
                %provider,
                failures = state.consecutive_failures,
                open_ms = breaker.open_for.as_millis() as u64,
                "provider circuit opened: requests to it fail at once until a trial succeeds"
            );
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.settled {
            self.breaker.lock().trial = false;
        }
    }
}

/// Channels to every provider agency of the catalogue.
#[derive(Debug)]
pub struct Upstreams {
    pools: HashMap<String, Pool>,
}

impl Upstreams {
    /// Prepares connection pools (they connect on first use) to every agency with an endpoint.
    /// `overrides` replaces the catalogue's endpoint of an agency.
    pub fn new(
        catalogue: &Catalogue,
        overrides: &BTreeMap<String, String>,
        tls: &Arc<LiveTls>,
        limits: &Limits,
    ) -> anyhow::Result<Upstreams> {
        let mut pools = HashMap::new();
        for agency in catalogue.agencies.values() {
            let Some(endpoint) = overrides
                .get(agency.id.as_str())
                .or(agency.endpoint.as_ref())
            else {
                continue;
            };
            let id = SpiffeId::parse(&format!(
                "spiffe://{}/agency/{}",
                catalogue.federation, agency.id
            ))
            .map_err(|e| anyhow::anyhow!("agency {}: {e}", agency.id))?;
            let config = Arc::new(isnad_tls::policy::client_config(
                tls,
                ExpectedPeer::Exactly(id),
            )?);
            let target = Target::parse(endpoint)?;
            let settings = ChannelSettings {
                coalesce_writes: true,
                revocation: Some(tls.clone()),
                ..ChannelSettings::default()
            };
            let upstream = Upstream::new(
                target,
                config,
                settings,
                limits.upstream_connections,
                limits.max_provider_reply_bytes,
            )
            .map_err(|e| anyhow::anyhow!("agency {}: endpoint {endpoint}: {e}", agency.id))?;
            pools.insert(
                agency.id.as_str().to_owned(),
                Pool {
                    upstream,
                    breaker: Breaker::new(limits),
                },
            );
        }
        Ok(Upstreams { pools })
    }

    /// Asks `provider` for the fields of `request`; fails with DEADLINE_EXCEEDED at `deadline`.
    pub(crate) async fn fetch(
        &self,
        provider: &AgencyId,
        request: FetchRequest,
        deadline: Instant,
    ) -> Result<HashMap<String, Value>, Denial> {
        let deny = |code, reason, message: String| Denial::new(Step::Fetch, code, reason, message);
        let pool = self.pools.get(provider.as_str()).ok_or_else(|| {
            deny(
                Code::Unavailable,
                "provider_not_configured",
                format!("no endpoint is configured for provider {provider}"),
            )
        })?;
        let permit = pool.breaker.admit().map_err(|open_for| {
            deny(
                Code::Unavailable,
                "provider_circuit_open",
                format!(
                    "provider {provider} failed repeatedly; the gateway tries it again in {} ms",
                    open_for.as_millis()
                ),
            )
        })?;
        let call = pool
            .upstream
            .fetch(&request, deadline.saturating_duration_since(Instant::now()));
        let timed_out = || {
            deny(
                Code::DeadlineExceeded,
                "provider_timeout",
                format!("provider {provider} did not answer within the deadline"),
            )
        };
        let Ok(reply) = tokio::time::timeout_at(deadline, call).await else {
            permit.failed(provider);
            return Err(timed_out());
        };
        let error = match reply {
            Ok(response) => {
                permit.succeeded();
                return Ok(response.attributes);
            }
            Err(CallError::Status(Code::NotFound)) => {
                // An answer: the provider works, it has no record of this person.
                permit.succeeded();
                return Err(deny(
                    Code::NotFound,
                    "subject_not_found",
                    format!("provider {provider} holds no record for this subject"),
                ));
            }
            Err(error) => error,
        };
        permit.failed(provider);
        // The provider's own message is neither read nor passed on: it is not ours to vouch for.
        tracing::info!(%provider, %error, "provider call failed");
        Err(match error {
            CallError::TooLarge => deny(
                Code::Unavailable,
                "provider_reply_too_large",
                format!("provider {provider} sent a reply over the gateway's size limit"),
            ),
            CallError::Status(Code::DeadlineExceeded | Code::Cancelled) => timed_out(),
            CallError::Unreachable(_) | CallError::Status(Code::Unavailable) => deny(
                Code::Unavailable,
                "provider_unavailable",
                format!("provider {provider} cannot be reached"),
            ),
            CallError::Status(Code::PermissionDenied | Code::Unauthenticated) => deny(
                Code::Unavailable,
                "provider_refused",
                format!("provider {provider} refused the gateway"),
            ),
            CallError::Status(code) => deny(
                Code::Unavailable,
                "provider_error",
                format!("provider {provider} failed ({code:?})"),
            ),
            CallError::Malformed(_) => deny(
                Code::Unavailable,
                "provider_error",
                format!("provider {provider} sent a reply that is not a well-formed gRPC reply"),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, open_ms: u64) -> Breaker {
        Breaker::new(&Limits {
            circuit_failures: failures,
            circuit_open_ms: open_ms,
            ..Limits::default()
        })
    }

    fn provider() -> AgencyId {
        AgencyId::new("labour-ministry")
    }

    #[tokio::test]
    async fn opens_after_consecutive_failures_only() {
        let breaker = breaker(3, 60_000);
        for _ in 0..2 {
            breaker.admit().expect("closed").failed(&provider());
        }
        // A success in between resets the count.
        breaker.admit().expect("closed").succeeded();
        for _ in 0..2 {
            breaker.admit().expect("closed").failed(&provider());
        }
        breaker.admit().expect("still closed").failed(&provider());
        assert!(breaker.admit().is_err(), "three in a row open it");
    }

    #[tokio::test]
    async fn one_trial_at_a_time_and_a_dropped_trial_frees_its_place() {
        let breaker = breaker(1, 0);
        breaker.admit().expect("closed").failed(&provider());
        let trial = breaker.admit().expect("the open period is over: a trial");
        assert!(breaker.admit().is_err(), "only one trial at a time");
        drop(trial);
        let trial = breaker.admit().expect("a dropped trial frees its place");
        trial.failed(&provider());
        let trial = breaker.admit().expect("open for 0 ms, then another trial");
        trial.succeeded();
        for _ in 0..3 {
            breaker.admit().expect("closed again").succeeded();
        }
    }

    #[tokio::test]
    async fn zero_failures_turns_it_off() {
        let breaker = breaker(0, 60_000);
        for _ in 0..10 {
            breaker.admit().expect("never opens").failed(&provider());
        }
    }
}
