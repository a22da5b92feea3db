//! The conformance suite every back-end of [`ConsentState`] must pass. Each case is written
//! once, generic over the back-end and over a clock: the in-process back-end takes the time it
//! is given, so its clock jumps; a back-end that keeps time itself (Redis expires keys on its
//! own clock) gets a clock that really waits.

use std::time::{Duration, SystemTime};

use isnad_state::testing::RedisServer;
use isnad_state::{
    Admission, AgencyRate, ConsentState, ConsentUse, MemoryState, RateLimit, RedisOptions,
    RedisState, Refusal, RequestGuard, Verdict,
};

/// The time a case runs at, and how it moves on.
trait Clock {
    fn now(&self) -> SystemTime;
    /// Moves `by` forward and returns the new time.
    async fn advance(&mut self, by: Duration) -> SystemTime;
    /// Moves to just after the start of a second, so that a one-second window has room for a
    /// few calls, and returns the new time.
    async fn align(&mut self) -> SystemTime;
}

/// A clock that jumps: for back-ends that take the time from the caller.
struct Jumping(SystemTime);

impl Clock for Jumping {
    fn now(&self) -> SystemTime {
        self.0
    }
    async fn advance(&mut self, by: Duration) -> SystemTime {
        self.0 += by;
        self.0
    }
    async fn align(&mut self) -> SystemTime {
        self.0
    }
}

/// The real clock: for back-ends that expire entries on their own clock.
struct Waiting;

impl Clock for Waiting {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    async fn advance(&mut self, by: Duration) -> SystemTime {
        tokio::time::sleep(by).await;
        SystemTime::now()
    }
    async fn align(&mut self) -> SystemTime {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970");
        let to_next_second =
            Duration::from_secs(1) - Duration::from_nanos(since_epoch.subsec_nanos().into());
        self.advance(to_next_second + Duration::from_millis(20))
            .await
    }
}

fn at(now: SystemTime) -> Admission<'static> {
    Admission {
        now,
        request: None,
        consent: None,
        rates: &[],
        agency: None,
    }
}

fn request<'a>(consumer: &'a str, id: &'a str) -> Option<RequestGuard<'a>> {
    Some(RequestGuard {
        consumer,
        request_id: id,
        ttl: Duration::from_secs(600),
    })
}

fn consent(id: &str, now: SystemTime, max_uses: Option<u64>) -> Option<ConsentUse<'_>> {
    Some(ConsentUse {
        id,
        expires_at: now + Duration::from_secs(3600),
        max_uses,
    })
}

fn rate<'a>(dataset: &'a str, limit: u32, window: Duration) -> RateLimit<'a> {
    RateLimit {
        rule: "housing-family",
        consumer: "housing-programme",
        subject: "pseudonym-1",
        dataset,
        limit,
        window,
    }
}

const ADMITTED: Verdict = Verdict::Admitted { uses: None };

async fn a_request_id_is_admitted_once_per_consumer(state: &impl ConsentState, clock: impl Clock) {
    let now = clock.now();
    let first = Admission {
        request: request("housing-programme", "r-1"),
        ..at(now)
    };
    assert_eq!(state.admit(&first).await, Ok(ADMITTED));
    assert_eq!(
        state.admit(&first).await,
        Ok(Verdict::Refused(Refusal::Replayed))
    );
    let other_consumer = Admission {
        request: request("health-authority", "r-1"),
        ..at(now)
    };
    assert_eq!(state.admit(&other_consumer).await, Ok(ADMITTED));
}

async fn a_revoked_consent_is_refused_until_it_expires(
    state: &impl ConsentState,
    mut clock: impl Clock,
) {
    let now = clock.now();
    let use_it = |now| Admission {
        consent: Some(ConsentUse {
            id: "consent-1",
            expires_at: now + Duration::from_secs(2),
            max_uses: None,
        }),
        ..at(now)
    };
    assert_eq!(state.admit(&use_it(now)).await, Ok(ADMITTED));
    assert_eq!(state.is_revoked("consent-1", now).await, Ok(false));
    let expires_at = now + Duration::from_secs(1);
    state
        .revoke("consent-1", expires_at, now)
        .await
        .expect("revoked");
    // Twice is the same as once.
    state
        .revoke("consent-1", expires_at, now)
        .await
        .expect("revoked again");
    assert_eq!(state.is_revoked("consent-1", now).await, Ok(true));
    assert_eq!(
        state.admit(&use_it(now)).await,
        Ok(Verdict::Refused(Refusal::Revoked))
    );
    assert_eq!(state.is_revoked("consent-2", now).await, Ok(false));
    // After the consent's expiry the revocation is forgotten (the token is refused for its
    // `exp` by then).
    let later = clock.advance(Duration::from_millis(2100)).await;
    assert_eq!(state.is_revoked("consent-1", later).await, Ok(false));
}

async fn a_consent_is_used_at_most_max_uses_times(state: &impl ConsentState, clock: impl Clock) {
    let now = clock.now();
    let use_it = Admission {
        consent: consent("consent-3", now, Some(3)),
        ..at(now)
    };
    for uses in 1..=3 {
        assert_eq!(
            state.admit(&use_it).await,
            Ok(Verdict::Admitted { uses: Some(uses) })
        );
    }
    assert_eq!(
        state.admit(&use_it).await,
        Ok(Verdict::Refused(Refusal::UsesExhausted))
    );
}

async fn a_refused_request_changes_nothing(state: &impl ConsentState, clock: impl Clock) {
    let now = clock.now();
    let first = Admission {
        request: request("housing-programme", "r-2"),
        consent: consent("consent-4", now, Some(2)),
        ..at(now)
    };
    assert_eq!(
        state.admit(&first).await,
        Ok(Verdict::Admitted { uses: Some(1) })
    );
    // A replay is refused and consumes no use.
    assert_eq!(
        state.admit(&first).await,
        Ok(Verdict::Refused(Refusal::Replayed))
    );
    // A request refused by its frequency limit records neither its id nor a use.
    let limited = Admission {
        request: request("housing-programme", "r-3"),
        consent: consent("consent-4", now, Some(2)),
        rates: &[rate("civil.family", 0, Duration::from_secs(60))],
        ..at(now)
    };
    assert!(matches!(
        state.admit(&limited).await,
        Ok(Verdict::Refused(Refusal::RateLimited { .. }))
    ));
    let retried = Admission {
        rates: &[],
        ..limited
    };
    assert_eq!(
        state.admit(&retried).await,
        Ok(Verdict::Admitted { uses: Some(2) })
    );
}

async fn a_frequency_limit_holds_per_window_and_dataset(
    state: &impl ConsentState,
    mut clock: impl Clock,
) {
    let now = clock.align().await;
    let window = Duration::from_secs(1);
    let limits = [
        rate("labour.employment", 2, window),
        rate("civil.family", 2, window),
    ];
    let ask = |now, dataset| Admission {
        rates: if dataset == "civil.family" {
            &limits[1..]
        } else {
            &limits[..1]
        },
        ..at(now)
    };
    assert_eq!(
        state.admit(&ask(now, "labour.employment")).await,
        Ok(ADMITTED)
    );
    assert_eq!(
        state.admit(&ask(now, "labour.employment")).await,
        Ok(ADMITTED)
    );
    match state.admit(&ask(now, "labour.employment")).await {
        Ok(Verdict::Refused(Refusal::RateLimited { retry_after })) => {
            assert!(retry_after <= window, "{retry_after:?}");
        }
        other => panic!("the third request in a window of two: {other:?}"),
    }
    // Another dataset has its own count.
    assert_eq!(state.admit(&ask(now, "civil.family")).await, Ok(ADMITTED));
    // The next window admits again.
    let later = clock.advance(Duration::from_millis(1100)).await;
    assert_eq!(
        state.admit(&ask(later, "labour.employment")).await,
        Ok(ADMITTED)
    );
}

async fn each_rule_counts_its_own_limit_and_a_refusal_by_one_counts_in_none(
    state: &impl ConsentState,
    clock: impl Clock,
) {
    let now = clock.now();
    let window = Duration::from_secs(3600);
    let loose = RateLimit {
        rule: "loose",
        ..rate("labour.employment", 5, window)
    };
    let strict = RateLimit {
        rule: "strict",
        ..rate("labour.employment", 1, window)
    };
    let both = [loose, strict];
    let ask_both = Admission {
        rates: &both,
        ..at(now)
    };
    assert_eq!(state.admit(&ask_both).await, Ok(ADMITTED));
    // The strict rule's window is used up: the request is refused, and the loose rule's count
    // does not move.
    for _ in 0..3 {
        assert!(matches!(
            state.admit(&ask_both).await,
            Ok(Verdict::Refused(Refusal::RateLimited { .. }))
        ));
    }
    let only_loose = [loose];
    let ask_loose = Admission {
        rates: &only_loose,
        ..at(now)
    };
    // 1 counted with both, then 4 more before the loose limit of 5 is reached.
    for _ in 0..4 {
        assert_eq!(state.admit(&ask_loose).await, Ok(ADMITTED));
    }
    assert!(matches!(
        state.admit(&ask_loose).await,
        Ok(Verdict::Refused(Refusal::RateLimited { .. }))
    ));
}

async fn keys_made_of_several_parts_never_collide(state: &impl ConsentState, clock: impl Clock) {
    let now = clock.now();
    // Pairs that collide when parts are joined with a separator, or simply concatenated.
    for (first, second) in [(("a:b", "c"), ("a", "b:c")), (("ab", "c"), ("a", "bc"))] {
        for (consumer, id) in [first, second] {
            let admission = Admission {
                request: request(consumer, id),
                ..at(now)
            };
            assert_eq!(
                state.admit(&admission).await,
                Ok(ADMITTED),
                "{consumer:?} {id:?}"
            );
        }
    }
}

async fn concurrent_uses_never_exceed_max_uses<S: ConsentState + 'static>(
    state: std::sync::Arc<S>,
    clock: impl Clock,
) {
    let now = clock.now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move {
                let use_it = Admission {
                    consent: consent("consent-5", now, Some(10)),
                    ..at(now)
                };
                state.admit(&use_it).await
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.expect("the task ran") {
            Ok(Verdict::Admitted { .. }) => admitted += 1,
            Ok(Verdict::Refused(Refusal::UsesExhausted)) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(admitted, 10);
}

async fn bad_requests_are_refused_with_a_reason(state: &impl ConsentState, clock: impl Clock) {
    let now = clock.now();
    let empty_id = Admission {
        request: request("housing-programme", ""),
        ..at(now)
    };
    assert_eq!(
        state.admit(&empty_id).await.map_err(|e| e.code()),
        Err("state_invalid")
    );
    let tiny = [rate("civil.family", 5, Duration::from_millis(10))];
    let tiny_window = Admission {
        rates: &tiny,
        ..at(now)
    };
    assert_eq!(
        state.admit(&tiny_window).await.map_err(|e| e.code()),
        Err("state_invalid")
    );
    assert_eq!(
        state.revoke("", now, now).await.map_err(|e| e.code()),
        Err("state_invalid")
    );
}

fn agency(agency: &str, per_second: u32, burst: u32) -> AgencyRate<'_> {
    AgencyRate {
        agency,
        per_second,
        burst,
    }
}

fn agency_limited(verdict: &Result<Verdict, isnad_state::StateError>) -> Option<Duration> {
    match verdict {
        Ok(Verdict::Refused(Refusal::AgencyRateLimited { retry_after })) => Some(*retry_after),
        _ => None,
    }
}

/// One request a second, three at once: the burst is admitted, the fourth is refused with the
/// time until the next fits, and a second later exactly one more fits. (One a second, so that a
/// slow machine between two calls does not give a token back mid-test.)
async fn an_agency_rate_admits_its_burst_then_one_request_per_interval(
    state: &impl ConsentState,
    mut clock: impl Clock,
) {
    let rate = agency("housing-programme", 1, 3);
    let now = clock.now();
    for n in 1..=3 {
        assert_eq!(
            state.throttle(&rate, now).await,
            Ok(ADMITTED),
            "request {n}"
        );
    }
    let refused = state.throttle(&rate, now).await;
    let retry_after = agency_limited(&refused).unwrap_or_else(|| panic!("{refused:?}"));
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
        "{retry_after:?}"
    );
    let later = clock.advance(Duration::from_millis(1100)).await;
    assert_eq!(state.throttle(&rate, later).await, Ok(ADMITTED));
    assert!(agency_limited(&state.throttle(&rate, later).await).is_some());
}

async fn each_agency_has_its_own_rate(state: &impl ConsentState, clock: impl Clock) {
    let now = clock.now();
    let flooding = agency("housing-programme", 1, 2);
    for _ in 0..2 {
        assert_eq!(state.throttle(&flooding, now).await, Ok(ADMITTED));
    }
    assert!(agency_limited(&state.throttle(&flooding, now).await).is_some());
    let other = agency("health-authority", 1, 2);
    assert_eq!(state.throttle(&other, now).await, Ok(ADMITTED));
    // Names that collide when joined are different agencies.
    let (first, second) = (agency("a:b", 1, 1), agency("a", 1, 1));
    assert_eq!(state.throttle(&first, now).await, Ok(ADMITTED));
    assert_eq!(state.throttle(&second, now).await, Ok(ADMITTED));
}

/// The agency's rate folded into an admission: checked first, and, like every check, recorded
/// only when everything passes. A request refused by its agency's rate records neither its id
/// nor a use; a request refused for something else takes nothing from its agency's allowance.
async fn an_agency_rate_in_an_admission_is_all_or_nothing(
    state: &impl ConsentState,
    clock: impl Clock,
) {
    let now = clock.now();
    let rate = agency("housing-programme", 1, 2);
    let first = Admission {
        request: request("housing-programme", "a-1"),
        consent: consent("consent-6", now, Some(5)),
        agency: Some(rate),
        ..at(now)
    };
    assert_eq!(
        state.admit(&first).await,
        Ok(Verdict::Admitted { uses: Some(1) })
    );
    // A replay is refused and leaves the agency its second request.
    assert_eq!(
        state.admit(&first).await,
        Ok(Verdict::Refused(Refusal::Replayed))
    );
    let second = Admission {
        request: request("housing-programme", "a-2"),
        ..first
    };
    assert_eq!(
        state.admit(&second).await,
        Ok(Verdict::Admitted { uses: Some(2) })
    );
    // The allowance is used up: refused by the agency's rate, before anything else, and with
    // nothing recorded.
    let third = Admission {
        request: request("housing-programme", "a-3"),
        ..first
    };
    assert!(agency_limited(&state.admit(&third).await).is_some());
    let without_rate = Admission {
        agency: None,
        ..third
    };
    assert_eq!(
        state.admit(&without_rate).await,
        Ok(Verdict::Admitted { uses: Some(3) }),
        "the refused request's id and use were not recorded"
    );
}

async fn concurrent_requests_never_exceed_an_agency_burst<S: ConsentState + 'static>(
    state: std::sync::Arc<S>,
    clock: impl Clock,
) {
    let now = clock.now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .throttle(&agency("housing-programme", 1, 10), now)
                    .await
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        let verdict = task.await.expect("the task ran");
        if verdict == Ok(ADMITTED) {
            admitted += 1;
        } else {
            assert!(agency_limited(&verdict).is_some(), "{verdict:?}");
        }
    }
    assert_eq!(admitted, 10);
}

async fn an_impossible_agency_rate_is_refused_with_a_reason(
    state: &impl ConsentState,
    clock: impl Clock,
) {
    let now = clock.now();
    for bad in [
        agency("housing-programme", 0, 1),
        agency("housing-programme", 1, 0),
        agency("", 1, 1),
    ] {
        assert_eq!(
            state.throttle(&bad, now).await.map_err(|e| e.code()),
            Err("state_invalid"),
            "{bad:?}"
        );
    }
}

/// Runs every case against a fresh state from `$state` and a clock from `$clock`.
macro_rules! conformance {
    ($backend:ident, $setup:expr, $clock:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn a_request_id_is_admitted_once_per_consumer() {
                let (_running, state) = $setup;
                super::a_request_id_is_admitted_once_per_consumer(&state, $clock).await;
            }

            #[tokio::test]
            async fn a_revoked_consent_is_refused_until_it_expires() {
                let (_running, state) = $setup;
                super::a_revoked_consent_is_refused_until_it_expires(&state, $clock).await;
            }

            #[tokio::test]
            async fn a_consent_is_used_at_most_max_uses_times() {
                let (_running, state) = $setup;
                super::a_consent_is_used_at_most_max_uses_times(&state, $clock).await;
            }

            #[tokio::test]
            async fn a_refused_request_changes_nothing() {
                let (_running, state) = $setup;
                super::a_refused_request_changes_nothing(&state, $clock).await;
            }

            #[tokio::test]
            async fn a_frequency_limit_holds_per_window_and_dataset() {
                let (_running, state) = $setup;
                super::a_frequency_limit_holds_per_window_and_dataset(&state, $clock).await;
            }

            #[tokio::test]
            async fn each_rule_counts_its_own_limit_and_a_refusal_by_one_counts_in_none() {
                let (_running, state) = $setup;
                super::each_rule_counts_its_own_limit_and_a_refusal_by_one_counts_in_none(
                    &state, $clock,
                )
                .await;
            }

            #[tokio::test]
            async fn keys_made_of_several_parts_never_collide() {
                let (_running, state) = $setup;
                super::keys_made_of_several_parts_never_collide(&state, $clock).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_uses_never_exceed_max_uses() {
                let (_running, state) = $setup;
                super::concurrent_uses_never_exceed_max_uses(std::sync::Arc::new(state), $clock)
                    .await;
            }

            #[tokio::test]
            async fn bad_requests_are_refused_with_a_reason() {
                let (_running, state) = $setup;
                super::bad_requests_are_refused_with_a_reason(&state, $clock).await;
            }

            #[tokio::test]
            async fn an_agency_rate_admits_its_burst_then_one_request_per_interval() {
                let (_running, state) = $setup;
                super::an_agency_rate_admits_its_burst_then_one_request_per_interval(
                    &state, $clock,
                )
                .await;
            }

            #[tokio::test]
            async fn each_agency_has_its_own_rate() {
                let (_running, state) = $setup;
                super::each_agency_has_its_own_rate(&state, $clock).await;
            }

            #[tokio::test]
            async fn an_agency_rate_in_an_admission_is_all_or_nothing() {
                let (_running, state) = $setup;
                super::an_agency_rate_in_an_admission_is_all_or_nothing(&state, $clock).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_requests_never_exceed_an_agency_burst() {
                let (_running, state) = $setup;
                super::concurrent_requests_never_exceed_an_agency_burst(
                    std::sync::Arc::new(state),
                    $clock,
                )
                .await;
            }

            #[tokio::test]
            async fn an_impossible_agency_rate_is_refused_with_a_reason() {
                let (_running, state) = $setup;
                super::an_impossible_agency_rate_is_refused_with_a_reason(&state, $clock).await;
            }
        }
    };
}

/// A fixed day, so window boundaries do not depend on when the suite runs (a window of one
/// second starts at a whole second).
fn fixed_day() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

conformance!(memory, ((), MemoryState::new()), Jumping(fixed_day()));
conformance!(redis, redis(), Waiting);

/// A fresh redis-server and a back-end on it.
fn redis() -> (RedisServer, RedisState) {
    let server = RedisServer::start().unwrap_or_else(|error| panic!("{error}"));
    let state = RedisState::new(&server.url(), RedisOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    (server, state)
}

/// The in-process state's own bound: beyond its capacity it refuses rather than grows, and
/// expired entries make room again.
#[tokio::test]
async fn the_memory_state_is_bounded_and_sweeps_expired_entries() {
    let state = MemoryState::with_capacity(3);
    let now = fixed_day();
    for id in ["r-1", "r-2", "r-3"] {
        let admission = Admission {
            request: Some(RequestGuard {
                consumer: "housing-programme",
                request_id: id,
                ttl: Duration::from_secs(10),
            }),
            ..at(now)
        };
        assert_eq!(state.admit(&admission).await, Ok(ADMITTED));
    }
    let fourth = Admission {
        request: request("housing-programme", "r-4"),
        ..at(now)
    };
    assert_eq!(
        state.admit(&fourth).await.map_err(|e| e.code()),
        Err("state_full")
    );
    let later = Admission {
        now: now + Duration::from_secs(11),
        ..fourth
    };
    assert_eq!(state.admit(&later).await, Ok(ADMITTED));
}
