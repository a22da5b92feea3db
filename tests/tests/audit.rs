//! The audit log through the real gateway: every access, released or refused, is a record; the
//! auditor's service answers with proofs that check against the signed checkpoint with the
//! log's key; responses carry signatures that match their records; a kill -9 under load loses no
//! answered request; a damaged log stops the gateway from starting, a torn tail does not.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isnad_proto::v1::audit_client::AuditClient;
use isnad_proto::v1::{AuditQuery, ExportRequest, InclusionProofRequest, SubjectReportRequest};
use isnad_tests::{Federation, applicant, channel_with, client_with, get, refusal, request};
use tonic::Code;

fn isnad(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(isnad_tests::isnad_bin())
        .args(args)
        .output()
        .expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn hashes(proof: &[Vec<u8>]) -> Vec<isnad_audit::Hash> {
    proof
        .iter()
        .map(|hash| hash.as_slice().try_into().expect("32 bytes"))
        .collect()
}

fn auditor(federation: &Federation) -> AuditClient<tonic::transport::Channel> {
    AuditClient::new(channel_with(
        federation.gateway,
        &federation.material("auditor"),
    ))
}

#[tokio::test]
async fn every_access_is_recorded_and_the_auditor_proves_each_against_the_signed_checkpoint() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let released = get(
        &mut client,
        request(
            "identity.person",
            "housing-grant",
            &["full_name_en", "mobile"],
        ),
    )
    .await
    .expect("answered");
    let nothing = get(
        &mut client,
        request("identity.person", "housing-grant", &["mobile"]),
    )
    .await
    .expect("answered, nothing released");
    assert!(nothing.attributes.is_empty());
    let (code, reason) = refusal(
        get(
            &mut client,
            request("civil.family", "newborn-registration", &["marital_status"]),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (Code::PermissionDenied, "no_rule"));
    let (_, reason) = refusal(get(&mut client, request("no.such", "housing-grant", &["x"])).await);
    assert_eq!(reason, "unknown_dataset");
    // The records' indexes are in the responses.
    assert_eq!(released.provenance.as_ref().expect("p").audit_index, 0);
    assert_eq!(nothing.provenance.as_ref().expect("p").audit_index, 1);

    // Consumers may not read the log.
    let mut as_consumer = AuditClient::new(channel_with(
        federation.gateway,
        &federation.material("housing-programme"),
    ));
    let status = as_consumer
        .query(AuditQuery::default())
        .await
        .expect_err("not an auditor");
    assert_eq!(
        (
            status.code(),
            isnad_proto::errors::reason(&status).as_deref()
        ),
        (Code::PermissionDenied, Some("not_auditor"))
    );

    let mut audit = auditor(&federation);
    let answer = audit
        .query(AuditQuery {
            subject: applicant(),
            ..AuditQuery::default()
        })
        .await
        .expect("query")
        .into_inner();
    let key = isnad_audit::load_key(&federation.dir().join("audit")).expect("log.pub");
    let signed = answer.checkpoint.expect("checkpoint");
    assert_eq!(signed.verifier_key, key.to_string());
    let checkpoint = isnad_audit::Checkpoint::verify(&signed.note, &key).expect("signed");
    assert_eq!(checkpoint.size.0, 4);
    let decisions: Vec<(String, String, String)> = answer
        .entries
        .iter()
        .map(|entry| {
            let record = entry.record.as_ref().expect("record");
            (
                record.decision.clone(),
                record.refused_reason.clone(),
                record.dataset.clone(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("released".into(), String::new(), "identity.person".into()),
            ("withheld".into(), String::new(), "identity.person".into()),
            ("refused".into(), "no_rule".into(), "civil.family".into()),
            // Admitted (a well-formed name), then refused: recorded as asked.
            ("refused".into(), "unknown_dataset".into(), "no.such".into()),
        ]
    );
    for entry in &answer.entries {
        isnad_audit::verify_inclusion(
            isnad_audit::LeafIndex(entry.index),
            checkpoint.size,
            &isnad_audit::leaf_hash(&entry.leaf),
            &hashes(&entry.inclusion_proof),
            &checkpoint.root,
        )
        .unwrap_or_else(|e| panic!("entry {}: {e}", entry.index));
        // The record holds the subject's pseudonym, never the ID.
        let record = entry.record.as_ref().expect("record");
        assert_ne!(record.subject_pseudonym, applicant());
        assert!(!String::from_utf8_lossy(&entry.leaf).contains(&applicant()));
    }
    let first = answer.entries[0].record.as_ref().expect("record");
    assert_eq!(first.consumer, "housing-programme");
    assert_eq!(first.provider, "identity-authority");
    assert_eq!(first.legal_basis, "statute");
    assert_eq!(first.requested, vec!["full_name_en", "mobile"]);
    assert_eq!(first.released.len(), 1);
    assert_eq!(first.released[0].field, "full_name_en");
    assert_eq!(first.withheld[0].reason, "denied_by_rule");

    // Filters: by consumer and dataset; another subject has nothing.
    let family = audit
        .query(AuditQuery {
            consumer: "housing-programme".into(),
            dataset: "civil.family".into(),
            ..AuditQuery::default()
        })
        .await
        .expect("query")
        .into_inner();
    assert_eq!(family.entries.len(), 1);
    let nobody = audit
        .query(AuditQuery {
            subject: "784190000000001".into(),
            ..AuditQuery::default()
        })
        .await
        .expect("query")
        .into_inner();
    assert!(nobody.entries.is_empty());

    // The subject report: the Data Tracker view.
    let report = audit
        .subject_report(SubjectReportRequest {
            subject: applicant(),
            ..SubjectReportRequest::default()
        })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(
        (report.released, report.withheld, report.refused),
        (1, 1, 2)
    );
    assert_eq!(report.accesses[0].consumer, "housing-programme");

    // A single proof, and the export stream.
    let proof = audit
        .get_inclusion_proof(InclusionProofRequest {
            index: 2,
            tree_size: 0,
        })
        .await
        .expect("proof")
        .into_inner();
    isnad_audit::verify_inclusion(
        isnad_audit::LeafIndex(2),
        isnad_audit::TreeSize(proof.tree_size),
        &proof.leaf_hash.as_slice().try_into().expect("32"),
        &hashes(&proof.proof),
        &checkpoint.root,
    )
    .expect("verifies");
    let mut stream = audit
        .export(ExportRequest { from: 1, to: 3 })
        .await
        .expect("export")
        .into_inner();
    let mut exported = Vec::new();
    while let Some(entry) = stream.message().await.expect("entry") {
        exported.push(entry.index);
    }
    assert_eq!(exported, vec![1, 2]);
}

#[tokio::test]
async fn a_response_signature_and_its_audit_record_check_out_with_the_cli() {
    let federation = Federation::start();
    let dir = federation.dir().to_str().expect("utf-8").to_owned();
    let saved = federation.dir().join("response.pb");
    let (ok, stdout, stderr) = isnad(&[
        "query",
        "--dir",
        &dir,
        "--as",
        "housing-programme",
        "--dataset",
        "identity.person",
        "--purpose",
        "housing-grant",
        "--subject",
        &applicant(),
        "--fields",
        "full_name_en,date_of_birth",
        "--save",
        saved.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let key = federation.dir().join("provenance.pub");
    let log = federation.dir().join("audit");
    let (ok, stdout, _) = isnad(&[
        "verify-response",
        saved.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "--log",
        log.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("audit record 0"), "{stdout}");

    // A changed attribute breaks the signature.
    use prost::Message;
    let mut response = isnad_proto::v1::AttributesResponse::decode(
        std::fs::read(&saved).expect("read").as_slice(),
    )
    .expect("decodes");
    response.attributes.insert(
        "full_name_en".into(),
        isnad_proto::v1::Value {
            kind: Some(isnad_proto::v1::value::Kind::StringValue(
                "Someone Else".into(),
            )),
        },
    );
    std::fs::write(&saved, response.encode_to_vec()).expect("write");
    let (ok, stdout, _) = isnad(&[
        "verify-response",
        saved.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
    ]);
    assert!(!ok);
    assert!(stdout.contains("provenance_signature"), "{stdout}");
}

#[tokio::test]
async fn the_cli_verifies_exports_queries_and_proves_a_stopped_gateways_log() {
    let federation = Federation::start();
    let mut gateway = federation.start_gateway(&federation.sample_gateway_config("", ""));
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    for _ in 0..5 {
        get(
            &mut client,
            request("identity.person", "housing-grant", &["full_name_en"]),
        )
        .await
        .expect("answered");
    }
    stop(&mut gateway).await;
    let log = gateway.audit.to_str().expect("utf-8").to_owned();
    let (ok, stdout, stderr) = isnad(&["audit", "verify", &log]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: 5 records"), "{stdout}");

    let (ok, stdout, _) = isnad(&["audit", "export", &log, "--from", "3"]);
    assert!(ok);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["index"], 3);
    assert_eq!(lines[0]["record"]["consumer"], "housing-programme");
    assert!(
        lines[0]["leaf"]
            .as_str()
            .is_some_and(|leaf| !leaf.is_empty())
    );

    let key = federation.dir().join("pseudonym.key");
    let (ok, stdout, stderr) = isnad(&[
        "audit",
        "query",
        &log,
        "--subject",
        &applicant(),
        "--pseudonym-key",
        key.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 5);
    let (ok, stdout, _) = isnad(&[
        "audit",
        "query",
        &log,
        "--subject",
        "784190000000001",
        "--pseudonym-key",
        key.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(ok);
    assert_eq!(stdout.lines().count(), 0);

    let (ok, stdout, stderr) = isnad(&["audit", "proof", &log, "--index", "2"]);
    assert!(ok, "{stderr}");
    let proof: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(proof["verified"], true);
    assert_eq!(proof["tree_size"], 5);
    let (ok, stdout, stderr) = isnad(&["audit", "proof", &log, "--consistency", "2"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"kind\": \"consistency\""), "{stdout}");
}

/// Stops a gateway as systemd would (SIGTERM) and waits for it; it must stop by itself.
async fn stop(gateway: &mut isnad_tests::Gateway) {
    let status = gateway.process.terminate(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "the gateway did not stop cleanly on SIGTERM: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_load_loses_no_answered_request() {
    // Five rounds of: load from 32 clients with request ids, kill -9 at a random point, restart,
    // check every answered id is in the log and the log verifies. (Checked by mutation: with the
    // record appended after the answer instead of before, ids go missing in the first round.)
    let federation = Federation::start();
    let config = federation.sample_gateway_config("", "");
    let material = federation.material("housing-programme");
    let mut answered = BTreeSet::new();
    for round in 0..5 {
        let mut gateway = federation.start_gateway(&config);
        let answered_now = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..32)
            .map(|worker| {
                let mut client = client_with(gateway.addr, &material);
                let answered_now = answered_now.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let id = format!("r{round}-w{worker}-n{n}");
                        let ask = isnad_proto::v1::AttributesRequest {
                            request_id: id.clone(),
                            ..request("identity.person", "housing-grant", &["full_name_en"])
                        };
                        match get(&mut client, ask).await {
                            Ok(_) => answered_now.lock().expect("lock").push(id),
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        // Let it take load, then kill it without warning.
        let start = Instant::now();
        while answered_now.lock().expect("lock").len() < 200 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no load got through"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gateway.process.kill9();
        for task in tasks {
            let _ = task.await;
        }
        answered.extend(answered_now.lock().expect("lock").drain(..));
        // The restarted gateway recovers the log (a torn tail is set aside) and serves again.
        let mut gateway = federation.start_gateway(&config);
        get(
            &mut client_with(gateway.addr, &material),
            request("identity.person", "housing-grant", &["full_name_en"]),
        )
        .await
        .expect("serves after recovery");
        stop(&mut gateway).await;
        let logged = logged_request_ids(&config.audit);
        let lost: Vec<&String> = answered.iter().filter(|id| !logged.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} answered requests are not in the log, e.g. {:?}",
            lost.len(),
            lost.first()
        );
        let (ok, stdout, stderr) =
            isnad(&["audit", "verify", config.audit.to_str().expect("utf-8")]);
        assert!(ok, "round {round}: {stdout}{stderr}");
    }
    assert!(answered.len() >= 1000);
}

fn logged_request_ids(log: &Path) -> BTreeSet<String> {
    isnad_audit::Export::open(log, isnad_audit::LeafIndex(0), None)
        .expect("export")
        .map(|record| record.expect("record").record.request_id)
        .collect()
}

#[tokio::test]
async fn a_damaged_log_stops_the_gateway_from_starting_and_a_torn_tail_does_not() {
    let federation = Federation::start();
    let config = federation.sample_gateway_config("", "");
    let mut gateway = federation.start_gateway(&config);
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    for _ in 0..4 {
        get(
            &mut client,
            request("identity.person", "housing-grant", &["full_name_en"]),
        )
        .await
        .expect("answered");
    }
    stop(&mut gateway).await;
    let segment = std::fs::read_dir(config.audit.join("segments"))
        .expect("segments")
        .map(|entry| entry.expect("entry").path())
        .next()
        .expect("a segment");
    let original = std::fs::read(&segment).expect("read");

    // A flipped byte in the middle of the segment: refused, naming the segment and offset.
    let mut damaged = original.clone();
    damaged[60] ^= 0x40;
    std::fs::write(&segment, &damaged).expect("write");
    let stderr = isnad_tests::serve_refused(&config.path);
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        stderr.contains(&name) && stderr.contains("bad_crc"),
        "{stderr}"
    );

    // Half a record at the end (a crash mid-write): set aside, and the gateway serves.
    let mut torn = original.clone();
    torn.extend_from_slice(&[0x30, 0, 0, 0, 9, 0, 0]);
    std::fs::write(&segment, &torn).expect("write");
    let mut gateway = federation.start_gateway(&config);
    get(
        &mut client_with(gateway.addr, &federation.material("housing-programme")),
        request("identity.person", "housing-grant", &["full_name_en"]),
    )
    .await
    .expect("serves");
    stop(&mut gateway).await;
    assert!(
        gateway.process.logs().contains("torn tail"),
        "{}",
        gateway.process.logs()
    );
    let saved = std::fs::read_dir(config.audit.join("torn"))
        .expect("torn")
        .count();
    assert_eq!(saved, 1, "the torn bytes are kept aside");
    let (ok, stdout, _) = isnad(&["audit", "verify", config.audit.to_str().expect("utf-8")]);
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("ok: 5 records"), "{stdout}");
}
