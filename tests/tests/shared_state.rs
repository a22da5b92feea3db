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
