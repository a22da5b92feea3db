//! The audit log of isnad: an append-only Merkle tree over audit records, in the hashing of
//! RFC 6962 (Certificate Transparency), so auditors can check it with standard tools.
//!
//! Pure library: no async, no network. Threads and files only.
//!
//! - [`record`]: the audit record and its versioned, deterministic encoding;
//! - [`merkle`]: tree hashing, the frontier, inclusion and consistency proofs;
//! - [`segment`]: segment files and their framing, and a streaming reader;
//! - [`AuditLog`]: the writer (group commit), recovery on open, reads and proofs;
//! - [`checkpoint`]: C2SP signed checkpoints;
//! - [`index`]: the derived query index.
//!
//! `audit/README.md` describes the files byte by byte.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod error;
mod hashes;
pub mod index;
mod log;
pub mod merkle;
pub mod record;
pub mod segment;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointSigner, VerifierKey};
pub use error::{AppendError, FatalError, OpenError, ReadError};
pub use index::Query;
pub use log::{
    Appended, AuditLog, CHECKPOINT_FILE, CHECKPOINTS_DIR, FatalHook, KEY_FILE, OFFSETS_FILE,
    Options, PREALLOCATE, Recovery, Repair, Stats, TORN_DIR, TornTail,
};
pub use verify::{Export, ExportedRecord, Report, VerifyError, load_key, verify_dir};

pub use merkle::{
    Frontier, MemoryTree, NodeSource, ProofError, consistency_proof, empty_root, inclusion_proof,
    leaf_hash, node_hash, root, root_from_inclusion, verify_consistency, verify_inclusion,
};
pub use record::{
    AuditRecord, Decision, DecodeError, EncodeError, Pseudonymizer, RecordView, Released,
    SubjectPseudonym, Withheld, pseudonym,
};

/// A SHA-256 digest: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// The position of a record in the log, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeafIndex(pub u64);

/// The number of records in (a version of) the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TreeSize(pub u64);

impl std::fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for TreeSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Lower-case hex of bytes (for hashes in messages and file contents, never record contents).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
