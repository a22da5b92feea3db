//! The errors of the log's operations, each with a stable reason code. None carries record
//! contents: they name files, byte offsets, leaf indexes and sizes.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::checkpoint::NoteError;
use crate::merkle::ProofError;
use crate::record::DecodeError;
use crate::segment::SegmentError;
use crate::{LeafIndex, TreeSize};

/// Why [`crate::AuditLog::open`] refused the log.
#[derive(Debug, Error)]
pub enum OpenError {
    /// A file could not be read, written, created or synced.
    #[error("{}: {kind}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        kind: io::ErrorKind,
    },
    /// Another process (or handle) has the log open.
    #[error("the log in {} is open elsewhere", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A segment is damaged before its tail, or one is missing.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// `checkpoint` or `log.pub` is not valid (syntax or signature).
    #[error("{}: {source}", file.display())]
    Checkpoint {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        source: NoteError,
    },
    /// There is a signed checkpoint but no key to verify it with.
    #[error("{} exists but there is no log.pub and no signer to verify it", file.display())]
    NoKey {
        /// The checkpoint file.
        file: PathBuf,
    },
    /// `log.pub` is not the signer's key.
    #[error("log.pub holds another key than the configured signer's")]
    KeyMismatch,
    /// The log has fewer records than its last signed checkpoint.
    #[error("the log has {log} records, fewer than the {checkpoint} of its signed checkpoint")]
    ShorterThanCheckpoint {
        /// Records in the segments.
        log: TreeSize,
        /// The checkpoint's size.
        checkpoint: TreeSize,
    },
    /// The tree's root at the checkpoint's size is not the signed one.
    #[error("the tree of {size} records does not have the root of the signed checkpoint")]
    CheckpointMismatch {
        /// The checkpoint's size.
        size: TreeSize,
    },
    /// A derived file could not be read while it was checked or rebuilt.
    #[error(transparent)]
    Read(ReadError),
}

impl OpenError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Io { .. } => "io_error",
            OpenError::Locked { .. } => "log_locked",
            OpenError::Segment(e) => e.code(),
            OpenError::Checkpoint { source, .. } => source.code(),
            OpenError::NoKey { .. } => "checkpoint_unverifiable",
            OpenError::KeyMismatch => "key_mismatch",
            OpenError::ShorterThanCheckpoint { .. } => "log_shorter_than_checkpoint",
            OpenError::CheckpointMismatch { .. } => "checkpoint_mismatch",
            OpenError::Read(e) => e.code(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, err: &io::Error) -> OpenError {
        OpenError::Io {
            path: path.into(),
            kind: err.kind(),
        }
    }
}

/// Why an append was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppendError {
    /// The queue is full: the disk does not keep up. Nothing was written.
    #[error("the audit log's queue is full")]
    Busy,
    /// The bytes are not a valid record. Nothing was written.
    #[error("not a valid audit record: {0}")]
    InvalidRecord(DecodeError),
    /// A write or sync failed (now or earlier): the log is poisoned and takes no more records.
    #[error("the audit log is unavailable: {0}")]
    Failed(String),
    /// The log is closing.
    #[error("the audit log is closed")]
    Closed,
}

impl AppendError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            AppendError::Busy => "audit_busy",
            AppendError::InvalidRecord(_) => "audit_record_invalid",
            AppendError::Failed(_) => "audit_unavailable",
            AppendError::Closed => "audit_closed",
        }
    }
}

/// What stopped the log: given to `Options::on_fatal`, once.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what}: {kind}")]
pub struct FatalError {
    /// What was being done, and on which file.
    pub what: String,
    /// What the system said.
    pub kind: io::ErrorKind,
}

impl FatalError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        "audit_unavailable"
    }
}

/// Why a read (record, root, proof, checkpoint) failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The proof's arguments are outside the tree.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// No such record yet.
    #[error("leaf {index} is not in the log of {size} records")]
    NotFound {
        /// The index asked for.
        index: LeafIndex,
        /// The log's size.
        size: TreeSize,
    },
    /// A file could not be read.
    #[error("{}: {kind}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        kind: io::ErrorKind,
    },
    /// A file holds something else than it should.
    #[error("{}, byte {offset}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Checkpointing failed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl ReadError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::Proof(e) => e.code(),
            ReadError::NotFound { .. } => "index_out_of_range",
            ReadError::Io { .. } => "io_error",
            ReadError::Corrupt { .. } => "derived_file_corrupt",
            ReadError::Checkpoint(_) => "checkpoint_failed",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, err: &io::Error) -> ReadError {
        ReadError::Io {
            path: path.into(),
            kind: err.kind(),
        }
    }
}
