//! Ed25519 signatures over a store's revision, so a gateway loads only what the security team
//! signed. `isnad policy sign` writes `policy.sig` beside `catalogue.yaml`:
//!
//! ```text
//! isnad-policy-signature v1
//! revision sha256:<hex of the canonical content's SHA-256>
//! key <key id>
//! signature <base64 of the Ed25519 signature>
//! ```
//!
//! The signed message is `isnad-policy-signature v1\n` followed by the revision text: the
//! signature covers the canonical content through its SHA-256 (see [`crate::Sources`]), and the
//! domain line keeps it from being valid as a signature of anything else. A key id is the first
//! 8 bytes, in hex, of the SHA-256 of the 32-byte public key. Public keys are written as
//! `ed25519:<base64 of the 32 bytes>`; private keys as PKCS#8 in a PEM `PRIVATE KEY` block.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::model::PolicyRevision;

/// The signature's file name in the store's directory.
pub const SIGNATURE_FILE: &str = "policy.sig";
const HEADER: &str = "isnad-policy-signature v1";
const PUBLIC_PREFIX: &str = "ed25519:";

/// Why a store's signature is not accepted, or a key not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A key is required and the store has no `policy.sig`.
    #[error(
        "the store is not signed: {SIGNATURE_FILE} is missing (sign it with `isnad policy sign`)"
    )]
    Missing,
    /// The signature file or a key is not in the expected form.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The signature is for other content.
    #[error(
        "the signature is for revision {signed}, but the store is {actual}: it changed after it was signed"
    )]
    WrongRevision {
        /// What was signed.
        signed: String,
        /// What the store is.
        actual: String,
    },
    /// Signed with a key that is not the configured one.
    #[error("signed with key {signed}, but the gateway trusts key {trusted}")]
    UnknownKey {
        /// The signature's key id.
        signed: String,
        /// The trusted key's id.
        trusted: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify: the file was altered, or not signed by key {0}")]
    Invalid(String),
}

fn malformed(what: &'static str, detail: impl Into<String>) -> SignatureError {
    SignatureError::Malformed {
        what,
        detail: detail.into(),
    }
}

fn message(revision: &PolicyRevision) -> Vec<u8> {
    format!("{HEADER}\n{revision}").into_bytes()
}

fn key_id(public: &[u8]) -> String {
    Sha256::digest(public)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The security team's public key, trusted by gateways.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    public: [u8; 32],
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.id())
    }
}

impl VerifyingKey {
    /// Reads `ed25519:<base64>` (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<VerifyingKey, SignatureError> {
        let encoded = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| malformed("public key", "expected ed25519:<base64>"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| malformed("public key", "not base64"))?;
        let public = bytes
            .try_into()
            .map_err(|_| malformed("public key", "an Ed25519 public key is 32 bytes"))?;
        Ok(VerifyingKey { public })
    }

    /// The key id.
    pub fn id(&self) -> String {
        key_id(&self.public)
    }

    /// Checks the content of `policy.sig` (`None` if the file is missing) against `revision`.
    pub fn verify(
        &self,
        signature_file: Option<&[u8]>,
        revision: &PolicyRevision,
    ) -> Result<(), SignatureError> {
        let bytes = signature_file.ok_or(SignatureError::Missing)?;
        if bytes.len() > 4096 {
            return Err(malformed(SIGNATURE_FILE, "larger than 4096 bytes"));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| malformed(SIGNATURE_FILE, "not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(malformed(
                SIGNATURE_FILE,
                format!("the first line must be {HEADER:?}"),
            ));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name))
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| malformed(SIGNATURE_FILE, format!("expected a `{name}` line")))
        };
        let signed = field("revision")?;
        let key = field("key")?;
        let signature = field("signature")?;
        if signed != revision.as_str() {
            return Err(SignatureError::WrongRevision {
                signed: signed.to_owned(),
                actual: revision.to_string(),
            });
        }
        if key != self.id() {
            return Err(SignatureError::UnknownKey {
                signed: key.to_owned(),
                trusted: self.id(),
            });
        }
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| malformed(SIGNATURE_FILE, "the signature is not base64"))?;
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(&message(revision), &signature)
            .map_err(|_| SignatureError::Invalid(self.id()))
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", STANDARD.encode(self.public))
    }
}

/// The security team's private key. `Debug` shows only its id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.verifying_key().id())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, SignatureError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| malformed("private key", "the system random generator failed"))?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, SignatureError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| malformed("private key", "not an Ed25519 PKCS#8 key"))?;
        Ok(SigningKey {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// Reads a PEM `PRIVATE KEY` block.
    pub fn from_pem(pem: &str) -> Result<SigningKey, SignatureError> {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| malformed("private key", "no PEM PRIVATE KEY block"))?;
        SigningKey::from_pkcs8(der.secret_pkcs8_der())
    }

    /// The key as a PEM `PRIVATE KEY` block. Secret.
    pub fn to_pem(&self) -> String {
        let encoded = STANDARD.encode(&self.pkcs8);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// Its public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey { public }
    }

    /// The content of `policy.sig` for a store at `revision`.
    pub fn sign(&self, revision: &PolicyRevision) -> String {
        let signature = self.pair.sign(&message(revision));
        format!(
            "{HEADER}\nrevision {revision}\nkey {}\nsignature {}\n",
            self.verifying_key().id(),
            STANDARD.encode(signature.as_ref())
        )
    }
}
