//! Limits per consumer agency: requests in flight on a node and a rate (shared by every node
//! through Redis). A request over its agency's limits is refused at once with
//! RESOURCE_EXHAUSTED and a reason code, nothing is released, the refusal is audited, and another
//! agency is served meanwhile. The subject appears in no log line or message.

use std::time::{Duration, Instant};

use isnad_proto::v1::AttributesRequest;
use isnad_state::testing::RedisServer;
use isnad_tests::providers::{Behaviour, ProviderDouble};
use isnad_tests::{Federation, Gateway, applicant, client_with, get, refusal, request};
use tonic::Code;

/// The sample federation's providers, labour's replaced by `labour` if given.
fn upstreams(federation: &Federation, labour: Option<String>) -> Vec<(String, String)> {
    federation
        .providers()
        .into_iter()
        .map(|(agency, endpoint)| match (&labour, agency.as_str()) {
            (Some(labour), "labour-ministry") => (agency, labour.clone()),
            _ => (agency, endpoint),
        })
        .collect()
}

fn gateway(federation: &Federation, labour: Option<String>, limits: &str, extra: &str) -> Gateway {
    let upstreams = upstreams(federation, labour);
    let upstreams: Vec<(&str, String)> = upstreams
        .iter()
        .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
        .collect();
    let config = federation.gateway_config(
        &isnad_tests::repo_root().join("deploy/local"),
        &upstreams,
        limits,
        extra,
    );
    federation.start_gateway(&config)
}

fn housing_identity() -> AttributesRequest {
    request("identity.person", "housing-grant", &["full_name_en"])
}

fn health_identity() -> AttributesRequest {
    request("identity.person", "newborn-registration", &["full_name_en"])
}

/// The refusal's code and reason; checks that its message does not name the subject.
fn refused(result: Result<isnad_proto::v1::AttributesResponse, tonic::Status>) -> (Code, String) {
    if let Err(status) = &result {
        assert!(
            !status.message().contains(&applicant()),
            "the message names the subject: {}",
            status.message()
        );
    }
    refusal(result)
}

/// The reasons of the refusals recorded in a gateway's audit log.
fn audited_refusals(gateway: &Gateway) -> Vec<(String, String, String)> {
    isnad_audit::Export::open(&gateway.audit, isnad_audit::LeafIndex(0), None)
        .expect("the audit log opens")
        .filter_map(|entry| {
            let record = entry.expect("a record").record;
            match record.decision {
                isnad_audit::Decision::Refused { step, reason } => {
                    Some((record.consumer, step, reason))
                }
                _ => None,
            }
        })
        .collect()
}

fn assert_no_subject_in(gateway: &Gateway) {
    let logs = gateway.process.logs();
    assert!(
        !logs.contains(&applicant()),
        "the gateway's log names the subject"
    );
}

#[tokio::test]
async fn an_agency_over_its_requests_in_flight_is_refused_at_once_while_another_is_served() {
    let federation = Federation::start();
    let slow = ProviderDouble::start(
        &federation.material("labour-ministry"),
        Behaviour::Slow(Duration::from_secs(3)),
    )
    .await;
    let gateway = gateway(
        &federation,
        Some(slow.endpoint()),
        "  agency_in_flight: 10\n",
        "agency_limits:\n  housing-programme: { in_flight: 3 }\n",
    );
    let housing = client_with(gateway.addr, &federation.material("housing-programme"));

    // Three requests of the housing programme wait on the slow provider: its limit.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let mut client = housing.clone();
            tokio::spawn(async move {
                get(
                    &mut client,
                    request("labour.employment", "housing-grant", &["employed"]),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // A fourth is refused at once, not queued: even one for another provider.
    let asked = Instant::now();
    let result = get(&mut housing.clone(), housing_identity()).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "refused at once, not after a wait: {:?}",
        asked.elapsed()
    );
    assert_eq!(
        refused(result),
        (Code::ResourceExhausted, "agency_busy".to_owned())
    );

    // Another agency is served meanwhile.
    let mut health = client_with(gateway.addr, &federation.material("health-authority"));
    let served = get(&mut health, health_identity())
        .await
        .expect("another agency is served");
    assert!(served.attributes.contains_key("full_name_en"));

    // The three finish, and their places are given back.
    for request in waiting {
        request
            .await
            .expect("task")
            .expect("answered by the slow provider");
    }
    get(&mut housing.clone(), housing_identity())
        .await
        .expect("a place is free again");

    let refusals = audited_refusals(&gateway);
    assert!(
        refusals.contains(&(
            "housing-programme".to_owned(),
            "admit".to_owned(),
            "agency_busy".to_owned()
        )),
        "the refusal is audited: {refusals:?}"
    );
    assert!(
        gateway.process.logs().contains("agency over its limits"),
        "the refusal is logged"
    );
    assert_no_subject_in(&gateway);
}

#[tokio::test]
async fn an_agency_over_its_rate_is_refused_and_served_again_once_the_interval_has_passed() {
    let federation = Federation::start();
    // One request a second, three at once: the test's requests fit in the second a token takes.
    let gateway = gateway(
        &federation,
        None,
        "",
        "agency_limits:\n  housing-programme: { rate: 1, burst: 3 }\n",
    );
    let mut housing = client_with(gateway.addr, &federation.material("housing-programme"));
    let mut health = client_with(gateway.addr, &federation.material("health-authority"));
    for n in 0..3 {
        get(&mut housing, housing_identity())
            .await
            .unwrap_or_else(|status| panic!("request {n} of the burst: {status:?}"));
    }
    let result = get(&mut housing, housing_identity()).await;
    let message = result
        .as_ref()
        .err()
        .map(|status| status.message().to_owned())
        .unwrap_or_default();
    assert_eq!(
        refused(result),
        (Code::ResourceExhausted, "agency_rate_limited".to_owned())
    );
    assert!(
        message.contains("1 per second") && message.contains("next fits in"),
        "the message gives the rate and when to retry: {message}"
    );
    // The health authority has no rate limit (the default is off).
    for _ in 0..10 {
        get(&mut health, health_identity())
            .await
            .expect("another agency is served");
    }
    // A second later one more request fits, and only one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get(&mut housing, housing_identity())
        .await
        .expect("served again after the interval");
    assert_eq!(
        refused(get(&mut housing, housing_identity()).await),
        (Code::ResourceExhausted, "agency_rate_limited".to_owned())
    );
    assert!(
        audited_refusals(&gateway).contains(&(
            "housing-programme".to_owned(),
            "admit".to_owned(),
            "agency_rate_limited".to_owned()
        )),
        "the refusal is audited"
    );
    assert_no_subject_in(&gateway);
}

#[tokio::test]
async fn two_nodes_enforce_one_agency_rate_through_redis_and_each_its_own_while_redis_is_away() {
    let mut redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let federation = Federation::start();
    let extra = format!(
        "shared_state: {}\nagency_limits:\n  housing-programme: {{ rate: 1, burst: 4 }}\n",
        redis.url()
    );
    let (a, b) = (
        gateway(&federation, None, "", &extra),
        gateway(&federation, None, "", &extra),
    );
    let material = federation.material("housing-programme");
    let (mut on_a, mut on_b) = (
        client_with(a.addr, &material),
        client_with(b.addr, &material),
    );
    let token = federation.token(&federation.grant(
        "housing-programme",
        "labour.employment",
        "housing-grant",
        &["occupation"],
    ));
    let with_consent = || AttributesRequest {
        consent_token: token.clone(),
        ..request("labour.employment", "housing-grant", &["occupation"])
    };

    // Four at once for the agency, over both nodes: statute requests (a round trip of their
    // own) and a consent request (its agency's rate in the consent admission).
    get(&mut on_a, housing_identity()).await.expect("1 on A");
    get(&mut on_b, housing_identity()).await.expect("2 on B");
    get(&mut on_b, with_consent())
        .await
        .expect("3 on B, with consent");
    get(&mut on_a, housing_identity()).await.expect("4 on A");
    // Each node has seen two, under its own burst of four; the agency has used its four.
    for (node, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        assert_eq!(
            refused(get(client, housing_identity()).await),
            (Code::ResourceExhausted, "agency_rate_limited".to_owned()),
            "a statute request on {node}"
        );
    }
    assert_eq!(
        refused(get(&mut on_a, with_consent()).await),
        (Code::ResourceExhausted, "agency_rate_limited".to_owned()),
        "a consent request"
    );
    // Another agency is not limited by the housing programme's use.
    let mut health = client_with(b.addr, &federation.material("health-authority"));
    get(&mut health, health_identity())
        .await
        .expect("another agency is served");

    // Redis goes away: the rate falls back to each node's own (statute requests go on, up to
    // the node's burst), consent fails closed as before.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let mut served = 0;
    let mut limited = false;
    for _ in 0..10 {
        match get(&mut on_a, housing_identity()).await {
            Ok(_) => served += 1,
            Err(status) => {
                assert_eq!(
                    isnad_proto::errors::reason(&status).as_deref(),
                    Some("agency_rate_limited"),
                    "{status:?}"
                );
                limited = true;
                break;
            }
        }
    }
    assert!(served >= 1, "statute requests go on while Redis is away");
    assert!(
        limited,
        "and the node still enforces the agency's rate on its own"
    );
    assert_eq!(
        refused(get(&mut on_b, with_consent()).await),
        (Code::Unavailable, "state_unavailable".to_owned())
    );
    assert!(
        a.process
            .logs()
            .contains("each node enforces them on its own"),
        "the fallback is logged"
    );
    for node in [&a, &b] {
        assert_no_subject_in(node);
    }
}

#[tokio::test]
async fn limits_for_an_agency_the_catalogue_does_not_know_stop_the_gateway_from_starting() {
    let federation = Federation::start();
    let config = federation.sample_gateway_config(
        "",
        "agency_limits:\n  housing-programmes: { in_flight: 4 }\n",
    );
    let output = std::process::Command::new(isnad_tests::isnad_bin())
        .args(["serve", "--config", config.path.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("agency_limits") && stderr.contains("\"housing-programmes\""),
        "the error names the agency: {stderr}"
    );
}
