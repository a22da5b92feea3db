//! Signed provenance: every `AttributesResponse` carries an Ed25519 signature by the gateway
//! node over a canonical encoding of what it released, for which request, under which policy,
//! and where it is recorded in the audit log. A consumer keeps the response as evidence; anyone
//! with the node's provenance key can check it (`isnad verify-response`), and an auditor can
//! find its record by the audit index and compare `released_digest`.
//!
//! The signed bytes (all lengths and integers big endian):
//!
//! ```text
//! str("isnad-provenance-v1")
//! str(request_id)
//! subject_pseudonym                         32 bytes
//! str(dataset) str(provider)
//! attributes                                see below
//! policy_revision                           32 bytes (the digest of `sha256:<hex>`)
//! audit_index                               u64
//! fetched_at                                i64 seconds since the Unix epoch, u32 nanoseconds
//! str(key_id)
//!
//! str(s)        = u32 byte length, UTF-8 bytes
//! attributes    = u32 count, then per attribute in byte order of the field names:
//!                 str(field) value
//! value         = one tag byte, then: 0x00 (no value) nothing; 0x01 string str;
//!                 0x02 int i64; 0x03 bool one byte 0x00 or 0x01; 0x04 date i32 year,
//!                 u8 month, u8 day; 0x05 bytes u32 length, bytes; 0x06 double the IEEE 754
//!                 bits as u64; 0x07 list u32 count, values
//! ```
//!
//! The audit record's `released_digest` is SHA-256 of the `attributes` part alone.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use isnad_proto::v1::{AttributesResponse, Provenance, Value, value::Kind};
use ring::signature::{self, Ed25519KeyPair, KeyPair};

/// The domain tag the signed bytes start with.
pub const DOMAIN: &str = "isnad-provenance-v1";

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match &value.kind {
        None => out.push(0x00),
        Some(Kind::StringValue(s)) => {
            out.push(0x01);
            put_str(out, s);
        }
        Some(Kind::IntValue(i)) => {
            out.push(0x02);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Some(Kind::BoolValue(b)) => {
            out.push(0x03);
            out.push(u8::from(*b));
        }
        Some(Kind::DateValue(d)) => {
            out.push(0x04);
            out.extend_from_slice(&d.year.to_be_bytes());
            out.push(u8::try_from(d.month).unwrap_or(u8::MAX));
            out.push(u8::try_from(d.day).unwrap_or(u8::MAX));
        }
        Some(Kind::BytesValue(b)) => {
            out.push(0x05);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        Some(Kind::DoubleValue(d)) => {
            out.push(0x06);
            out.extend_from_slice(&d.to_bits().to_be_bytes());
        }
        Some(Kind::ListValue(list)) => {
            out.push(0x07);
            out.extend_from_slice(&(list.values.len() as u32).to_be_bytes());
            for item in &list.values {
                put_value(out, item);
            }
        }
    }
}

/// The canonical encoding of released attributes (field names in byte order).
pub fn encode_attributes(attributes: &HashMap<String, Value>) -> Vec<u8> {
    let mut fields: Vec<(&String, &Value)> = attributes.iter().collect();
    fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Vec::with_capacity(64 * fields.len() + 4);
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    for (field, value) in fields {
        put_str(&mut out, field);
        put_value(&mut out, value);
    }
    out
}

/// SHA-256 of the released attributes' canonical encoding; all zeros when nothing is released.
pub fn released_digest(attributes: &HashMap<String, Value>) -> [u8; 32] {
    digest_of_encoding(&encode_attributes(attributes), attributes.is_empty())
}

/// [`released_digest`] of attributes already encoded (`empty`: none were released).
pub fn digest_of_encoding(encoding: &[u8], empty: bool) -> [u8; 32] {
    let mut digest = [0u8; 32];
    if !empty {
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, encoding).as_ref());
    }
    digest
}

/// Why a response's provenance does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    /// The response has no provenance, or a part of it is missing.
    #[error("the response has no complete provenance: {0}")]
    Missing(&'static str),
    /// The provenance names another key than the one given.
    #[error("signed by key {found:?}, not by {expected:?}")]
    OtherKey {
        /// The key id in the response.
        found: String,
        /// The key id given.
        expected: String,
    },
    /// The signature does not verify over the response's content.
    #[error("the signature does not match the response's content")]
    Signature,
    /// A key file is not usable.
    #[error("{0}")]
    Key(String),
}

impl ProvenanceError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ProvenanceError::Missing(_) => "provenance_missing",
            ProvenanceError::OtherKey { .. } => "provenance_other_key",
            ProvenanceError::Signature => "provenance_signature",
            ProvenanceError::Key(_) => "provenance_key",
        }
    }
}

/// The bytes a response's provenance signs (see the module's documentation), with the released
/// attributes already in their canonical encoding ([`encode_attributes`]).
pub fn signing_input(
    provenance: &Provenance,
    attributes_encoding: &[u8],
) -> Result<Vec<u8>, ProvenanceError> {
    let pseudonym: &[u8; 32] = provenance
        .subject_pseudonym
        .as_slice()
        .try_into()
        .map_err(|_| ProvenanceError::Missing("subject_pseudonym is not 32 bytes"))?;
    let revision = revision_digest(&provenance.policy_revision).ok_or(ProvenanceError::Missing(
        "policy_revision is not sha256:<64 hex>",
    ))?;
    let fetched_at = provenance
        .fetched_at
        .as_ref()
        .ok_or(ProvenanceError::Missing("fetched_at"))?;
    let mut out = Vec::with_capacity(256);
    put_str(&mut out, DOMAIN);
    put_str(&mut out, &provenance.request_id);
    out.extend_from_slice(pseudonym);
    put_str(&mut out, &provenance.dataset);
    put_str(&mut out, &provenance.provider);
    out.extend_from_slice(attributes_encoding);
    out.extend_from_slice(&revision);
    out.extend_from_slice(&provenance.audit_index.to_be_bytes());
    out.extend_from_slice(&fetched_at.seconds.to_be_bytes());
    out.extend_from_slice(&u32::try_from(fetched_at.nanos).unwrap_or(0).to_be_bytes());
    put_str(&mut out, &provenance.key_id);
    Ok(out)
}

/// The 32 bytes of a `sha256:<hex>` revision.
fn revision_digest(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The key id of a provenance key: `<node>+<first 8 hex digits of SHA-256(public key)>`.
fn key_id(node: &str, public: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public);
    format!("{node}+{}", isnad_audit::hex(&digest.as_ref()[..4]))
}

/// A gateway node's provenance signing key.
pub struct ProvenanceSigner {
    key: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for ProvenanceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProvenanceSigner({})", self.key_id)
    }
}

impl ProvenanceSigner {
    /// Reads an Ed25519 PKCS#8 key file (`isnad audit keygen`) for node `node`.
    pub fn load(node: &str, path: &Path) -> anyhow::Result<ProvenanceSigner> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("provenance key {}: {e}", path.display()))?;
        let key = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| {
            anyhow::anyhow!(
                "provenance key {}: not an Ed25519 PKCS#8 key (make one with `isnad audit \
                 keygen`)",
                path.display()
            )
        })?;
        let key_id = key_id(node, key.public_key().as_ref());
        Ok(ProvenanceSigner { key, key_id })
    }

    /// The public key in the form consumers are given (`provenance.pub`).
    pub fn public(&self) -> ProvenanceKey {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.key.public_key().as_ref());
        ProvenanceKey {
            key_id: self.key_id.clone(),
            public,
        }
    }

    /// Sets `key_id` and `signature` of the response's provenance; `attributes_encoding` is
    /// [`encode_attributes`] of its attributes (the audit step made it already).
    pub fn sign(
        &self,
        response: &mut AttributesResponse,
        attributes_encoding: &[u8],
    ) -> Result<(), ProvenanceError> {
        let provenance = response
            .provenance
            .as_mut()
            .ok_or(ProvenanceError::Missing("provenance"))?;
        provenance.key_id = self.key_id.clone();
        let input = signing_input(provenance, attributes_encoding)?;
        provenance.signature = self.key.sign(&input).as_ref().to_vec();
        Ok(())
    }
}

/// A node's public provenance key: `<key id> <base64 Ed25519 public key>` on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceKey {
    /// The key id responses name.
    pub key_id: String,
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

impl std::fmt::Display for ProvenanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.key_id, STANDARD.encode(self.public))
    }
}

impl ProvenanceKey {
    /// Parses the one-line form.
    pub fn parse(text: &str) -> Result<ProvenanceKey, ProvenanceError> {
        let bad = || ProvenanceError::Key("a provenance key is `<key id> <base64 key>`".into());
        let (key_id, public) = text.trim().split_once(' ').ok_or_else(bad)?;
        let public: [u8; 32] = STANDARD
            .decode(public.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(bad)?;
        if key_id.is_empty() || key_id.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(ProvenanceKey {
            key_id: key_id.to_owned(),
            public,
        })
    }

    /// Checks a response's provenance signature.
    pub fn verify(&self, response: &AttributesResponse) -> Result<(), ProvenanceError> {
        let provenance = response
            .provenance
            .as_ref()
            .ok_or(ProvenanceError::Missing("provenance"))?;
        if provenance.key_id != self.key_id {
            return Err(ProvenanceError::OtherKey {
                found: provenance.key_id.clone(),
                expected: self.key_id.clone(),
            });
        }
        let input = signing_input(provenance, &encode_attributes(&response.attributes))?;
        signature::UnparsedPublicKey::new(&signature::ED25519, self.public)
            .verify(&input, &provenance.signature)
            .map_err(|_| ProvenanceError::Signature)
    }
}

/// `fetched_at` of a time, for a response.
pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isnad_proto::v1::{Date, ValueList};

    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    fn response() -> AttributesResponse {
        let mut attributes = HashMap::new();
        attributes.insert("name".to_owned(), value(Kind::StringValue("Mariam".into())));
        attributes.insert("adult".to_owned(), value(Kind::BoolValue(true)));
        attributes.insert(
            "born".to_owned(),
            value(Kind::DateValue(Date {
                year: 1990,
                month: 2,
                day: 28,
            })),
        );
        attributes.insert(
            "children".to_owned(),
            value(Kind::ListValue(ValueList {
                values: vec![value(Kind::IntValue(-3)), value(Kind::DoubleValue(0.5))],
            })),
        );
        AttributesResponse {
            attributes,
            provenance: Some(Provenance {
                provider: "identity-authority".into(),
                dataset: "identity.person".into(),
                policy_revision: format!("sha256:{}", "ab".repeat(32)),
                audit_index: 41,
                fetched_at: Some(timestamp(
                    SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 5),
                )),
                request_id: "r-1".into(),
                subject_pseudonym: vec![9; 32],
                ..Provenance::default()
            }),
            ..AttributesResponse::default()
        }
    }

    fn signer() -> (ProvenanceSigner, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.key");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        std::fs::write(&path, pkcs8.as_ref()).expect("write");
        (ProvenanceSigner::load("gw-1", &path).expect("load"), dir)
    }

    #[test]
    fn the_attribute_encoding_is_byte_exact_and_order_free() {
        let mut attributes = HashMap::new();
        attributes.insert("b".to_owned(), value(Kind::IntValue(1)));
        attributes.insert("a".to_owned(), value(Kind::StringValue("x".into())));
        let expected: Vec<u8> = [
            &2u32.to_be_bytes()[..],
            &1u32.to_be_bytes(),
            b"a",
            &[0x01],
            &1u32.to_be_bytes(),
            b"x",
            &1u32.to_be_bytes(),
            b"b",
            &[0x02],
            &1i64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(encode_attributes(&attributes), expected);
        assert_eq!(released_digest(&HashMap::new()), [0; 32]);
    }

    #[test]
    fn a_signed_response_verifies_and_any_change_breaks_it() {
        let (signer, _dir) = signer();
        let mut response = response();
        let encoding = encode_attributes(&response.attributes);
        signer.sign(&mut response, &encoding).expect("signed");
        let key = ProvenanceKey::parse(&signer.public().to_string()).expect("parses");
        assert!(key.key_id.starts_with("gw-1+"));
        assert_eq!(key.verify(&response), Ok(()));

        type Change = Box<dyn Fn(&mut AttributesResponse)>;
        let changes: Vec<Change> = vec![
            Box::new(|r| {
                r.attributes
                    .insert("adult".into(), value(Kind::BoolValue(false)));
            }),
            Box::new(|r| {
                r.attributes.remove("born");
            }),
            Box::new(|r| {
                r.attributes
                    .insert("extra".into(), value(Kind::StringValue(String::new())));
            }),
            Box::new(|r| r.provenance.as_mut().expect("p").audit_index += 1),
            Box::new(|r| r.provenance.as_mut().expect("p").request_id.push('x')),
            Box::new(|r| r.provenance.as_mut().expect("p").subject_pseudonym[0] ^= 1),
            Box::new(|r| r.provenance.as_mut().expect("p").dataset.push('x')),
            Box::new(|r| r.provenance.as_mut().expect("p").provider.push('x')),
            Box::new(|r| {
                r.provenance.as_mut().expect("p").policy_revision =
                    format!("sha256:{}", "cd".repeat(32))
            }),
            Box::new(|r| {
                if let Some(t) = r.provenance.as_mut().expect("p").fetched_at.as_mut() {
                    t.nanos += 1;
                }
            }),
        ];
        for (n, change) in changes.iter().enumerate() {
            let mut changed = response.clone();
            change(&mut changed);
            assert_eq!(
                key.verify(&changed),
                Err(ProvenanceError::Signature),
                "change {n}"
            );
        }
        let mut renamed = response.clone();
        renamed.provenance.as_mut().expect("p").key_id = "gw-2+00000000".into();
        assert_eq!(
            key.verify(&renamed).map_err(|e| e.code()),
            Err("provenance_other_key")
        );
        // A withheld-field list or transform report is not signed content.
        let mut annotated = response.clone();
        annotated
            .withheld
            .push(isnad_proto::v1::FieldOutcome::default());
        assert_eq!(key.verify(&annotated), Ok(()));
    }
}
