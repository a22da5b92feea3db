//! `isnad audit`: the auditor's tools, offline, on a log directory (`isnad up` keeps its log in
//! `DIR/audit`). They read only the segment files, the checkpoints and `log.pub`, never the
//! derived files, and trust nothing the gateway computed: `verify` recomputes every leaf, the
//! tree and every checkpoint signature; `proof` recomputes the tree and checks the proof it
//! prints against the signed checkpoint.
//!
//! On a log a gateway is still writing, the last record may be half written; verify a copy or
//! a stopped gateway's log, or ask the running gateway through `isnad.v1.Audit`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use isnad_audit::{
    Checkpoint, Export, LeafIndex, MemoryTree, TreeSize, VerifierKey, leaf_hash, load_key,
};
use isnad_proto::v1::AuditRecordView;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Make an Ed25519 signing key (PKCS#8, mode 0600): a log's checkpoint key (`audit.key`)
    /// or a node's provenance key (`provenance_key`).
    Keygen {
        /// The key file to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Recompute every record, the Merkle tree and every checkpoint signature of a log
    /// directory, and report the first inconsistency precisely.
    Verify {
        /// The log directory.
        logdir: PathBuf,
        /// The log's verifier key file [default: LOGDIR/log.pub]. Give the key you got from the
        /// operator out of band: a key in the directory proves only that the directory agrees
        /// with itself.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Print records as JSON Lines: index, the exact record bytes (base64), the leaf hash and the
    /// decoded fields.
    Export {
        /// The log directory.
        logdir: PathBuf,
        /// The first leaf index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// The leaf index to stop before [default: the end].
        #[arg(long)]
        to: Option<u64>,
    },
    /// Find records: by subject (its pseudonym is computed with the gateway's pseudonym key),
    /// consumer, provider, dataset, purpose and time range.
    Query(QueryArgs),
    /// Print and check an inclusion proof (`--index`) or a consistency proof
    /// (`--consistency OLD`) against a signed checkpoint.
    Proof {
        /// The log directory.
        logdir: PathBuf,
        /// The leaf to prove.
        #[arg(
            long,
            conflicts_with = "consistency",
            required_unless_present = "consistency"
        )]
        index: Option<u64>,
        /// The older tree size of a consistency proof.
        #[arg(long)]
        consistency: Option<u64>,
        /// The tree size to prove in: a checkpointed size [default: the latest checkpoint].
        #[arg(long)]
        size: Option<u64>,
        /// The log's verifier key file [default: LOGDIR/log.pub].
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// The log directory.
    logdir: PathBuf,
    /// The subject, as requests name it.
    #[arg(long)]
    subject: Option<String>,
    /// The gateway's pseudonym key file, for --subject [default: LOGDIR/../pseudonym.key, where
    /// `isnad up` keeps it].
    #[arg(long)]
    pseudonym_key: Option<PathBuf>,
    /// The consumer agency.
    #[arg(long)]
    consumer: Option<String>,
    /// The provider agency.
    #[arg(long)]
    provider: Option<String>,
    /// The dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// The purpose.
    #[arg(long)]
    purpose: Option<String>,
    /// Records at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Records at or before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Print JSON Lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Keygen { out } => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists: keys are never overwritten",
                out.display()
            );
            crate::secrets::ensure_ed25519_key(&out)?;
            let pkcs8 = std::fs::read(&out)?;
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
                .map_err(|_| anyhow::anyhow!("the new key does not load"))?;
            let public = ring::signature::KeyPair::public_key(&pair);
            println!(
                "Ed25519 key {} (public key {})",
                out.display(),
                STANDARD.encode(public.as_ref())
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { logdir, key } => verify(&logdir, key.as_deref()),
        AuditCommand::Export { logdir, from, to } => export(&logdir, from, to),
        AuditCommand::Query(args) => query(&args),
        AuditCommand::Proof {
            logdir,
            index,
            consistency,
            size,
            key,
        } => proof(&logdir, index, consistency, size, key.as_deref()),
    }
}

fn key_of(logdir: &Path, key: Option<&Path>) -> anyhow::Result<VerifierKey> {
    match key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            VerifierKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        None => load_key(logdir).map_err(|e| anyhow::anyhow!("{e} [{}]", e.code())),
    }
}

fn verify(logdir: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let key = key_of(logdir, key)?;
    let show = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut last_shown = started;
    let result = isnad_audit::verify_dir(logdir, &key, |records, bytes| {
        // A progress line on a terminal, at most a few times a second.
        if show && last_shown.elapsed().as_millis() >= 250 {
            last_shown = std::time::Instant::now();
            let mut err = std::io::stderr();
            let _ = write!(err, "\r  verifying: {records} records, {} MiB", bytes >> 20);
            let _ = err.flush();
        }
    });
    if show {
        eprint!("\r\x1b[K");
    }
    match result {
        Ok(report) => {
            println!(
                "ok: {} records in {} segments, {} checkpoints verified (latest size {}), \
                 root {} ({:.1} s)",
                report.records,
                report.segments,
                report.checkpoints,
                report
                    .latest_checkpoint
                    .map_or("none".to_owned(), |size| size.0.to_string()),
                isnad_audit::hex(&report.root),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("FAILED: {error} [{}]", error.code());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A decoded record as JSON.
fn record_json(view: &AuditRecordView) -> serde_json::Value {
    let time = view
        .time
        .as_ref()
        .and_then(|t| std::time::SystemTime::try_from(*t).ok())
        .and_then(|t| time::OffsetDateTime::from(t).format(&Rfc3339).ok())
        .unwrap_or_default();
    serde_json::json!({
        "time": time,
        "node": view.node,
        "request_id": view.request_id,
        "consumer": view.consumer,
        "provider": view.provider,
        "dataset": view.dataset,
        "purpose": view.purpose,
        "legal_basis": view.legal_basis,
        "basis_reference": view.basis_reference,
        "consent_id": view.consent_id,
        "subject_pseudonym": view.subject_pseudonym,
        "requested": view.requested,
        "released": view.released.iter().map(|r| serde_json::json!({
            "field": r.field, "treatment": r.treatment, "rule_id": r.rule_id })).collect::<Vec<_>>(),
        "withheld": view.withheld.iter().map(|w| serde_json::json!({
            "field": w.field, "reason": w.reason, "rule_id": w.rule_id })).collect::<Vec<_>>(),
        "decision": view.decision,
        "refused_step": view.refused_step,
        "refused_reason": view.refused_reason,
        "policy_revision": view.policy_revision,
        "released_digest": view.released_digest,
        "status": view.status,
    })
}

/// Every record of `logdir` from `from` to `to`, with its decoded view; stops at the first
/// damage, which is returned.
fn records(
    logdir: &Path,
    from: u64,
    to: Option<u64>,
    mut each: impl FnMut(u64, &[u8], &AuditRecordView) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let export = Export::open(logdir, LeafIndex(from), to.map(LeafIndex))
        .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    for exported in export {
        let exported = exported.map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
        let view = crate::audit_service::view(&exported.bytes)
            .map_err(|status| anyhow::anyhow!("{}", status.message()))?;
        each(exported.index.0, &exported.bytes, &view)?;
    }
    Ok(())
}

fn export(logdir: &Path, from: u64, to: Option<u64>) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    records(logdir, from, to, |index, bytes, view| {
        let line = serde_json::json!({
            "index": index,
            "leaf": STANDARD.encode(bytes),
            "leaf_hash": isnad_audit::hex(&leaf_hash(bytes)),
            "record": record_json(view),
        });
        writeln!(out, "{line}")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn parse_time(text: &str, what: &str) -> anyhow::Result<std::time::SystemTime> {
    time::OffsetDateTime::parse(text, &Rfc3339)
        .map(Into::into)
        .map_err(|e| anyhow::anyhow!("--{what} {text:?}: not an RFC 3339 time ({e})"))
}

fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let pseudonym = match &args.subject {
        None => None,
        Some(subject) => {
            let path = args.pseudonym_key.clone().unwrap_or_else(|| {
                args.logdir
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("pseudonym.key")
            });
            let key = crate::secrets::PseudonymKey::from_file(&path)
                .map_err(|e| anyhow::anyhow!("{e:#} (give the gateway's --pseudonym-key)"))?;
            Some(key.hex(subject))
        }
    };
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time(t, "since"))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time(t, "until"))
        .transpose()?;
    let matches =
        |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
    let mut found = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    records(&args.logdir, 0, None, |index, bytes, view| {
        let at = view
            .time
            .and_then(|t| std::time::SystemTime::try_from(t).ok())
            .unwrap_or(std::time::UNIX_EPOCH);
        let wanted = pseudonym
            .as_deref()
            .is_none_or(|p| p == view.subject_pseudonym)
            && matches(&args.consumer, &view.consumer)
            && matches(&args.provider, &view.provider)
            && matches(&args.dataset, &view.dataset)
            && matches(&args.purpose, &view.purpose)
            && since.is_none_or(|since| at >= since)
            && until.is_none_or(|until| at <= until);
        if !wanted {
            return Ok(());
        }
        found += 1;
        if args.json {
            let line = serde_json::json!({
                "index": index,
                "leaf": STANDARD.encode(bytes),
                "record": record_json(view),
            });
            writeln!(out, "{line}")?;
        } else {
            let json = record_json(view);
            let released: Vec<String> = view
                .released
                .iter()
                .map(|r| {
                    if r.treatment == "allow" {
                        r.field.clone()
                    } else {
                        format!("{} as {}", r.field, r.treatment)
                    }
                })
                .collect();
            writeln!(
                out,
                "{index:>8}  {}  {} -> {} {} for {} ({})  {}{}",
                json["time"].as_str().unwrap_or_default(),
                view.provider,
                view.consumer,
                view.dataset,
                view.purpose,
                if view.legal_basis.is_empty() {
                    "-"
                } else {
                    &view.legal_basis
                },
                view.decision,
                if view.decision == "refused" {
                    format!(": {} {}", view.refused_step, view.refused_reason)
                } else if released.is_empty() {
                    String::new()
                } else {
                    format!(": {}", released.join(", "))
                }
            )?;
        }
        Ok(())
    })?;
    out.flush()?;
    if !args.json {
        eprintln!("{found} records");
    }
    Ok(ExitCode::SUCCESS)
}

/// The signed checkpoint of `size` (or the latest), verified with `key`.
fn checkpoint_at(
    logdir: &Path,
    key: &VerifierKey,
    size: Option<u64>,
) -> anyhow::Result<Checkpoint> {
    let path = match size {
        None => logdir.join(isnad_audit::CHECKPOINT_FILE),
        Some(size) => logdir
            .join(isnad_audit::CHECKPOINTS_DIR)
            .join(format!("{size:020}")),
    };
    let note = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (proofs are given against signed checkpoints: pick a size in {})",
            path.display(),
            logdir.join(isnad_audit::CHECKPOINTS_DIR).display()
        )
    })?;
    Checkpoint::verify(&note, key)
        .map_err(|e| anyhow::anyhow!("{}: {e} [{}]", path.display(), e.code()))
}

fn proof(
    logdir: &Path,
    index: Option<u64>,
    consistency: Option<u64>,
    size: Option<u64>,
    key: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let key = key_of(logdir, key)?;
    let checkpoint = checkpoint_at(logdir, &key, size)?;
    let size = checkpoint.size;
    // The tree recomputed from the records: nothing derived is trusted.
    let mut tree = MemoryTree::new();
    let mut leaves = Vec::new();
    records(logdir, 0, Some(size.0), |_, bytes, _| {
        let leaf = leaf_hash(bytes);
        tree.push(leaf);
        leaves.push(leaf);
        Ok(())
    })?;
    anyhow::ensure!(
        tree.size() == size,
        "the log has {} records, fewer than its checkpoint's {}",
        tree.size().0,
        size.0
    );
    let hex = |hashes: &[isnad_audit::Hash]| -> Vec<String> {
        hashes.iter().map(|h| isnad_audit::hex(h)).collect()
    };
    let output = if let Some(index) = index {
        let leaf = LeafIndex(index);
        let leaf_hash = *leaves
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "leaf {index} is not in the checkpointed tree of {} records",
                    size.0
                )
            })?;
        let proof = isnad_audit::inclusion_proof(&tree, leaf, size)?;
        isnad_audit::verify_inclusion(leaf, size, &leaf_hash, &proof, &checkpoint.root)?;
        serde_json::json!({
            "kind": "inclusion",
            "index": index,
            "tree_size": size.0,
            "leaf_hash": isnad_audit::hex(&leaf_hash),
            "proof": hex(&proof),
            "root": isnad_audit::hex(&checkpoint.root),
            "checkpoint": checkpoint.note,
            "verified": true,
        })
    } else {
        let old = TreeSize(consistency.unwrap_or(0));
        anyhow::ensure!(
            old <= size,
            "--consistency {} is larger than the tree of {}",
            old.0,
            size.0
        );
        let proof = isnad_audit::consistency_proof(&tree, old, size)?;
        let mut old_tree = MemoryTree::new();
        for leaf in leaves
            .iter()
            .take(usize::try_from(old.0).unwrap_or(usize::MAX))
        {
            old_tree.push(*leaf);
        }
        isnad_audit::verify_consistency(old, size, &old_tree.root(), &checkpoint.root, &proof)?;
        serde_json::json!({
            "kind": "consistency",
            "old_size": old.0,
            "old_root": isnad_audit::hex(&old_tree.root()),
            "new_size": size.0,
            "new_root": isnad_audit::hex(&checkpoint.root),
            "proof": hex(&proof),
            "checkpoint": checkpoint.note,
            "verified": true,
        })
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(ExitCode::SUCCESS)
}
