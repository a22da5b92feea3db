//! Policy, consent keys and certificates replaced while requests flow: a good reload fails no
//! request, a bad one is refused and what is in force stays (issue 6, item 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use isnad_proto::v1::AttributesRequest;
use isnad_tests::*;

async fn wait_for_log(process: &Process, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while process.logs().matches(needle).count() < times {
        assert!(
            Instant::now() < deadline,
            "never logged {needle:?} {times} times:\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn isnad(args: &[&str]) {
    let output = std::process::Command::new(isnad_bin())
        .args(args)
        .output()
        .expect("isnad runs");
    assert!(
        output.status.success(),
        "isnad {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_reloads_under_load_fail_no_request_and_bad_ones_keep_what_is_in_force() {
    let federation = Federation::start();
    let policy = federation.dir().join("policy");
    copy_sample_policy(&policy, 100_000);
    let providers = federation.providers();
    let upstreams: Vec<(&str, String)> = providers
        .iter()
        .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
        .collect();
    let gateway = federation.serve_gateway_with(&policy, &upstreams, "", "policy_poll_ms: 50\n");
    let process = &gateway.process;

    let grant = federation.grant(
        "housing-programme",
        "labour.employment",
        "housing-grant",
        &["occupation"],
    );
    let token = federation.token(&grant);
    let statute = request("identity.person", "housing-grant", &["full_name_en"]);
    let consent = AttributesRequest {
        consent_token: token,
        ..request("labour.employment", "housing-grant", &["occupation"])
    };

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for n in 0..6 {
        let material = federation.material("housing-programme");
        let (stop, served, failures) = (stop.clone(), served.clone(), failures.clone());
        let (statute, consent) = (statute.clone(), consent.clone());
        let addr = gateway.addr;
        clients.push(tokio::spawn(async move {
            let mut client = client_with(addr, &material);
            let mut turn = n;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let (request, field) = if turn % 2 == 0 {
                    (statute.clone(), "full_name_en")
                } else {
                    (consent.clone(), "occupation")
                };
                match get(&mut client, request).await {
                    Ok(response) if response.attributes.contains_key(field) => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.lock().expect("lock").push(format!("{other:?}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The policy: a good store, a broken one, the good one again.
    let rules = policy.join("rules/housing.yaml");
    let good_rules = std::fs::read(&rules).expect("read");
    copy_sample_policy(&policy, 100_001);
    wait_for_log(process, "policy reloaded", 1).await;
    let mut broken = good_rules.clone();
    broken.extend_from_slice(b"\n  - id: [unclosed\n");
    replace(&rules, &broken);
    wait_for_log(process, "policy reload refused", 1).await;
    replace(&rules, &good_rules);
    wait_for_log(process, "policy reloaded", 2).await;

    // The consent authorities' keys: a second key published, a broken file, the first alone.
    let jwks = federation.dir().join("consent/jwks.json");
    let key = federation.consent_key();
    let next = isnad_consent::SigningKey::generate(
        "dev-consent-2",
        isnad_consent::SigningAlgorithm::ES256,
    )
    .expect("key");
    replace(&jwks, isnad_consent::jwks_json(&[&key, &next]).as_bytes());
    wait_for_log(process, "consent keys reloaded", 1).await;
    replace(&jwks, b"{ not json");
    wait_for_log(process, "consent keys refused", 1).await;
    replace(&jwks, isnad_consent::jwks_json(&[&key]).as_bytes());
    wait_for_log(process, "consent keys reloaded", 2).await;

    // The gateway's certificate: rotated, then a broken key, then rotated again.
    let pki = federation.pki();
    let pki = pki.to_str().expect("utf-8");
    let rotate = || {
        isnad(&[
            "certs",
            "issue",
            "--dir",
            pki,
            "--name",
            "gateway",
            "--spiffe-id",
            "spiffe://isnad.example/gateway/gateway",
        ])
    };
    rotate();
    wait_for_log(process, "TLS material reloaded", 1).await;
    replace(&federation.pki().join("gateway.key"), b"not a key");
    wait_for_log(process, "TLS material not reloaded", 1).await;
    rotate();
    wait_for_log(process, "TLS material reloaded", 2).await;

    // New connections are served with the material in force, alongside the open ones.
    let mut fresh = client_with(gateway.addr, &federation.material("housing-programme"));
    get(&mut fresh, statute.clone())
        .await
        .expect("a new connection");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    let failures = failures.lock().expect("lock");
    let served = served.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during reloads, first: {:?}",
        failures.len(),
        failures.len() + served,
        failures.first()
    );
    assert!(served > 100, "only {served} requests were made");
    assert!(!process.logs().contains(&applicant()));
}
