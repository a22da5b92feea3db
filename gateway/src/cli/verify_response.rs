//! `isnad verify-response`: a consumer (or anyone it shows the response to) checks a response's
//! provenance signature with the gateway node's public provenance key, and optionally that the
//! audit log holds the matching record.

use std::path::PathBuf;
use std::process::ExitCode;

use isnad_audit::{Export, LeafIndex};
use isnad_proto::v1::AttributesResponse;
use prost::Message;

use crate::provenance::{ProvenanceKey, released_digest};

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyResponseArgs {
    /// The response, as the protobuf bytes of `AttributesResponse` (`isnad query --save FILE`).
    response: PathBuf,
    /// The gateway node's provenance key file (`<key id> <base64 key>`; `isnad up` writes
    /// DIR/provenance.pub).
    #[arg(long)]
    key: PathBuf,
    /// Also check the record at the response's audit index in this log directory: same request,
    /// subject, dataset, provider, time, and the digest of exactly these attributes.
    #[arg(long)]
    log: Option<PathBuf>,
}

pub(crate) fn run(args: VerifyResponseArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.response)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.response.display()))?;
    let response = AttributesResponse::decode(bytes.as_slice()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an AttributesResponse: {e}",
            args.response.display()
        )
    })?;
    let text = std::fs::read_to_string(&args.key)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.key.display()))?;
    let key =
        ProvenanceKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    if let Err(error) = key.verify(&response) {
        println!("FAILED: {error} [{}]", error.code());
        return Ok(ExitCode::FAILURE);
    }
    let provenance = response.provenance.clone().unwrap_or_default();
    println!(
        "ok: signed by {} — {} attributes of {} from {}, request {}, policy {}, audit index {}",
        provenance.key_id,
        response.attributes.len(),
        provenance.dataset,
        provenance.provider,
        provenance.request_id,
        provenance.policy_revision,
        provenance.audit_index
    );
    if let Some(log) = &args.log {
        let index = LeafIndex(provenance.audit_index);
        let record = Export::open(log, index, Some(LeafIndex(index.0 + 1)))
            .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("the log has no record {}", index.0))?
            .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?
            .record;
        let fetched_at = provenance
            .fetched_at
            .and_then(|t| std::time::SystemTime::try_from(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        let checks = [
            ("request id", record.request_id == provenance.request_id),
            (
                "subject",
                record.subject.0.as_slice() == provenance.subject_pseudonym.as_slice(),
            ),
            ("dataset", record.dataset == provenance.dataset),
            ("provider", record.provider == provenance.provider),
            ("time", record.time == fetched_at),
            (
                "released attributes",
                record.released_digest == released_digest(&response.attributes),
            ),
        ];
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(what, _)| *what)
            .collect();
        if !failed.is_empty() {
            println!(
                "FAILED: the audit record {} does not match the response: {}",
                index.0,
                failed.join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        println!(
            "ok: audit record {} in {} matches (request, subject, dataset, provider, time, digest of the attributes)",
            index.0,
            log.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
