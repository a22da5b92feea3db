//! Test support: records, signers and logs in temporary directories.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use isnad_audit::{
    AuditLog, AuditRecord, CheckpointSigner, Decision, Options, Recovery, Released,
    SubjectPseudonym, Withheld, pseudonym,
};

pub const ORIGIN: &str = "audit.isnad.test/log";
pub const T0: u64 = 1_795_000_000_000_000_000;

/// Record `i`: consumer, provider, dataset and purpose cycle with different periods, so that
/// every combination of keys has a known set of matches; times increase by 1 ms.
pub fn record(i: u64) -> AuditRecord {
    let consumers = ["housing-programme", "health-authority", "tax-office"];
    let providers = ["identity-authority", "civil-registry"];
    let datasets = [
        "identity.person",
        "civil.family",
        "labour.employment",
        "tax.income",
    ];
    let purposes = ["housing-grant", "newborn-registration", "audit"];
    AuditRecord {
        time: T0 + i * 1_000_000,
        node: "gw-1".into(),
        request_id: format!("req-{i:08}"),
        consumer: consumers[(i % 3) as usize].into(),
        provider: providers[(i % 2) as usize].into(),
        dataset: datasets[(i % 4) as usize].into(),
        purpose: purposes[(i % 3) as usize].into(),
        legal_basis: "statute".into(),
        basis_reference: "Housing Act art. 7".into(),
        consent_id: i.is_multiple_of(2).then(|| format!("consent-{i}")),
        subject: subject(i % 7),
        requested: vec!["full_name_en".into(), "date_of_birth".into(), "iban".into()],
        released: vec![Released {
            field: "full_name_en".into(),
            treatment: "allow".into(),
            rule_id: "rule-1".into(),
        }],
        withheld: vec![Withheld {
            field: "iban".into(),
            reason: "field_not_granted".into(),
            rule_id: String::new(),
        }],
        decision: Decision::Released,
        policy_revision: [3; 32],
        released_digest: [4; 32],
        status: "ok".into(),
    }
}

pub fn subject(n: u64) -> SubjectPseudonym {
    pseudonym(b"test pseudonym key", &format!("784-1990-{n:07}-1"))
}

pub fn bytes(i: u64) -> Vec<u8> {
    record(i).encode().expect("encodes")
}

pub fn signer() -> Arc<CheckpointSigner> {
    let pkcs8 = CheckpointSigner::generate_pkcs8().expect("key");
    Arc::new(CheckpointSigner::from_pkcs8(ORIGIN, &pkcs8).expect("signer"))
}

pub fn options(signer: &Arc<CheckpointSigner>) -> Options {
    Options {
        signer: Some(signer.clone()),
        // Tests call checkpoint_now; the thread should not race them.
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..Options::default()
    }
}

pub fn open(dir: &Path, signer: &Arc<CheckpointSigner>) -> (AuditLog, Recovery) {
    AuditLog::open(dir, options(signer)).expect("opens")
}

/// A log of `n` records in small segments (about `per_segment` records each), checkpointed at
/// the end; closed again.
pub fn write_log(dir: &Path, signer: &Arc<CheckpointSigner>, n: u64, per_segment: u64) {
    let frame = 16 + bytes(0).len() as u64;
    let opts = Options {
        segment_size: 24 + frame * per_segment,
        ..options(signer)
    };
    let (log, _) = AuditLog::open(dir, opts).expect("opens");
    for i in 0..n {
        log.append_wait(bytes(i)).expect("appends");
    }
    log.checkpoint_now().expect("checkpoint");
}

pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}
