//! `isnad.v1.Audit`: the node's audit log for auditors (`spiffe://<federation>/auditor/<name>`).
//!
//! Every answer that carries records carries their inclusion proofs against a signed
//! checkpoint; when the log has grown since the last checkpoint, one is signed first, so every
//! record returned is covered. Queries by subject take the subject as requests name it and look
//! up its pseudonym: the log never holds the ID. Reads run on the blocking pool (they read
//! files).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isnad_audit::record::DecisionView;
use isnad_audit::{AuditLog, Checkpoint, LeafIndex, Query, RecordView, TreeSize};
use isnad_proto::errors;
use isnad_proto::v1::audit_server::Audit;
use isnad_proto::v1::{
    AuditEntry, AuditQuery, AuditQueryResponse, AuditRecordView, CheckpointRequest,
    CheckpointResponse, ConsistencyProofRequest, ConsistencyProofResponse, ExportRequest,
    FieldOutcome, InclusionProofRequest, InclusionProofResponse, ReleasedField, SignedCheckpoint,
    SubjectAccess, SubjectReportRequest, SubjectReportResponse,
};
use isnad_tls::PeerInfo;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::policy_store::PolicyStore;
use crate::secrets::PseudonymKey;

/// The most records one query answers.
const MAX_QUERY: usize = 1_000;
/// The most accesses one subject report lists.
const MAX_REPORT: usize = 10_000;

/// The `Audit` service.
#[derive(Debug, Clone)]
pub struct AuditService {
    log: AuditLog,
    store: Arc<PolicyStore>,
    pseudonyms: PseudonymKey,
}

fn read_error(error: impl std::fmt::Display, code: &str) -> Status {
    tracing::error!(%error, code, "an audit read failed");
    errors::status(
        Code::Unavailable,
        "audit_read_failed",
        format!("{error} [{code}]"),
    )
}

fn invalid(reason: &'static str, message: impl Into<String>) -> Status {
    errors::status(Code::InvalidArgument, reason, message)
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

fn timestamp_nanos(value: Option<prost_types::Timestamp>) -> Result<Option<u64>, Status> {
    value
        .map(|at| {
            SystemTime::try_from(at)
                .map(nanos)
                .map_err(|_| invalid("invalid_time", "not a valid time"))
        })
        .transpose()
}

fn time_of(nanos: u64) -> prost_types::Timestamp {
    crate::provenance::timestamp(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// A record, decoded for the answer.
pub fn view(bytes: &[u8]) -> Result<AuditRecordView, Status> {
    let record = RecordView::parse(bytes).map_err(|e| read_error(&e, e.code()))?;
    let (decision, step, reason) = match record.decision {
        DecisionView::Released => ("released", "", ""),
        DecisionView::Withheld => ("withheld", "", ""),
        DecisionView::Refused { step, reason } => ("refused", step, reason),
    };
    Ok(AuditRecordView {
        time: Some(time_of(record.time)),
        node: record.node.to_owned(),
        request_id: record.request_id.to_owned(),
        consumer: record.consumer.to_owned(),
        provider: record.provider.to_owned(),
        dataset: record.dataset.to_owned(),
        purpose: record.purpose.to_owned(),
        legal_basis: record.legal_basis.to_owned(),
        basis_reference: record.basis_reference.to_owned(),
        consent_id: record.consent_id.unwrap_or_default().to_owned(),
        subject_pseudonym: isnad_audit::hex(&record.subject.0),
        requested: record.requested.iter().map(str::to_owned).collect(),
        released: record
            .released
            .iter()
            .map(|(field, treatment, rule)| ReleasedField {
                field: field.to_owned(),
                treatment: treatment.to_owned(),
                rule_id: rule.to_owned(),
            })
            .collect(),
        withheld: record
            .withheld
            .iter()
            .map(|(field, reason, rule)| FieldOutcome {
                field: field.to_owned(),
                reason: reason.to_owned(),
                rule_id: rule.to_owned(),
            })
            .collect(),
        decision: decision.to_owned(),
        refused_step: step.to_owned(),
        refused_reason: reason.to_owned(),
        policy_revision: format!("sha256:{}", isnad_audit::hex(&record.policy_revision)),
        released_digest: isnad_audit::hex(&record.released_digest),
        status: record.status.to_owned(),
    })
}

impl AuditService {
    /// The service over `log`; subjects are looked up with `pseudonyms`.
    pub fn new(log: AuditLog, store: Arc<PolicyStore>, pseudonyms: PseudonymKey) -> AuditService {
        AuditService {
            log,
            store,
            pseudonyms,
        }
    }

    /// Only `spiffe://<federation>/auditor/<name>` may call.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let federation = self.store.current().policy.catalogue().federation.clone();
        match request
            .extensions()
            .get::<Arc<PeerInfo>>()
            .map(|peer| &peer.identity)
        {
            Some(Ok(id))
                if id.trust_domain() == federation && id.path().starts_with("auditor/") =>
            {
                Ok(())
            }
            Some(Ok(id)) => Err(errors::status(
                Code::PermissionDenied,
                "not_auditor",
                format!("{id} is not an auditor (spiffe://{federation}/auditor/<name>)"),
            )),
            _ => Err(errors::status(
                Code::Unauthenticated,
                "no_spiffe_id",
                "the client certificate has no usable SPIFFE ID",
            )),
        }
    }

    /// Runs `work` with the log on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&AuditLog) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || work(&log))
            .await
            .map_err(|_| errors::status(Code::Internal, "internal", "an audit read task failed"))?
    }
}

/// A checkpoint that covers the whole log as it is now (signing one if the log has grown).
fn covering_checkpoint(log: &AuditLog) -> Result<Checkpoint, Status> {
    let size = log.size();
    match log.latest_checkpoint() {
        Some(checkpoint) if checkpoint.size >= size => Ok(checkpoint),
        _ => log
            .checkpoint_now()
            .map_err(|e| read_error(&e, e.code()))?
            .or_else(|| log.latest_checkpoint())
            .ok_or_else(|| {
                errors::status(
                    Code::FailedPrecondition,
                    "no_checkpoint",
                    "the log has no checkpoint yet",
                )
            }),
    }
}

fn signed(log: &AuditLog, checkpoint: &Checkpoint) -> SignedCheckpoint {
    SignedCheckpoint {
        note: checkpoint.note.clone(),
        tree_size: checkpoint.size.0,
        root_hash: checkpoint.root.to_vec(),
        verifier_key: log
            .verifier_key()
            .map(|key| key.to_string())
            .unwrap_or_default(),
    }
}

/// One record with its proof in the tree of `size`.
fn entry(log: &AuditLog, index: LeafIndex, size: TreeSize) -> Result<AuditEntry, Status> {
    let leaf = log
        .read_record(index)
        .map_err(|e| read_error(&e, e.code()))?;
    let proof = log
        .inclusion_proof(index, size)
        .map_err(|e| read_error(&e, e.code()))?;
    Ok(AuditEntry {
        index: index.0,
        record: Some(view(&leaf)?),
        leaf,
        inclusion_proof: proof.iter().map(|hash| hash.to_vec()).collect(),
    })
}

/// An empty text is "any".
fn any(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn query(
        &self,
        request: Request<AuditQuery>,
    ) -> Result<Response<AuditQueryResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 100,
            n => (n as usize).min(MAX_QUERY),
        };
        let subject = any(request.subject).map(|subject| self.pseudonyms.of(&subject));
        let query = Query {
            subject,
            consumer: any(request.consumer),
            provider: any(request.provider),
            dataset: any(request.dataset),
            purpose: any(request.purpose),
            since: timestamp_nanos(request.since)?,
            // Inclusive for callers; the index's bound is exclusive.
            until: timestamp_nanos(request.until)?.map(|until| until.saturating_add(1)),
            limit: limit + 1,
            after: request.after.map(LeafIndex),
        };
        let response = self
            .blocking(move |log| {
                let checkpoint = covering_checkpoint(log)?;
                let mut found = log.query(&query).map_err(|e| read_error(&e, e.code()))?;
                let more = found.len() > limit;
                found.truncate(limit);
                let entries = found
                    .into_iter()
                    .filter(|index| index.0 < checkpoint.size.0)
                    .map(|index| entry(log, index, checkpoint.size))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(AuditQueryResponse {
                    entries,
                    checkpoint: Some(signed(log, &checkpoint)),
                    more,
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        self.authorize(&request)?;
        let checkpoint = self
            .blocking(|log| Ok(signed(log, &covering_checkpoint(log)?)))
            .await?;
        Ok(Response::new(CheckpointResponse {
            checkpoint: Some(checkpoint),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let response = self
            .blocking(move |log| {
                let checkpoint = covering_checkpoint(log)?;
                let size = match request.tree_size {
                    0 => checkpoint.size,
                    size => TreeSize(size),
                };
                if request.index >= size.0 || size > log.size() {
                    return Err(invalid(
                        "index_out_of_range",
                        format!(
                            "leaf {} is not in a tree of {} records (the log has {})",
                            request.index,
                            size.0,
                            log.size().0
                        ),
                    ));
                }
                let index = LeafIndex(request.index);
                let proof = log
                    .inclusion_proof(index, size)
                    .map_err(|e| read_error(&e, e.code()))?;
                let leaf_hash = log.leaf_hash(index).map_err(|e| read_error(&e, e.code()))?;
                Ok(InclusionProofResponse {
                    index: index.0,
                    tree_size: size.0,
                    leaf_hash: leaf_hash.to_vec(),
                    proof: proof.iter().map(|hash| hash.to_vec()).collect(),
                    checkpoint: Some(signed(log, &checkpoint)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let response = self
            .blocking(move |log| {
                let checkpoint = covering_checkpoint(log)?;
                let new = match request.new_size {
                    0 => checkpoint.size,
                    size => TreeSize(size),
                };
                if request.old_size > new.0 || new > log.size() {
                    return Err(invalid(
                        "proof_bad_sizes",
                        format!(
                            "no consistency proof from {} to {} records (the log has {})",
                            request.old_size,
                            new.0,
                            log.size().0
                        ),
                    ));
                }
                let proof = log
                    .consistency_proof(TreeSize(request.old_size), new)
                    .map_err(|e| read_error(&e, e.code()))?;
                Ok(ConsistencyProofResponse {
                    old_size: request.old_size,
                    new_size: new.0,
                    proof: proof.iter().map(|hash| hash.to_vec()).collect(),
                    checkpoint: Some(signed(log, &checkpoint)),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    type ExportStream = ReceiverStream<Result<AuditEntry, Status>>;

    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let to = match request.to {
                0 => log.latest_checkpoint().map_or(log.size().0, |c| c.size.0),
                to => to.min(log.size().0),
            };
            for index in request.from..to {
                let entry = log
                    .read_record(LeafIndex(index))
                    .map_err(|e| read_error(&e, e.code()))
                    .and_then(|leaf| {
                        Ok(AuditEntry {
                            index,
                            record: Some(view(&leaf)?),
                            leaf,
                            inclusion_proof: Vec::new(),
                        })
                    });
                let failed = entry.is_err();
                if sender.blocking_send(entry).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn subject_report(
        &self,
        request: Request<SubjectReportRequest>,
    ) -> Result<Response<SubjectReportResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        if request.subject.is_empty() {
            return Err(invalid("no_subject", "name the subject"));
        }
        let query = Query {
            subject: Some(self.pseudonyms.of(&request.subject)),
            since: timestamp_nanos(request.since)?,
            until: timestamp_nanos(request.until)?.map(|until| until.saturating_add(1)),
            limit: MAX_REPORT + 1,
            ..Query::default()
        };
        let response = self
            .blocking(move |log| {
                let checkpoint = covering_checkpoint(log)?;
                let mut found = log.query(&query).map_err(|e| read_error(&e, e.code()))?;
                let truncated = found.len() > MAX_REPORT;
                found.truncate(MAX_REPORT);
                let mut report = SubjectReportResponse {
                    checkpoint: Some(signed(log, &checkpoint)),
                    truncated,
                    ..SubjectReportResponse::default()
                };
                for index in found.into_iter().filter(|i| i.0 < checkpoint.size.0) {
                    let entry = entry(log, index, checkpoint.size)?;
                    let record = entry.record.clone().unwrap_or_default();
                    match record.decision.as_str() {
                        "released" => report.released += 1,
                        "withheld" => report.withheld += 1,
                        _ => report.refused += 1,
                    }
                    report.accesses.push(SubjectAccess {
                        time: record.time,
                        consumer: record.consumer,
                        provider: record.provider,
                        dataset: record.dataset,
                        purpose: record.purpose,
                        legal_basis: record.legal_basis,
                        basis_reference: record.basis_reference,
                        released: record.released,
                        decision: record.decision,
                        entry: Some(entry),
                    });
                }
                Ok(report)
            })
            .await?;
        Ok(Response::new(response))
    }
}
