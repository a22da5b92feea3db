//! Gateway nodes sharing one Redis: a revocation made through one node holds on the other from
//! its next request; uses are counted across nodes; and when Redis is away, requests that need
//! consent or a limit fail closed while statute requests go on, until Redis is back, without a
//! restart.

use std::time::{Duration, Instant, SystemTime};

use isnad_proto::v1::RevokeConsentRequest;
use isnad_proto::v1::admin_client::AdminClient;
use isnad_state::testing::RedisServer;
use isnad_tests::{Federation, Gateway, channel_with, client_with, get, refusal, request};
use tonic::Code;

const DATASET: &str = "labour.employment";
const PURPOSE: &str = "housing-grant";

/// A gateway node of `federation` keeping its state in the Redis at `url`.
fn node(federation: &Federation, url: &str) -> Gateway {
    federation.start_gateway(&federation.sample_gateway_config(
        "  default_deadline_ms: 5000\n",
        &format!("shared_state: {url}\n"),
    ))
}

fn with_token(fields: &[&str], token: &str) -> isnad_proto::v1::AttributesRequest {
    isnad_proto::v1::AttributesRequest {
        consent_token: token.to_owned(),
        ..request(DATASET, PURPOSE, fields)
    }
}

#[tokio::test]
async fn two_nodes_share_a_revocation_and_the_use_count() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let federation = Federation::start();
    let (a, b) = (
        node(&federation, &redis.url()),
        node(&federation, &redis.url()),
    );
    let consumer = federation.material("housing-programme");
    let (mut on_a, mut on_b) = (
        client_with(a.addr, &consumer),
        client_with(b.addr, &consumer),
    );

    // max_uses 3, used twice on A and once on B: the fourth use is refused on either.
    let mut grant = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    grant.max_uses = Some(3);
    let token = federation.token(&grant);
    get(&mut on_a, with_token(&["occupation"], &token))
        .await
        .expect("use 1");
    get(&mut on_b, with_token(&["occupation"], &token))
        .await
        .expect("use 2");
    get(&mut on_a, with_token(&["occupation"], &token))
        .await
        .expect("use 3");
    assert_eq!(
        refusal(get(&mut on_b, with_token(&["occupation"], &token)).await),
        (Code::PermissionDenied, "consent_uses_exhausted".to_owned())
    );

    // A consent revoked through node A is refused by node B at once.
    let second = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    let token = federation.token(&second);
    get(&mut on_b, with_token(&["occupation"], &token))
        .await
        .expect("valid on B");
    let mut authority = AdminClient::new(channel_with(
        a.addr,
        &federation.material("consent-authority"),
    ));
    authority
        .revoke_consent(RevokeConsentRequest {
            consent_id: second.id.clone(),
            expires_at: Some(
                (SystemTime::UNIX_EPOCH + Duration::from_secs(second.expires_at)).into(),
            ),
        })
        .await
        .expect("revoked through A");
    let revoked_at = Instant::now();
    assert_eq!(
        refusal(get(&mut on_b, with_token(&["occupation"], &token)).await),
        (Code::PermissionDenied, "consent_revoked".to_owned())
    );
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "B refused the revoked consent on its first request after the revocation"
    );
    // The request id guard is shared too.
    let third =
        federation.token(&federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]));
    let ask = isnad_proto::v1::AttributesRequest {
        request_id: "shared-1".into(),
        ..with_token(&["occupation"], &third)
    };
    get(&mut on_a, ask.clone()).await.expect("first on A");
    assert_eq!(
        refusal(get(&mut on_b, ask).await),
        (Code::AlreadyExists, "request_replayed".to_owned())
    );
}

#[tokio::test]
async fn without_redis_consent_fails_closed_statute_goes_on_and_service_resumes() {
    let mut redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let federation = Federation::start();
    let mut gateway = node(&federation, &redis.url());
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let token =
        federation.token(&federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]));
    get(&mut client, with_token(&["occupation"], &token))
        .await
        .expect("Redis is up");

    redis.stop();
    for _ in 0..3 {
        assert_eq!(
            refusal(get(&mut client, with_token(&["employed", "occupation"], &token)).await),
            (Code::Unavailable, "state_unavailable".to_owned()),
            "nothing, not even the statute field, is released when the state is away"
        );
    }
    let statute = get(&mut client, request(DATASET, PURPOSE, &["employed"]))
        .await
        .expect("statute requests need no state");
    assert!(statute.attributes.contains_key("employed"));
    let identity = get(
        &mut client,
        request("identity.person", PURPOSE, &["full_name_en"]),
    )
    .await
    .expect("other datasets go on");
    assert!(identity.attributes.contains_key("full_name_en"));
    gateway.process.assert_running();

    // Revoking fails closed too: the consent authority is told it is not in force.
    let mut authority = AdminClient::new(channel_with(
        gateway.addr,
        &federation.material("consent-authority"),
    ));
    let status = authority
        .revoke_consent(RevokeConsentRequest {
            consent_id: "some-consent".into(),
            expires_at: None,
        })
        .await
        .expect_err("Redis is down");
    assert_eq!(status.code(), Code::Unavailable);

    redis.restart().unwrap_or_else(|e| panic!("{e}"));
    let back = Instant::now();
    loop {
        match get(&mut client, with_token(&["occupation"], &token)).await {
            Ok(response) => {
                assert!(response.attributes.contains_key("occupation"));
                break;
            }
            Err(status) => {
                assert_eq!(
                    isnad_proto::errors::reason(&status).as_deref(),
                    Some("state_unavailable")
                );
                assert!(
                    back.elapsed() < Duration::from_secs(10),
                    "the gateway did not resume after Redis came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    gateway.process.assert_running();
}

/// One request of the load in `redis_killed_under_load_...`.
#[derive(Debug)]
struct Sent {
    consent: bool,
    started: Instant,
    ended: Instant,
    /// `None` when the request was answered with its field, else the reason code.
    refused: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_consent_closed_while_statute_goes_on_and_resumes() {
    let mut redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let federation = Federation::start();
    let policy = federation.dir().join("policy");
    isnad_tests::copy_sample_policy(&policy, 1_000_000);
    let providers = federation.providers();
    let upstreams: Vec<(&str, String)> = providers
        .iter()
        .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
        .collect();
    let gateway = federation.serve_gateway_with(
        &policy,
        &upstreams,
        "",
        &format!("shared_state: {}\n", redis.url()),
    );
    let token =
        federation.token(&federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for n in 0..4 {
        let material = federation.material("housing-programme");
        let (addr, token, stop) = (gateway.addr, token.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut client = client_with(addr, &material);
            let mut sent = Vec::new();
            let mut turn = n;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                turn += 1;
                let consent = turn % 2 == 0;
                let (ask, field) = if consent {
                    (with_token(&["occupation"], &token), "occupation")
                } else {
                    (
                        request("identity.person", PURPOSE, &["full_name_en"]),
                        "full_name_en",
                    )
                };
                let started = Instant::now();
                let outcome = get(&mut client, ask).await;
                let refused = match outcome {
                    Ok(response) if response.attributes.contains_key(field) => None,
                    Ok(response) => Some(format!("answered without {field}: {response:?}")),
                    Err(status) => Some(
                        isnad_proto::errors::reason(&status)
                            .unwrap_or_else(|| format!("{status:?}")),
                    ),
                };
                sent.push(Sent {
                    consent,
                    started,
                    ended: Instant::now(),
                    refused,
                });
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.stop();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarting = Instant::now();
    redis.restart().unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for client in clients {
        sent.extend(client.await.expect("client"));
    }

    // Statute requests need no state: every one was answered, before, during and after.
    let statute: Vec<&Sent> = sent.iter().filter(|s| !s.consent).collect();
    assert!(statute.len() > 20, "{} statute requests", statute.len());
    let failed: Vec<_> = statute.iter().filter(|s| s.refused.is_some()).collect();
    assert!(failed.is_empty(), "statute requests failed: {failed:?}");
    // Consent requests made while Redis was away: every one refused, state_unavailable.
    let during: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.consent && s.started > killed && s.ended < restarting)
        .collect();
    assert!(
        !during.is_empty(),
        "no consent request was made while Redis was away"
    );
    for s in &during {
        assert_eq!(s.refused.as_deref(), Some("state_unavailable"), "{s:?}");
    }
    // Any consent refusal at all is that one; and service resumed by itself.
    for s in sent.iter().filter(|s| s.consent) {
        assert!(
            matches!(s.refused.as_deref(), None | Some("state_unavailable")),
            "{s:?}"
        );
    }
    assert!(
        sent.iter()
            .any(|s| s.consent && s.started > restarting && s.refused.is_none()),
        "consent requests did not resume after Redis came back"
    );
    assert!(!gateway.process.logs().contains(&isnad_tests::applicant()));
}
