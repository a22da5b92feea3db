//! The gateway node's audit log: opened (and recovered) at start-up, appended to by step 8 of
//! every request, read by the `Audit` service.
//!
//! One log per node (one writer per log, as the audit crate requires); auditors fetch each
//! node's log and checkpoints. A request is answered only after its record is durable. If the
//! log cannot be written (a write or sync fails), the log stops taking records and this process
//! exits: a sync error is never retried (after a failed fsync the kernel may have dropped the
//! data, so a later success proves nothing), and a gateway that cannot audit must not serve.

use std::sync::Arc;
use std::time::Duration;

use isnad_audit::{Appended, AuditLog, CheckpointSigner, FatalError, Options};
use tonic::Code;

use crate::config::AuditConfig;
use crate::pipeline::{Denial, Step};

/// The exit code of a gateway whose audit log failed.
pub const AUDIT_FAILED_EXIT: i32 = 70;

/// The node's audit log.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    log: AuditLog,
}

impl AuditTrail {
    /// Opens the log the configuration names, signing checkpoints as `origin`. Recovery runs
    /// here: a torn tail is set aside and logged; any other damage refuses to start.
    pub fn open(config: &AuditConfig, origin: &str) -> anyhow::Result<AuditTrail> {
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
        Ok(AuditTrail { log })
    }

    /// The log, for reads and proofs.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Appends `record` and waits until it is durable. Any failure is a denial: nothing may be
    /// released without its record.
    pub async fn append(&self, record: Vec<u8>) -> Result<Appended, Denial> {
        let (done, durable) = tokio::sync::oneshot::channel();
        self.log.append(record, move |result| {
            let _ = done.send(result);
        });
        let refused = |reason: &'static str| {
            Denial::new(
                Step::Audit,
                Code::Unavailable,
                reason,
                "the access could not be recorded in the audit log, so nothing is released",
            )
        };
        match durable.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(error)) => {
                tracing::error!(code = error.code(), %error, "audit append failed");
                Err(refused(match error.code() {
                    "audit_busy" => "audit_busy",
                    _ => "audit_unavailable",
                }))
            }
            Err(_) => Err(refused("audit_unavailable")),
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
