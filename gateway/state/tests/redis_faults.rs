//! The Redis back-end when Redis fails: every call fails closed with `state_unavailable`, and
//! the same back-end recovers by itself when Redis is back (its Lua script reloaded into the
//! empty server). And two gateway nodes on one Redis share revocations.

use std::time::{Duration, Instant, SystemTime};

use isnad_state::testing::RedisServer;
use isnad_state::{
    Admission, ConsentState, ConsentUse, RedisOptions, RedisState, Refusal, RequestGuard,
    StateError, Verdict,
};

fn use_consent(now: SystemTime, request_id: &str) -> Admission<'_> {
    Admission {
        now,
        request: Some(RequestGuard {
            consumer: "housing-programme",
            request_id,
            ttl: Duration::from_secs(60),
        }),
        consent: Some(ConsentUse {
            id: "consent-1",
            expires_at: now + Duration::from_secs(3600),
            max_uses: Some(100),
        }),
        rates: &[],
        agency: None,
    }
}

fn state(server: &RedisServer) -> RedisState {
    RedisState::new(&server.url(), RedisOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Retries `admit` for up to five seconds until it is admitted.
async fn admitted_within_seconds(state: &RedisState, request_id: &str) -> Verdict {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match state
            .admit(&use_consent(SystemTime::now(), request_id))
            .await
        {
            Ok(verdict) => return verdict,
            Err(error) if Instant::now() < deadline => {
                assert_eq!(error.code(), "state_unavailable");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("Redis is back but the state still fails: {error}"),
        }
    }
}

#[tokio::test]
async fn fails_closed_while_redis_is_down_and_recovers_without_restart() {
    let mut server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let state = state(&server);
    assert!(matches!(
        state.admit(&use_consent(SystemTime::now(), "r-1")).await,
        Ok(Verdict::Admitted { uses: Some(1) })
    ));

    server.stop();
    let now = SystemTime::now();
    let refused = state.admit(&use_consent(now, "r-2")).await;
    assert!(
        matches!(refused, Err(StateError::Unavailable { .. })),
        "{refused:?}"
    );
    let revoke = state
        .revoke("consent-1", now + Duration::from_secs(60), now)
        .await;
    assert_eq!(revoke.map_err(|e| e.code()), Err("state_unavailable"));
    assert_eq!(
        state
            .is_revoked("consent-1", now)
            .await
            .map_err(|e| e.code()),
        Err("state_unavailable")
    );

    // Back, empty: the script is loaded again and the same back-end serves.
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        admitted_within_seconds(&state, "r-3").await,
        Verdict::Admitted { uses: Some(1) }
    ));
    state.ping().await.expect("PONG");
}

#[tokio::test]
async fn starts_while_redis_is_down() {
    let mut server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    server.stop();
    let state = state(&server);
    assert_eq!(
        state
            .admit(&use_consent(SystemTime::now(), "r-1"))
            .await
            .map_err(|e| e.code()),
        Err("state_unavailable")
    );
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        admitted_within_seconds(&state, "r-2").await,
        Verdict::Admitted { .. }
    ));
}

#[tokio::test]
async fn two_nodes_share_a_revocation_at_once() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let (first, second) = (state(&server), state(&server));
    let now = SystemTime::now();
    assert!(matches!(
        second.admit(&use_consent(now, "r-1")).await,
        Ok(Verdict::Admitted { .. })
    ));
    first
        .revoke("consent-1", now + Duration::from_secs(3600), now)
        .await
        .expect("revoked");
    assert_eq!(second.is_revoked("consent-1", now).await, Ok(true));
    assert_eq!(
        second.admit(&use_consent(now, "r-2")).await,
        Ok(Verdict::Refused(Refusal::Revoked))
    );
}
