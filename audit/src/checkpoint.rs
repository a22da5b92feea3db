//! Checkpoints: the C2SP tlog-checkpoint body in a C2SP signed note, signed with Ed25519.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, base64 std>\n
//! \n
//! — <key name> <base64(key ID (4) || Ed25519 signature (64))>\n
//! ```
//!
//! Key ID = SHA-256(key name || 0x0A || 0x01 || public key)[..4]. Verifier key (the text in
//! `LOGDIR/log.pub`): `<name>+<key ID, 8 hex digits>+<base64(0x01 || public key)>`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, digest};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use thiserror::Error;

use crate::{Hash, TreeSize};

/// The signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// The most signature lines a note may carry (as Go's `note` package).
const MAX_SIGNATURES: usize = 100;
/// The longest note accepted, in bytes.
pub const MAX_NOTE_LEN: usize = 64 * 1024;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, a note or a checkpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// A key name that is empty or contains a space or `+`.
    #[error("invalid key name")]
    BadKeyName,
    /// A verifier key that is not `<name>+<hex key ID>+<base64(0x01 || key)>`, or whose key ID
    /// does not match.
    #[error("invalid verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// A private key that ring does not accept as Ed25519 PKCS#8.
    #[error("invalid Ed25519 PKCS#8 signing key")]
    BadSigningKey,
    /// The system random generator failed.
    #[error("key generation failed")]
    KeyGeneration,
    /// Not UTF-8, too long, no final newline, control characters, no blank line before the
    /// signatures, or a malformed signature line.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// No signature by the log's key.
    #[error("the note carries no signature by key {0}")]
    NotSigned(String),
    /// A signature by the log's key that does not verify.
    #[error("the signature by key {0} does not verify")]
    BadSignature(String),
    /// The body is not a tlog checkpoint.
    #[error("malformed checkpoint body: {0}")]
    BadCheckpoint(&'static str),
    /// The checkpoint's origin is not the log's.
    #[error("checkpoint origin is not the log's")]
    WrongOrigin,
}

impl NoteError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            NoteError::BadKeyName => "bad_key_name",
            NoteError::BadVerifierKey(_) => "bad_verifier_key",
            NoteError::BadSigningKey => "bad_signing_key",
            NoteError::KeyGeneration => "key_generation_failed",
            NoteError::Malformed(_) => "note_malformed",
            NoteError::NotSigned(_) => "note_not_signed",
            NoteError::BadSignature(_) => "note_bad_signature",
            NoteError::BadCheckpoint(_) => "checkpoint_malformed",
            NoteError::WrongOrigin => "checkpoint_wrong_origin",
        }
    }
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKeyName);
    }
    Ok(())
}

/// The key ID of an Ed25519 key under `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 34);
    input.extend_from_slice(name.as_bytes());
    input.push(0x0A);
    input.push(ED25519_TYPE);
    input.extend_from_slice(public_key);
    let hash = digest(&SHA256, &input);
    let mut id = [0u8; 4];
    id.copy_from_slice(&hash.as_ref()[..4]);
    id
}

/// A log's public key: verifies its checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public_key: [u8; 32],
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl VerifierKey {
    /// The key of `name` with this Ed25519 public key.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<VerifierKey, NoteError> {
        check_name(name)?;
        Ok(VerifierKey {
            name: name.to_owned(),
            id: key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses `<name>+<8 hex digits>+<base64(0x01 || public key)>` (surrounding whitespace, such
    /// as a final newline in a file, is ignored).
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey("expected name+id+key"));
        };
        check_name(name)?;
        if hex_id.len() != 8 || !hex_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey("key ID is not 8 hex digits"));
        }
        let id = u32::from_str_radix(hex_id, 16)
            .map_err(|_| NoteError::BadVerifierKey("key ID is not 8 hex digits"))?
            .to_be_bytes();
        let raw = STANDARD
            .decode(key)
            .map_err(|_| NoteError::BadVerifierKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ED25519_TYPE {
            return Err(NoteError::BadVerifierKey("not an Ed25519 key"));
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&raw[1..]);
        let key = VerifierKey::new(name, public_key)?;
        if key.id != id {
            return Err(NoteError::BadVerifierKey("key ID does not match the key"));
        }
        Ok(key)
    }

    /// The key's name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Opens a signed note: checks its syntax strictly and that it carries a valid signature by
    /// this key (signatures by other keys are ignored, as the spec says). Returns the text.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, signatures) = split_note(note)?;
        let mut found = false;
        for (name, id, sig) in signatures {
            if name == self.name && id == self.id {
                let key = UnparsedPublicKey::new(&ED25519, &self.public_key);
                key.verify(text.as_bytes(), &sig)
                    .map_err(|_| NoteError::BadSignature(self.to_string()))?;
                found = true;
            }
        }
        if !found {
            return Err(NoteError::NotSigned(self.to_string()));
        }
        Ok(text)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519_TYPE);
        raw.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            crate::hex(&self.id),
            STANDARD.encode(raw)
        )
    }
}

/// A signature line: key name, key ID, signature bytes.
type SignatureLine<'a> = (&'a str, [u8; 4], Vec<u8>);

/// Splits a note into its text (with its final newline) and its signature lines, checking the
/// syntax of both.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(NoteError::Malformed("note too long"));
    }
    if note
        .chars()
        .any(|c| (c.is_control() && c != '\n') || c == '\u{FEFF}')
    {
        return Err(NoteError::Malformed("control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block does not end in a newline",
        ));
    }
    let mut out = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        if out.len() == MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line does not start with an em dash",
        ))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line has no signature"))?;
        check_name(name).map_err(|_| NoteError::Malformed("bad key name in a signature line"))?;
        let raw = STANDARD
            .decode(sig)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&raw[..4]);
        out.push((name, id, raw[4..].to_vec()));
    }
    Ok((text, out))
}

/// The log's signing key.
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
    verifier: VerifierKey,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        write!(f, "CheckpointSigner({})", self.verifier)
    }
}

impl CheckpointSigner {
    /// A new Ed25519 key, as PKCS#8 bytes (to be stored by the caller, mode 0600).
    pub fn generate_pkcs8() -> Result<Vec<u8>, NoteError> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| NoteError::KeyGeneration)
    }

    /// The signer named `name` (the log's origin and key name) with this PKCS#8 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<CheckpointSigner, NoteError> {
        check_name(name)?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| NoteError::BadSigningKey)?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(key.public_key().as_ref());
        let verifier = VerifierKey::new(name, public_key)?;
        Ok(CheckpointSigner { key, verifier })
    }

    /// Reads a PKCS#8 key file.
    pub fn load(name: &str, path: &std::path::Path) -> Result<CheckpointSigner, LoadKeyError> {
        let bytes = std::fs::read(path).map_err(|e| LoadKeyError::Io(e.kind()))?;
        CheckpointSigner::from_pkcs8(name, &bytes).map_err(LoadKeyError::Key)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// The matching verifier key.
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Signs `text` (which must end in a newline and contain no blank line) as a note.
    pub fn sign_note(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.verifier.id);
        raw.extend_from_slice(sig.as_ref());
        format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.verifier.name,
            STANDARD.encode(raw)
        )
    }

    /// The signed note of a checkpoint of this log.
    pub fn sign(&self, size: TreeSize, root: &Hash) -> String {
        self.sign_note(&checkpoint_body(self.name(), size, root))
    }
}

/// Why a key file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadKeyError {
    /// It could not be read.
    #[error("cannot read the key file: {0}")]
    Io(std::io::ErrorKind),
    /// It is not a valid key.
    #[error(transparent)]
    Key(NoteError),
}

impl LoadKeyError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            LoadKeyError::Io(_) => "key_file_unreadable",
            LoadKeyError::Key(e) => e.code(),
        }
    }
}

/// The text of a checkpoint: origin, size, base64 root, each on its line.
pub fn checkpoint_body(origin: &str, size: TreeSize, root: &Hash) -> String {
    format!("{origin}\n{}\n{}\n", size.0, STANDARD.encode(root))
}

/// A verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin.
    pub origin: String,
    /// The tree size.
    pub size: TreeSize,
    /// The root hash at that size.
    pub root: Hash,
    /// The signed note, as stored.
    pub note: String,
}

impl Checkpoint {
    /// Parses and verifies a signed checkpoint: a valid signature by `key` and an origin equal
    /// to the key's name. Extension lines after the root are allowed by the spec and ignored.
    pub fn verify(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let text = key.open(note)?;
        let mut lines = text[..text.len() - 1].split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::BadCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("no size line"))?;
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        if !canonical {
            return Err(NoteError::BadCheckpoint("size is not a canonical decimal"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("size out of range"))?;
        let root_line = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("no root line"))?;
        let raw = STANDARD
            .decode(root_line)
            .map_err(|_| NoteError::BadCheckpoint("root is not base64"))?;
        let root: Hash = raw
            .try_into()
            .map_err(|_| NoteError::BadCheckpoint("root is not 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(NoteError::BadCheckpoint("empty extension line"));
        }
        if origin != key.name() {
            return Err(NoteError::WrongOrigin);
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size: TreeSize(size),
            root,
            note: note.to_owned(),
        })
    }
}
