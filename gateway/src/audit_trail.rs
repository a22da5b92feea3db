//! The gateway node's audit log: opened (and recovered) at start-up, appended to by step 8 of
//! every request, read by the `Audit` service; and the batch signer of step 9.
//!
//! One log per node (one writer per log, as the audit crate requires); auditors fetch each
//! node's log and checkpoints. A request is answered only after its record is durable. If the
//! log cannot be written (a write or sync fails), the log stops taking records and this process
//! exits: a sync error is never retried (after a failed fsync the kernel may have dropped the
//! data, so a later success proves nothing), and a gateway that cannot audit must not serve.
//!
//! Responses whose records became durable in the same group commit are signed together, by
//! one signature over a Merkle tree of their contents ([`crate::provenance`]). The log tells
//! each record's caller its index and the tree size after its batch; the callback of a batch's
//! last record (index + 1 = tree size), on the log's writer thread, signs the responses waiting
//! so far and answers them. An Ed25519 signature costs about as much as the rest of a request's
//! work; under load one serves a whole batch. The writer signs inside its group commit delay
//! (the delay counts from the batch's sync, callbacks included), so signing there costs the
//! next batch no time, and it spares a signer thread's two context switches per batch.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use isnad_audit::{AppendError, Appended, AuditLog, CheckpointSigner, FatalError, Options};
use tokio::sync::oneshot;
use tonic::Code;

use crate::config::AuditConfig;
use crate::pipeline::{Denial, Step};
use crate::provenance::{ProvenanceSigner, Signed, Unsigned};

/// The exit code of a gateway whose audit log failed.
pub const AUDIT_FAILED_EXIT: i32 = 70;

/// The node's audit log, and the signer of the responses it records.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    log: AuditLog,
    signing: Arc<SigningQueue>,
}

/// A response waiting for its batch to be signed.
struct Waiting {
    unsigned: Unsigned,
    appended: Appended,
    reply: oneshot::Sender<Result<Signed, SignFailed>>,
}

/// Why a response was not signed.
#[derive(Debug)]
enum SignFailed {
    /// Its record could not be appended.
    Append(AppendError),
    /// The signer failed, or stopped before signing it.
    Sign,
}

/// Responses whose records are durable, waiting for the end of their batch to be signed.
struct SigningQueue {
    signer: ProvenanceSigner,
    waiting: Mutex<Vec<Waiting>>,
}

impl std::fmt::Debug for SigningQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningQueue({})", self.signer.public().key_id)
    }
}

impl SigningQueue {
    /// Called on the log's writer thread for every durable record, in log order: queues its
    /// response (if it has one to sign), and at the end of the log's batch signs every waiting
    /// response with one signature and answers them.
    fn durable(&self, appended: Appended, waiting: Option<Waiting>) {
        let last_of_batch = appended.index.0 + 1 == appended.tree_size.0;
        let batch = {
            let mut queue = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(waiting) = waiting {
                queue.push(waiting);
            }
            if !last_of_batch || queue.is_empty() {
                return;
            }
            std::mem::take(&mut *queue)
        };
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|w| ((w.unsigned, w.appended.index), w.reply))
            .unzip();
        match self.signer.sign_batch(items) {
            Ok(signed) => {
                for (reply, signed) in replies.into_iter().zip(signed) {
                    let _ = reply.send(Ok(signed));
                }
            }
            Err(error) => {
                tracing::error!(code = error.code(), %error, "a batch of responses could not be signed");
                for reply in replies {
                    let _ = reply.send(Err(SignFailed::Sign));
                }
            }
        }
    }
}

/// The audit step's refusal: nothing may be released without its record.
fn unrecorded(reason: &'static str) -> Denial {
    Denial::new(
        Step::Audit,
        Code::Unavailable,
        reason,
        "the access could not be recorded in the audit log, so nothing is released",
    )
}

/// The denial for a failed append.
fn append_failed(error: &AppendError) -> Denial {
    tracing::error!(code = error.code(), %error, "audit append failed");
    unrecorded(match error.code() {
        "audit_busy" => "audit_busy",
        _ => "audit_unavailable",
    })
}

impl AuditTrail {
    /// Opens the log the configuration names, signing checkpoints as `origin` and responses
    /// with `provenance`. Recovery runs here: a torn tail is set aside and logged; any other
    /// damage refuses to start.
    pub fn open(
        config: &AuditConfig,
        origin: &str,
        provenance: ProvenanceSigner,
    ) -> anyhow::Result<AuditTrail> {
        let signer = CheckpointSigner::load(origin, &config.key).map_err(|error| {
            anyhow::anyhow!(
                "audit key {}: {error} (make one with `isnad audit keygen --out FILE`)",
                config.key.display()
            )
        })?;
        let hook: isnad_audit::FatalHook = Arc::new(|error: &FatalError| {
            tracing::error!(
                code = error.code(),
                "the audit log cannot be written: {error}; nothing more can be audited, so \
                 the gateway stops (records already answered are durable)"
            );
            eprintln!(
                "isnad: audit log failure ({}): {error}; exiting",
                error.code()
            );
            std::process::exit(AUDIT_FAILED_EXIT);
        });
        let options = Options {
            signer: Some(Arc::new(signer)),
            checkpoint_interval: Duration::from_millis(config.checkpoint_interval_ms.max(10)),
            commit_delay: Duration::from_micros(config.commit_delay_us.min(100_000)),
            on_fatal: Some(hook),
            ..Options::default()
        };
        let (log, recovery) = AuditLog::open(&config.dir, options).map_err(|error| {
            anyhow::anyhow!(
                "audit log {}: {error} [{}]; the gateway does not start on a damaged log: \
                 run `isnad audit verify {}` for the details",
                config.dir.display(),
                error.code(),
                config.dir.display()
            )
        })?;
        if let Some(torn) = &recovery.torn {
            tracing::warn!(
                segment = %torn.segment,
                offset = torn.offset,
                bytes = torn.bytes,
                saved_to = %torn.saved_to.display(),
                code = torn.code,
                "audit log: a torn tail (a record being written when the process stopped, never \
                 answered) was set aside and cut"
            );
        }
        tracing::info!(
            dir = %config.dir.display(),
            records = recovery.size.0,
            segments = recovery.segments,
            checkpoint = recovery.checkpoint.map(|size| size.0),
            origin,
            "audit log open"
        );
        Ok(AuditTrail {
            log,
            signing: Arc::new(SigningQueue {
                signer: provenance,
                waiting: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The log, for reads and proofs.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Appends `record` and waits until it is durable. Any failure is a denial: nothing may be
    /// released without its record.
    pub async fn append(&self, record: Vec<u8>) -> Result<Appended, Denial> {
        let (done, durable) = oneshot::channel();
        let queue = self.signing.clone();
        self.log.append(record, move |result| {
            if let Ok(appended) = &result {
                queue.durable(*appended, None);
            }
            let _ = done.send(result);
        });
        match durable.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(error)) => Err(append_failed(&error)),
            Err(_) => Err(unrecorded("audit_unavailable")),
        }
    }

    /// Appends `record`, waits until it is durable, and signs `unsigned` (the content of the
    /// response it records) together with the other responses of its batch.
    pub async fn append_and_sign(
        &self,
        record: Vec<u8>,
        unsigned: Unsigned,
    ) -> Result<Signed, Denial> {
        let (reply, signed) = oneshot::channel();
        let queue = self.signing.clone();
        self.log.append(record, move |result| match result {
            Ok(appended) => queue.durable(
                appended,
                Some(Waiting {
                    unsigned,
                    appended,
                    reply,
                }),
            ),
            Err(error) => {
                let _ = reply.send(Err(SignFailed::Append(error)));
            }
        });
        match signed.await {
            Ok(Ok(signed)) => Ok(signed),
            Ok(Err(SignFailed::Append(error))) => Err(append_failed(&error)),
            Ok(Err(SignFailed::Sign)) | Err(_) => Err(Denial::new(
                Step::Sign,
                Code::Internal,
                "provenance_failed",
                "the response could not be signed, so nothing is released",
            )),
        }
    }

    /// Signs a last checkpoint (at shutdown).
    pub fn close(&self) {
        match self.log.checkpoint_now() {
            Ok(Some(checkpoint)) => {
                tracing::info!(
                    size = checkpoint.size.0,
                    "audit log: final checkpoint signed"
                )
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "audit log: the final checkpoint failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use isnad_audit::{AuditRecord, Decision, LeafIndex, SubjectPseudonym};
    use isnad_proto::v1::{AttributesResponse, Provenance};
    use ring::signature::Ed25519KeyPair;

    use super::*;
    use crate::provenance::{ProvenanceKey, encode_attributes, timestamp};

    fn key_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        std::fs::write(&path, pkcs8.as_ref()).expect("write key");
        path
    }

    fn record(n: usize) -> Vec<u8> {
        AuditRecord {
            time: 1_800_000_000_000_000_000,
            node: "gw-1".into(),
            request_id: format!("r-{n}"),
            consumer: "housing-programme".into(),
            provider: "identity-authority".into(),
            dataset: "identity.person".into(),
            purpose: "housing-grant".into(),
            legal_basis: "statute".into(),
            basis_reference: String::new(),
            consent_id: None,
            subject: SubjectPseudonym([7; 32]),
            requested: vec!["full_name_en".into()],
            released: Vec::new(),
            withheld: Vec::new(),
            decision: Decision::Withheld,
            policy_revision: [1; 32],
            released_digest: [0; 32],
            status: "ok".into(),
        }
        .encode()
        .expect("record")
    }

    fn response(n: usize) -> AttributesResponse {
        AttributesResponse {
            provenance: Some(Provenance {
                provider: "identity-authority".into(),
                dataset: "identity.person".into(),
                policy_revision: format!("sha256:{}", "01".repeat(32)),
                fetched_at: Some(timestamp(std::time::SystemTime::now())),
                request_id: format!("r-{n}"),
                subject_pseudonym: vec![7; 32],
                ..Provenance::default()
            }),
            ..AttributesResponse::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn responses_made_durable_together_share_one_signature_and_each_verifies() {
        let dir = tempfile::tempdir().expect("dir");
        let config = AuditConfig {
            dir: dir.path().join("audit"),
            key: key_file(dir.path(), "audit.pk8"),
            origin: None,
            checkpoint_interval_ms: 1000,
            commit_delay_us: 200,
        };
        let signer =
            ProvenanceSigner::load("gw-1", &key_file(dir.path(), "p.pk8")).expect("signer");
        let key = ProvenanceKey::parse(&signer.public().to_string()).expect("key");
        let trail = AuditTrail::open(&config, "test/audit/gw-1", signer).expect("open");

        // Refusals are recorded between the releases: they end batches too, and sign nothing.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..96 {
            let trail = trail.clone();
            tasks.spawn(async move {
                if n % 3 == 2 {
                    trail.append(record(n)).await.map(|_| None)
                } else {
                    let mut response = response(n);
                    let encoding = encode_attributes(&response.attributes);
                    let unsigned =
                        Unsigned::new(response.provenance.as_ref().expect("p"), &encoding)
                            .expect("content");
                    let signed = trail.append_and_sign(record(n), unsigned).await?;
                    signed.attach(response.provenance.as_mut().expect("p"));
                    Ok(Some(response))
                }
            });
        }
        let mut signatures = HashSet::new();
        let mut indexes = HashSet::new();
        let mut signed = 0;
        while let Some(joined) = tasks.join_next().await {
            let Some(response) = joined.expect("task").expect("recorded") else {
                continue;
            };
            assert_eq!(key.verify(&response), Ok(()));
            let provenance = response.provenance.expect("provenance");
            // The index signed is the record's: its request id is the response's.
            let exported = isnad_audit::Export::open(
                &config.dir,
                LeafIndex(provenance.audit_index),
                Some(LeafIndex(provenance.audit_index + 1)),
            )
            .expect("export")
            .next()
            .expect("a record")
            .expect("readable");
            assert_eq!(exported.record.request_id, provenance.request_id);
            assert!(indexes.insert(provenance.audit_index));
            signatures.insert(provenance.signature);
            signed += 1;
        }
        assert_eq!(signed, 64);
        assert!(
            signatures.len() < signed,
            "{} signatures for {signed} responses appended at once",
            signatures.len()
        );
    }
}
