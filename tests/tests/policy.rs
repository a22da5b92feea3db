//! The policy store through the gateway: transforms applied to provider values, and reloads
//! (file change, SIGHUP, `Admin.ReloadPolicy`) that swap a good store in and keep the running one
//! when the new one is broken or badly signed.

use std::path::Path;
use std::time::{Duration, Instant};

use isnad_proto::v1::admin_client::AdminClient;
use isnad_proto::v1::value::Kind;
use isnad_proto::v1::{PolicyStatusRequest, ReloadPolicyRequest};
use isnad_tests::{Federation, channel_with, get, refusal, repo_root, request};
use tonic::Code;

/// A copy of the sample store (catalogue and rules) in `dir`.
fn copy_sample(dir: &Path) {
    let sample = repo_root().join("deploy/local");
    std::fs::create_dir_all(dir.join("rules")).expect("mkdir");
    std::fs::copy(sample.join("catalogue.yaml"), dir.join("catalogue.yaml")).expect("copy");
    for entry in std::fs::read_dir(sample.join("rules")).expect("rules") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join("rules").join(entry.file_name())).expect("copy");
    }
}

/// Replaces a file the way editors and deployment tools do: a new file renamed over the old.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

const LIMITS: &str = "  default_deadline_ms: 5000\n";

#[tokio::test]
async fn transforms_are_applied_to_provider_values() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let identity = get(
        &mut client,
        request("identity.person", "housing-grant", &["date_of_birth"]),
    )
    .await
    .expect("answered");
    // The applicant's birth date is an adult's: the programme learns that, not the date.
    assert_eq!(
        identity.attributes["date_of_birth"].kind,
        Some(Kind::BoolValue(true))
    );
    assert_eq!(identity.transformed.len(), 1);
    assert_eq!(identity.transformed[0].transform, "age_over(21)");
    assert_eq!(identity.transformed[0].rule_id, "housing-identity");

    let family = get(
        &mut client,
        request(
            "civil.family",
            "housing-grant",
            &["family_book_number", "spouse_subject", "marital_status"],
        ),
    )
    .await
    .expect("answered");
    match &family.attributes["family_book_number"].kind {
        Some(Kind::StringValue(masked)) => {
            let hidden = masked.chars().filter(|c| *c == '*').count();
            assert_eq!(masked.chars().count() - hidden, 4, "{masked}");
            assert!(masked.starts_with('*'), "{masked}");
        }
        other => panic!("a masked string, got {other:?}"),
    }
    let hashed = match &family.attributes["spouse_subject"].kind {
        Some(Kind::StringValue(hex)) => hex.clone(),
        other => panic!("a hashed string, got {other:?}"),
    };
    assert_eq!(hashed.len(), 64);
    assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
    // The same consumer gets the same hash again; it is not the spouse's ID.
    let again = get(
        &mut client,
        request("civil.family", "housing-grant", &["spouse_subject"]),
    )
    .await
    .expect("answered");
    assert_eq!(
        again.attributes["spouse_subject"].kind,
        Some(Kind::StringValue(hashed.clone()))
    );
    assert!(!hashed.starts_with("784"));
    let mut transforms: Vec<&str> = family
        .transformed
        .iter()
        .map(|t| t.transform.as_str())
        .collect();
    transforms.sort_unstable();
    assert_eq!(transforms, ["hash", "mask(keep_last=4)"]);
    assert_eq!(
        family.attributes["marital_status"].kind,
        Some(Kind::StringValue("married".into()))
    );

    let labour = get(
        &mut client,
        request(
            "labour.employment",
            "housing-grant",
            &["monthly_salary_aed", "employment_start"],
        ),
    )
    .await
    .expect("answered");
    match &labour.attributes["monthly_salary_aed"].kind {
        Some(Kind::StringValue(band)) => assert!(
            [
                "<0",
                "0-4999",
                "5000-9999",
                "10000-14999",
                "15000-19999",
                "20000-29999",
                ">=30000"
            ]
            .contains(&band.as_str()),
            "{band}"
        ),
        other => panic!("a salary band, got {other:?}"),
    }
    match labour.attributes["employment_start"].kind {
        Some(Kind::IntValue(year)) => assert!((1950..=2026).contains(&year), "{year}"),
        ref other => panic!("a year, got {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_store_is_picked_up_and_a_broken_one_is_refused_keeping_the_old() {
    let federation = Federation::start();
    let store = tempfile::tempdir().expect("tempdir");
    copy_sample(store.path());
    let providers = federation.providers();
    let upstreams: Vec<(&str, String)> = providers
        .iter()
        .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
        .collect();
    let mut gateway =
        federation.serve_gateway_with(store.path(), &upstreams, LIMITS, "policy_poll_ms: 100\n");
    let mut client =
        isnad_tests::client_with(gateway.addr, &federation.material("housing-programme"));
    let ask = || request("identity.person", "housing-grant", &["sex", "full_name_en"]);
    let before = get(&mut client, ask()).await.expect("answered");
    assert_eq!(before.withheld[0].field, "sex");
    let old_revision = before.provenance.expect("provenance").policy_revision;

    // Grant `sex` as well: the gateway notices the file change by itself.
    let housing = store.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    replace(
        &housing,
        &text.replace(
            "      emirate: allow\n",
            "      emirate: allow\n      sex: allow\n",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let response = get(&mut client, ask()).await.expect("answered");
        if response.attributes.contains_key("sex") {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "the new policy was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_revision = after.provenance.expect("provenance").policy_revision;
    assert_ne!(old_revision, new_revision);

    // A broken store: refused, logged, and the last good policy keeps deciding.
    replace(
        &housing,
        &text.replace("      emirate: allow\n", "      emirate: alow\n"),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still = get(&mut client, ask()).await.expect("answered");
    assert!(
        still.attributes.contains_key("sex"),
        "the last good policy stays"
    );
    assert_eq!(
        still.provenance.expect("provenance").policy_revision,
        new_revision
    );
    gateway.process.assert_running();
    let logs = gateway.process.logs();
    assert!(logs.contains("policy reload refused"), "{logs}");
    assert!(logs.contains("unknown treatment \"alow\""), "{logs}");
}

#[tokio::test]
async fn admin_reload_reports_errors_and_only_admins_may_call_it() {
    let federation = Federation::start();
    let store = tempfile::tempdir().expect("tempdir");
    copy_sample(store.path());
    let providers = federation.providers();
    let upstreams: Vec<(&str, String)> = providers
        .iter()
        .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
        .collect();
    // No polling: only the RPC and SIGHUP reload.
    let gateway =
        federation.serve_gateway_with(store.path(), &upstreams, LIMITS, "policy_poll_ms: 0\n");
    let mut admin = AdminClient::new(channel_with(gateway.addr, &federation.material("admin")));
    let mut consumer = AdminClient::new(channel_with(
        gateway.addr,
        &federation.material("housing-programme"),
    ));

    let (code, reason) = refusal(
        consumer
            .reload_policy(ReloadPolicyRequest {})
            .await
            .map(|_| Default::default()),
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "not_admin")
    );

    let unchanged = admin
        .reload_policy(ReloadPolicyRequest {})
        .await
        .expect("reloaded")
        .into_inner();
    assert!(!unchanged.changed);
    assert_eq!(unchanged.revision, unchanged.previous_revision);

    let housing = store.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    replace(
        &housing,
        &text.replace("dataset: identity.person", "dataset: identity.persons"),
    );
    let status = admin
        .reload_policy(ReloadPolicyRequest {})
        .await
        .expect_err("a broken store is refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        isnad_proto::errors::reason(&status).as_deref(),
        Some("policy_invalid")
    );
    assert!(
        status.message().contains("rules/housing.yaml:")
            && status
                .message()
                .contains("unknown dataset \"identity.persons\""),
        "{}",
        status.message()
    );
    let policy_status = admin
        .policy_status(PolicyStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        policy_status.revision, unchanged.revision,
        "the old policy stays"
    );
    assert!(policy_status.last_error.contains("identity.persons"));

    replace(&housing, &text.replace("      emirate: allow\n", ""));
    let reloaded = admin
        .reload_policy(ReloadPolicyRequest {})
        .await
        .expect("reloaded")
        .into_inner();
    assert!(reloaded.changed);
    assert_eq!(reloaded.previous_revision, unchanged.revision);
    let mut client =
        isnad_tests::client_with(gateway.addr, &federation.material("housing-programme"));
    let response = get(
        &mut client,
        request("identity.person", "housing-grant", &["emirate"]),
    )
    .await
    .expect("answered");
    assert_eq!(response.withheld[0].reason, "not_granted");
    assert_eq!(
        response.provenance.expect("provenance").policy_revision,
        reloaded.revision
    );
}

#[tokio::test]
async fn a_signed_store_is_required_when_a_key_is_configured() {
    let federation = Federation::start();
    let store = tempfile::tempdir().expect("tempdir");
    copy_sample(store.path());
    let keys = tempfile::tempdir().expect("tempdir");
    let key = isnad_policy::SigningKey::generate().expect("key");
    let public = keys.path().join("team.pub");
    std::fs::write(&public, key.verifying_key().to_string()).expect("write");
    let sign = |dir: &Path| {
        let sources = isnad_policy::Sources::read_dir(dir).expect("reads");
        std::fs::write(dir.join("policy.sig"), key.sign(&sources.revision())).expect("sign");
    };
    sign(store.path());
    let providers = federation.providers();
    let upstreams: Vec<(&str, String)> = providers
        .iter()
        .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
        .collect();
    let mut gateway = federation.serve_gateway_with(
        store.path(),
        &upstreams,
        LIMITS,
        &format!(
            "policy_poll_ms: 0\npolicy_signing_key: {}\n",
            public.display()
        ),
    );
    let mut admin = AdminClient::new(channel_with(gateway.addr, &federation.material("admin")));
    let start = admin
        .policy_status(PolicyStatusRequest {})
        .await
        .expect("status")
        .into_inner();

    // Changed but not signed again: refused through SIGHUP as through the RPC.
    let housing = store.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    replace(
        &housing,
        &text.replace("      emirate: allow\n", "      sex: allow\n"),
    );
    let status = admin
        .reload_policy(ReloadPolicyRequest {})
        .await
        .expect_err("an unsigned change is refused");
    assert_eq!(
        isnad_proto::errors::reason(&status).as_deref(),
        Some("policy_signature")
    );
    assert!(
        status.message().contains("changed after it was signed"),
        "{}",
        status.message()
    );
    let pid = gateway.process.pid();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.process.logs().contains("trigger=\"SIGHUP\"") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP was not acted on: {}",
            gateway.process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.process.assert_running();

    // Signed: SIGHUP swaps it in.
    sign(store.path());
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = admin
            .policy_status(PolicyStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        if now.revision != start.revision {
            assert!(now.last_error.is_empty(), "{}", now.last_error);
            break;
        }
        assert!(Instant::now() < deadline, "the signed store was not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client =
        isnad_tests::client_with(gateway.addr, &federation.material("housing-programme"));
    let response = get(
        &mut client,
        request("identity.person", "housing-grant", &["sex"]),
    )
    .await
    .expect("answered");
    assert!(response.attributes.contains_key("sex"));
}

#[tokio::test]
async fn a_gateway_refuses_to_start_on_an_unsigned_store_when_a_key_is_configured() {
    let federation = Federation::start();
    let store = tempfile::tempdir().expect("tempdir");
    copy_sample(store.path());
    let key = isnad_policy::SigningKey::generate().expect("key");
    let public = store.path().join("team.pub");
    std::fs::write(&public, key.verifying_key().to_string()).expect("write");
    let config = federation
        .gateway_config(
            store.path(),
            &[],
            "",
            &format!("policy_signing_key: {}\n", public.display()),
        )
        .path;
    let stderr = isnad_tests::serve_refused(&config);
    assert!(stderr.contains("policy.sig is missing"), "{stderr}");
}

#[tokio::test]
async fn a_request_in_flight_during_a_reload_finishes_under_the_policy_it_started_with() {
    use isnad_tests::providers::{Behaviour, ProviderDouble};

    let federation = Federation::start();
    let store = tempfile::tempdir().expect("tempdir");
    copy_sample(store.path());
    let slow = ProviderDouble::start(
        &federation.material("identity-authority"),
        Behaviour::Slow(Duration::from_millis(1500)),
    )
    .await;
    let gateway = federation.serve_gateway_with(
        store.path(),
        &[("identity-authority", slow.endpoint())],
        LIMITS,
        "policy_poll_ms: 0\n",
    );
    let mut admin = AdminClient::new(channel_with(gateway.addr, &federation.material("admin")));
    let material = federation.material("housing-programme");
    let mut client = isnad_tests::client_with(gateway.addr, &material);
    let ask = || request("identity.person", "housing-grant", &["full_name_en", "sex"]);
    let in_flight = tokio::spawn(async move { get(&mut client, ask()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let housing = store.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    replace(
        &housing,
        &text.replace(
            "      emirate: allow\n",
            "      emirate: allow\n      sex: allow\n",
        ),
    );
    let reloaded = admin
        .reload_policy(ReloadPolicyRequest {})
        .await
        .expect("reloaded")
        .into_inner();
    assert!(reloaded.changed);

    let old = in_flight.await.expect("joined").expect("answered");
    assert_eq!(
        old.provenance.expect("provenance").policy_revision,
        reloaded.previous_revision,
        "decided under the policy it started with"
    );
    assert!(!old.attributes.contains_key("sex"));
    assert_eq!(old.withheld[0].reason, "not_granted");

    let mut client = isnad_tests::client_with(gateway.addr, &material);
    let new = get(&mut client, ask()).await.expect("answered");
    assert_eq!(
        new.provenance.expect("provenance").policy_revision,
        reloaded.revision
    );
    assert!(new.attributes.contains_key("sex"));
}

/// A node opens an existing audit log beside the policy's compilation, naming it after the
/// federation read ahead from the catalogue before the store's signature is checked. A tampered
/// catalogue that names another federation must neither start the node nor touch the log.
#[tokio::test]
async fn a_tampered_catalogue_neither_starts_a_node_nor_touches_its_audit_log() {
    let federation = Federation::start();
    let store = tempfile::tempdir().expect("tempdir");
    copy_sample(store.path());
    let key = isnad_policy::SigningKey::generate().expect("key");
    let public = store.path().join("team.pub");
    std::fs::write(&public, key.verifying_key().to_string()).expect("write");
    let sources = isnad_policy::Sources::read_dir(store.path()).expect("reads");
    std::fs::write(
        store.path().join("policy.sig"),
        key.sign(&sources.revision()),
    )
    .expect("sign");
    let config = federation.gateway_config(
        store.path(),
        &[],
        LIMITS,
        &format!("policy_signing_key: {}\n", public.display()),
    );
    let mut node = federation.start_gateway(&config);
    // Answered or refused, the request is recorded: the log has a record, a checkpoint and
    // its key.
    let _ = get(
        &mut isnad_tests::client_with(node.addr, &federation.material("housing-programme")),
        request("identity.person", "housing-grant", &["full_name_en"]),
    )
    .await;
    node.process
        .terminate(Duration::from_secs(10))
        .await
        .expect("stops");
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = ["log.pub", "checkpoint", "offsets"]
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    std::fs::read(dir.join(name)).expect("read"),
                )
            })
            .collect();
        for dir in [dir.join("segments"), dir.join("checkpoints")] {
            for entry in std::fs::read_dir(&dir).expect("list") {
                let path = entry.expect("entry").path();
                files.push((
                    path.display().to_string(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
        files.sort();
        files
    };
    let before = snapshot(&config.audit);

    let catalogue = store.path().join("catalogue.yaml");
    let text = std::fs::read_to_string(&catalogue).expect("read");
    replace(
        &catalogue,
        &text.replace("federation: isnad.example", "federation: evil.example"),
    );
    let stderr = isnad_tests::serve_refused(&config.path);
    assert!(stderr.contains("changed after it was signed"), "{stderr}");
    assert_eq!(before, snapshot(&config.audit), "the log was touched");

    // A node's first start: no log is made in the tampered catalogue's name.
    let first = federation.gateway_config(
        store.path(),
        &[],
        LIMITS,
        &format!("policy_signing_key: {}\n", public.display()),
    );
    isnad_tests::serve_refused(&first.path);
    assert!(
        !first.audit.join("log.pub").exists(),
        "a log was made for the tampered federation"
    );
}
