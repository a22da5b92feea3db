//! Step 2, per consumer agency: how many of its requests are in the pipeline at once, and how
//! fast it sends them. One agency flooding the gateway must not take what another needs.
//!
//! - **In flight** (`agency_in_flight`, per node): a counter per agency. A request beyond the
//!   limit is refused at once (`agency_busy`), never queued: a queue would hold the flood's
//!   requests (and their memory, and their deadlines) in the gateway, and a place freed by one
//!   of them would go to the next of them. The place is held until the request is answered,
//!   audit included ([`Place`] gives it back when dropped, also when the caller goes away).
//! - **Rate** (`agency_rate`, `agency_burst`): a GCRA per agency ([`isnad_state::AgencyRate`]),
//!   refused with `agency_rate_limited` and the time until the next request fits. Every node
//!   checks it in process first, lock-free; when the state is Redis, an admitted request is then
//!   checked agency-wide in the shared state (in the admission of step 4 when the request goes
//!   there anyway, in a round trip of its own otherwise), so several nodes enforce one rate.
//!   The in-process check at the full agency rate is never stricter than the shared one (one
//!   node cannot see more of an agency's requests than all of them do), so it only turns away
//!   early, without a round trip, what the shared check would refuse anyway.
//!
//! When the shared state cannot be reached, the rate falls back to the in-process check (so an
//! agency gets at most its rate on each node) instead of refusing: a rate limit protects the
//! gateway, it authorizes nothing, and requests under statute rules that need no state keep
//! working while the state is away (issue 4). After a failure the shared check is skipped for
//! [`SHARED_RETRY`], so that a Redis that does not answer does not add its timeout to every
//! request.
//!
//! The per-request cost: one lookup in a map that is replaced whole only when an agency calls
//! for the first time (read through `arc-swap`, no lock), two atomic additions for the place,
//! one compare-and-swap for the rate.
//!
//! Refusals are audited like every other one, but logged once a second per agency with a
//! count, so that a flood does not flood the logs too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use isnad_state::{AgencyRate, ConsentState, Refusal, SharedState, Verdict};
use tonic::Code;

use super::super::{Denial, Step};
use crate::config::{self, Limits};

/// How long the shared rate check is skipped after the shared state failed to answer.
pub(crate) const SHARED_RETRY: Duration = Duration::from_secs(1);

/// One agency's limits, as in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    /// Requests in the pipeline at once (0: no limit).
    in_flight: u32,
    /// Requests per second (0: no limit).
    rate: u32,
    /// Requests at once after a quiet spell (at least 1 when `rate` is set).
    burst: u32,
}

impl Share {
    fn of(defaults: &Limits, own: Option<&config::AgencyLimits>) -> Share {
        let own = own.copied().unwrap_or_default();
        let rate = own.rate.unwrap_or(defaults.agency_rate);
        let burst = own.burst.unwrap_or(defaults.agency_burst);
        Share {
            in_flight: own.in_flight.unwrap_or(defaults.agency_in_flight),
            rate,
            // 0: one second's worth.
            burst: if burst == 0 { rate.max(1) } else { burst },
        }
    }
}

/// One agency's counters on this node.
#[derive(Debug)]
struct Slot {
    agency: String,
    share: Share,
    in_flight: AtomicU32,
    /// The theoretical arrival time of the agency's next request, microseconds since
    /// [`AgencyLimits::epoch`].
    tat_us: AtomicU64,
    /// Requests refused since the last log line about this agency.
    refused: AtomicU64,
    /// When that line was written, seconds since the epoch (plus one, so 0 is "never").
    logged_s: AtomicU64,
}

/// The agencies' places and rates on this node.
#[derive(Debug)]
pub(crate) struct AgencyLimits {
    defaults: Limits,
    overrides: BTreeMap<String, config::AgencyLimits>,
    slots: ArcSwap<foldhash::HashMap<String, Arc<Slot>>>,
    /// Serializes adding an agency (the map is copied and replaced).
    adding: Mutex<()>,
    /// The clock of the in-process rates: monotonic, so a step of the system clock changes
    /// nothing.
    epoch: Instant,
    /// The state is shared (Redis): rates are checked agency-wide there too.
    shared: bool,
    /// The shared state failed to answer the last rate check.
    shared_down: AtomicBool,
    /// No shared rate check before this time (microseconds since the epoch).
    shared_retry_us: AtomicU64,
}

/// An agency's place in the pipeline, given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    slot: Arc<Slot>,
    counted: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.counted {
            self.slot.in_flight.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Place {
    /// The agency's rate, when it is also to be checked in the shared state.
    pub(crate) fn shared_rate(&self, limits: &AgencyLimits) -> Option<AgencyRate<'_>> {
        (limits.shared && self.slot.share.rate > 0).then(|| AgencyRate {
            agency: &self.slot.agency,
            per_second: self.slot.share.rate,
            burst: self.slot.share.burst,
        })
    }
}

impl AgencyLimits {
    /// `defaults` for every agency, `overrides` by agency id; `shared`: the state is Redis.
    pub(crate) fn new(
        defaults: Limits,
        overrides: BTreeMap<String, config::AgencyLimits>,
        shared: bool,
    ) -> AgencyLimits {
        AgencyLimits {
            defaults,
            overrides,
            slots: ArcSwap::from_pointee(foldhash::HashMap::default()),
            adding: Mutex::new(()),
            epoch: Instant::now(),
            shared,
            shared_down: AtomicBool::new(false),
            shared_retry_us: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn slot(&self, agency: &str) -> Arc<Slot> {
        if let Some(slot) = self.slots.load().get(agency) {
            return slot.clone();
        }
        // An agency's first request on this node: copy the map with it added. Agencies are the
        // catalogue's (step 1 refused any other), so this happens a few times per process.
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.slots.load_full();
        if let Some(slot) = current.get(agency) {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            agency: agency.to_owned(),
            share: Share::of(&self.defaults, self.overrides.get(agency)),
            in_flight: AtomicU32::new(0),
            tat_us: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            logged_s: AtomicU64::new(0),
        });
        let mut next = (*current).clone();
        next.insert(agency.to_owned(), slot.clone());
        self.slots.store(Arc::new(next));
        slot
    }

    /// Takes a place for a request of `agency` and checks its rate on this node.
    pub(crate) fn enter(&self, agency: &str) -> Result<Place, Denial> {
        let slot = self.slot(agency);
        let share = slot.share;
        let counted = share.in_flight > 0;
        if counted {
            let before = slot.in_flight.fetch_add(1, Ordering::Acquire);
            if before >= share.in_flight {
                slot.in_flight.fetch_sub(1, Ordering::Release);
                self.refused(&slot, "agency_busy");
                return Err(busy_denial(share.in_flight));
            }
        }
        // From here on the place is given back on any return.
        let place = Place { slot, counted };
        if share.rate > 0 {
            let rate = AgencyRate {
                agency,
                per_second: share.rate,
                burst: share.burst,
            };
            let now = self.now_us();
            let tat = &place.slot.tat_us;
            let mut seen = tat.load(Ordering::Relaxed);
            loop {
                match rate.step(seen, now) {
                    Ok(next) => match tat.compare_exchange_weak(
                        seen,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(actual) => seen = actual,
                    },
                    Err(retry_after) => {
                        self.refused(&place.slot, "agency_rate_limited");
                        return Err(rate_denial(Some(&rate), retry_after));
                    }
                }
            }
        }
        Ok(place)
    }

    /// Checks the agency's rate in the shared state, when the state is shared and step 4 did
    /// not check it already. Falls back to the in-process check (already passed) when the state
    /// does not answer.
    pub(crate) async fn check_shared(
        &self,
        state: &SharedState,
        place: &Place,
    ) -> Result<(), Denial> {
        let Some(rate) = place.shared_rate(self) else {
            return Ok(());
        };
        if self.now_us() < self.shared_retry_us.load(Ordering::Relaxed) {
            return Ok(());
        }
        match state.throttle(&rate, std::time::SystemTime::now()).await {
            Ok(Verdict::Admitted { .. }) => {
                self.shared_answered();
                Ok(())
            }
            Ok(Verdict::Refused(Refusal::AgencyRateLimited { retry_after })) => {
                self.shared_answered();
                self.refused(&place.slot, "agency_rate_limited");
                Err(rate_denial(Some(&rate), retry_after))
            }
            Ok(Verdict::Refused(other)) => {
                // A throttle asks nothing else of the state; any other refusal is a bug there.
                tracing::error!(
                    reason = other.code(),
                    "the shared state refused an agency rate check for another reason"
                );
                Ok(())
            }
            Err(error) => {
                self.shared_retry_us.store(
                    self.now_us() + u64::try_from(SHARED_RETRY.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                if !self.shared_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %error,
                        "agency rates cannot be checked in the shared state: each node enforces \
                         them on its own until it answers again"
                    );
                }
                Ok(())
            }
        }
    }

    /// The shared state answered a rate check (here or in step 4's admission).
    pub(crate) fn shared_answered(&self) {
        if self.shared_down.swap(false, Ordering::Relaxed) {
            tracing::info!("agency rates are checked in the shared state again");
        }
    }

    /// Counts a refusal, and logs the agency's refusals at most once a second.
    fn refused(&self, slot: &Slot, reason: &'static str) {
        slot.refused.fetch_add(1, Ordering::Relaxed);
        let second = self.epoch.elapsed().as_secs() + 1;
        let logged = slot.logged_s.load(Ordering::Relaxed);
        if logged < second
            && slot
                .logged_s
                .compare_exchange(logged, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let count = slot.refused.swap(0, Ordering::Relaxed);
            tracing::warn!(
                agency = %slot.agency,
                reason,
                refused = count,
                in_flight_limit = slot.share.in_flight,
                rate = slot.share.rate,
                burst = slot.share.burst,
                "agency over its limits: requests refused since the last report"
            );
        }
    }
}

fn busy_denial(limit: u32) -> Denial {
    Denial::new(
        Step::Admit,
        Code::ResourceExhausted,
        "agency_busy",
        format!(
            "this agency has {limit} requests in progress on this gateway node, its limit; \
             requests beyond it are not queued: retry when one has been answered"
        ),
    )
}

/// The refusal of a request over its agency's rate (`rate`, when known), with the time until
/// the next one fits.
pub(crate) fn rate_denial(rate: Option<&AgencyRate<'_>>, retry_after: Duration) -> Denial {
    let limit = rate.map_or_else(String::new, |rate| {
        format!(" ({} per second, {} at once)", rate.per_second, rate.burst)
    });
    Denial::new(
        Step::Admit,
        Code::ResourceExhausted,
        "agency_rate_limited",
        format!(
            "this agency's requests are over its rate{limit}; the next fits in {} ms",
            retry_after.as_millis().max(1)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(in_flight: u32, rate: u32, burst: u32) -> AgencyLimits {
        AgencyLimits::new(
            Limits {
                agency_in_flight: in_flight,
                agency_rate: rate,
                agency_burst: burst,
                ..Limits::default()
            },
            BTreeMap::new(),
            false,
        )
    }

    #[test]
    fn a_place_is_refused_beyond_the_limit_and_given_back_when_dropped() {
        let limits = limits(2, 0, 0);
        let first = limits.enter("housing-programme").expect("first");
        let _second = limits.enter("housing-programme").expect("second");
        let refused = limits.enter("housing-programme").expect_err("third");
        assert_eq!(
            (refused.code, refused.reason),
            (Code::ResourceExhausted, "agency_busy")
        );
        // Another agency has places of its own.
        let _other = limits.enter("health-authority").expect("another agency");
        drop(first);
        limits
            .enter("housing-programme")
            .expect("a place was freed");
    }

    #[test]
    fn a_refused_rate_does_not_keep_the_place() {
        let limits = limits(1, 1, 1);
        drop(limits.enter("housing-programme").expect("the burst of one"));
        let refused = limits
            .enter("housing-programme")
            .expect_err("over the rate");
        assert_eq!(refused.reason, "agency_rate_limited");
        assert!(
            refused.message.contains("1 per second"),
            "{}",
            refused.message
        );
        // The place taken before the rate check was given back: the in-flight count is 0.
        let slot = limits.slot("housing-programme");
        assert_eq!(slot.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_burst_defaults_to_one_second_of_the_rate() {
        let limits = limits(0, 5, 0);
        for n in 0..5 {
            limits
                .enter("housing-programme")
                .unwrap_or_else(|d| panic!("request {n}: {}", d.message));
        }
        assert!(limits.enter("housing-programme").is_err());
    }

    #[test]
    fn an_agency_of_its_own_gets_its_own_limits() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "health-authority".to_owned(),
            config::AgencyLimits {
                in_flight: Some(0),
                rate: Some(0),
                burst: None,
            },
        );
        let limits = AgencyLimits::new(
            Limits {
                agency_in_flight: 1,
                agency_rate: 1,
                ..Limits::default()
            },
            overrides,
            false,
        );
        let _held = limits.enter("housing-programme").expect("first");
        assert!(limits.enter("housing-programme").is_err());
        let places: Vec<Place> = (0..100)
            .map(|_| limits.enter("health-authority").expect("no limits"))
            .collect();
        assert_eq!(places.len(), 100);
    }
}
