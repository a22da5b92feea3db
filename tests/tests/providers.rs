//! Providers that are down, slow or misbehaving cost their own requests only.

use std::time::Duration;

use isnad_tests::providers::{Behaviour, ProviderDouble, TcpOnlyProvider};
use isnad_tests::{Federation, client_with, get, refusal, request};
use tonic::Code;

const LIMITS: &str = "  default_deadline_ms: 1000\n";

#[tokio::test]
async fn a_provider_that_is_down_gives_unavailable_and_others_keep_serving() {
    let federation = Federation::start();
    let closed = format!("https://127.0.0.1:{}", isnad_tests::free_port());
    let identity_endpoint = provider_endpoint(&federation, "identity-authority");
    let gateway = federation.serve_gateway(
        &[
            ("labour-ministry", closed),
            ("identity-authority", identity_endpoint),
        ],
        LIMITS,
    );
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    for _ in 0..2 {
        let (code, reason) = refusal(
            get(
                &mut client,
                request("labour.employment", "housing-grant", &["employed"]),
            )
            .await,
        );
        assert_eq!(
            (code, reason.as_str()),
            (Code::Unavailable, "provider_unavailable")
        );
        get(
            &mut client,
            request("identity.person", "housing-grant", &["full_name_en"]),
        )
        .await
        .expect("the same gateway still serves the other providers");
    }
}

#[tokio::test]
async fn a_slow_provider_gives_deadline_exceeded_without_holding_up_others() {
    let federation = Federation::start();
    let slow = ProviderDouble::start(
        &federation.material("labour-ministry"),
        Behaviour::Slow(Duration::from_secs(30)),
    )
    .await;
    let identity_endpoint = provider_endpoint(&federation, "identity-authority");
    let gateway = federation.serve_gateway(
        &[
            ("labour-ministry", slow.endpoint()),
            ("identity-authority", identity_endpoint),
        ],
        LIMITS,
    );
    let material = federation.material("housing-programme");
    let mut slow_client = client_with(gateway.addr, &material);
    let stuck = tokio::spawn(async move {
        get(
            &mut slow_client,
            request("labour.employment", "housing-grant", &["employed"]),
        )
        .await
    });
    // While the slow request waits, another provider's requests go through.
    let mut client = client_with(gateway.addr, &material);
    for _ in 0..5 {
        get(
            &mut client,
            request("identity.person", "housing-grant", &["full_name_en"]),
        )
        .await
        .expect("unaffected by the slow provider");
    }
    let (code, reason) = refusal(stuck.await.expect("task"));
    assert_eq!(
        (code, reason.as_str()),
        (Code::DeadlineExceeded, "provider_timeout")
    );
}

#[tokio::test]
async fn extra_fields_and_wrong_types_from_a_provider_are_not_released() {
    let federation = Federation::start();
    let rogue =
        ProviderDouble::start(&federation.material("identity-authority"), Behaviour::Rogue).await;
    let gateway = federation.serve_gateway(&[("identity-authority", rogue.endpoint())], LIMITS);
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let response = get(
        &mut client,
        request(
            "identity.person",
            "housing-grant",
            &["full_name_en", "date_of_birth"],
        ),
    )
    .await
    .expect("answered");
    // full_name_en is a string: released. date_of_birth came back as a string, not a date.
    let released: Vec<&str> = response.attributes.keys().map(String::as_str).collect();
    assert_eq!(released, ["full_name_en"]);
    let withheld: Vec<(&str, &str)> = response
        .withheld
        .iter()
        .map(|o| (o.field.as_str(), o.reason.as_str()))
        .collect();
    assert_eq!(withheld, [("date_of_birth", "provider_type_mismatch")]);
    assert!(!response.attributes.contains_key("mobile"));
    assert!(!response.attributes.contains_key("blood_type"));
}

#[tokio::test]
async fn a_provider_answers_only_the_gateway() {
    use isnad_proto::v1::FetchRequest;
    use isnad_proto::v1::provider_client::ProviderClient;
    use isnad_tls::policy::ExpectedPeer;

    let federation = Federation::start();
    let endpoint = provider_endpoint(&federation, "identity-authority");
    let tls = isnad_tls::policy::fixed_client_config(
        federation.material("housing-programme"),
        ExpectedPeer::Exactly(
            isnad_tls::SpiffeId::parse("spiffe://isnad.example/agency/identity-authority")
                .expect("id"),
        ),
    )
    .expect("config");
    let channel =
        isnad_tls::client::channel(&endpoint, std::sync::Arc::new(tls), Default::default())
            .expect("channel");
    let status = ProviderClient::new(channel)
        .fetch(FetchRequest {
            subject: isnad_tests::applicant(),
            dataset: "identity.person".into(),
            fields: vec!["mobile".into()],
            ..Default::default()
        })
        .await
        .expect_err("a consumer may not bypass the gateway");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        isnad_proto::errors::reason(&status).as_deref(),
        Some("caller_not_allowed")
    );
}

/// The endpoint `isnad up` gave a sample provider, from the configuration it wrote.
fn provider_endpoint(federation: &Federation, agency: &str) -> String {
    let config = std::fs::read_to_string(
        federation
            .dir
            .path()
            .join(format!("providers/{agency}.yaml")),
    )
    .expect("provider config");
    let listen = config
        .lines()
        .find_map(|line| line.strip_prefix("listen: "))
        .expect("listen line")
        .trim_matches(|c| c == '"' || c == '\'');
    format!("https://{listen}")
}

#[tokio::test]
async fn a_provider_reply_over_the_size_limit_is_refused_and_releases_nothing() {
    let federation = Federation::start();
    let huge = ProviderDouble::start(
        &federation.material("identity-authority"),
        Behaviour::Huge(10 * 1024 * 1024),
    )
    .await;
    let gateway = federation.serve_gateway(&[("identity-authority", huge.endpoint())], LIMITS);
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let (code, reason) = refusal(
        get(
            &mut client,
            request("identity.person", "housing-grant", &["full_name_en"]),
        )
        .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unavailable, "provider_reply_too_large")
    );
}

#[tokio::test]
async fn a_provider_that_resets_connections_gives_unavailable_and_others_keep_serving() {
    let federation = Federation::start();
    let resetting = TcpOnlyProvider::resetting().await;
    let identity_endpoint = provider_endpoint(&federation, "identity-authority");
    let gateway = federation.serve_gateway(
        &[
            ("labour-ministry", resetting.endpoint()),
            ("identity-authority", identity_endpoint),
        ],
        LIMITS,
    );
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let (code, reason) = refusal(
        get(
            &mut client,
            request("labour.employment", "housing-grant", &["employed"]),
        )
        .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unavailable, "provider_unavailable")
    );
    get(
        &mut client,
        request("identity.person", "housing-grant", &["full_name_en"]),
    )
    .await
    .expect("other providers are unaffected");
}

#[tokio::test]
async fn requests_waiting_on_a_failed_connect_fail_with_it_not_after_their_own_timeouts() {
    let federation = Federation::start();
    let silent = TcpOnlyProvider::silent().await;
    // One connection to the provider: the three requests wait on the same connect, which gives
    // up after the gateway's connect timeout (3 s). Had each waited out its own after the one
    // before it, the second and third would run into their 5 s deadline.
    let gateway = federation.serve_gateway(
        &[("labour-ministry", silent.endpoint())],
        "  default_deadline_ms: 5000\n  upstream_connections: 1\n",
    );
    let material = federation.material("housing-programme");
    let ask = || {
        let mut client = client_with(gateway.addr, &material);
        async move {
            refusal(
                get(
                    &mut client,
                    request("labour.employment", "housing-grant", &["employed"]),
                )
                .await,
            )
        }
    };
    let outcomes = tokio::join!(ask(), ask(), ask());
    let unavailable = (Code::Unavailable, "provider_unavailable".to_owned());
    assert_eq!(
        [outcomes.0, outcomes.1, outcomes.2],
        [unavailable.clone(), unavailable.clone(), unavailable]
    );
}

#[tokio::test]
async fn a_failing_provider_trips_its_circuit_and_a_trial_closes_it_when_it_is_back() {
    let federation = Federation::start();
    let port = isnad_tests::free_port();
    let labour: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let identity_endpoint = provider_endpoint(&federation, "identity-authority");
    let gateway = federation.serve_gateway(
        &[
            ("labour-ministry", format!("https://{labour}")),
            ("identity-authority", identity_endpoint),
        ],
        "  default_deadline_ms: 1000\n  circuit_failures: 3\n  circuit_open_ms: 700\n",
    );
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let ask = || request("labour.employment", "housing-grant", &["employed"]);
    for _ in 0..3 {
        assert_eq!(
            refusal(get(&mut client, ask()).await).1,
            "provider_unavailable"
        );
    }
    // Open: refused at once, without trying the provider.
    let started = std::time::Instant::now();
    assert_eq!(
        refusal(get(&mut client, ask()).await),
        (Code::Unavailable, "provider_circuit_open".to_owned())
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    get(
        &mut client,
        request("identity.person", "housing-grant", &["full_name_en"]),
    )
    .await
    .expect("another provider's circuit is its own");

    // The provider comes back; after the open period one trial goes through and closes it.
    let _back = ProviderDouble::start_at(
        labour,
        &federation.material("labour-ministry"),
        Behaviour::Slow(Duration::ZERO),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let start = std::time::Instant::now();
    loop {
        match get(&mut client, ask()).await {
            Ok(response) => {
                // The double answers "slow" for a bool field: it was asked, it answered.
                assert_eq!(response.withheld[0].reason, "provider_type_mismatch");
                break;
            }
            Err(status) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the circuit did not close: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for _ in 0..3 {
        get(&mut client, ask()).await.expect("closed again");
    }
}

#[tokio::test]
async fn each_worker_serves_on_its_own_thread_and_calls_the_provider_on_its_own_connection() {
    let federation = Federation::start();
    let provider = ProviderDouble::start(
        &federation.material("identity-authority"),
        Behaviour::Slow(Duration::ZERO),
    )
    .await;
    let config = federation.gateway_config(
        &isnad_tests::repo_root().join("deploy/local"),
        &[("identity-authority", provider.endpoint())],
        "",
        "workers: 3\n",
    );
    let gateway = federation.start_gateway(&config);
    // Six client connections, two per worker, kept open; each asks twice.
    let material = federation.material("housing-programme");
    let mut clients: Vec<_> = (0..6)
        .map(|_| client_with(gateway.addr, &material))
        .collect();
    for _ in 0..2 {
        for client in &mut clients {
            let response = get(
                client,
                request("identity.person", "housing-grant", &["full_name_en"]),
            )
            .await
            .expect("released");
            assert!(response.attributes.contains_key("full_name_en"));
        }
    }
    // Read once it has served: the workers start after the readiness line is logged.
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", gateway.process.pid()));
    let workers: std::collections::BTreeSet<String> = std::fs::read_dir(tasks)
        .expect("the gateway's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("isnad-worker-"))
        .collect();
    assert_eq!(
        workers.iter().map(String::as_str).collect::<Vec<_>>(),
        ["isnad-worker-0", "isnad-worker-1", "isnad-worker-2"]
    );
    // One connection to the provider per worker (upstream_connections' default), however the
    // twelve requests fell.
    assert_eq!(
        provider.connections().len(),
        3,
        "{:?}",
        provider.connections()
    );
}
