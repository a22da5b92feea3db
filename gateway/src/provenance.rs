//! Signed provenance: every `AttributesResponse` carries an Ed25519 signature by the gateway
//! node over a canonical encoding of what it released, for which request, under which policy,
//! and where it is recorded in the audit log. A consumer keeps the response as evidence; anyone
//! with the node's provenance key can check it (`isnad verify-response`), and an auditor can
//! find its record by the audit index and compare `released_digest`.
//!
//! Responses are signed in batches: those whose audit records became durable in the same group
//! commit share one signature over the root of a Merkle tree of their contents (RFC 6962
//! hashing: leaf = SHA-256(0x00 || content), node = SHA-256(0x01 || left || right)), and each
//! carries its inclusion proof in that tree. One Ed25519 signature then serves dozens of
//! responses under load; a response alone in its batch has an empty proof and its leaf is the
//! root. Each content holds 16 random bytes of its own, so the sibling hashes a consumer is
//! given cannot be used to confirm guesses about other consumers' responses.
//!
//! A response's content (all lengths and integers big endian):
//!
//! ```text
//! str("isnad-provenance-v2")
//! nonce                                     16 bytes (ProvenanceBatch.nonce)
//! str(request_id)
//! subject_pseudonym                         32 bytes
//! str(dataset) str(provider)
//! attributes                                see below
//! policy_revision                           32 bytes (the digest of `sha256:<hex>`)
//! audit_index                               u64
//! fetched_at                                i64 seconds since the Unix epoch, u32 nanoseconds
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
//! The signature is over the batch statement:
//!
//! ```text
//! str("isnad-provenance-batch-v1") str(key_id) u32 batch size, root   32 bytes
//! ```
//!
//! The audit record's `released_digest` is SHA-256 of the `attributes` part alone.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use isnad_audit::{Hash, LeafIndex, MemoryTree, TreeSize};
use isnad_proto::v1::{AttributesResponse, Provenance, ProvenanceBatch, Value, value::Kind};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair};

/// The domain tag a response's content starts with.
pub const DOMAIN: &str = "isnad-provenance-v2";
/// The domain tag of the statement a batch's signature covers.
pub const BATCH_DOMAIN: &str = "isnad-provenance-batch-v1";
/// The bytes of a response's nonce.
pub const NONCE_LEN: usize = 16;
/// Where the nonce sits in a response's content: right after the domain tag.
const NONCE_AT: usize = 4 + DOMAIN.len();
/// The most responses one batch signature covers (a proof has at most 16 hashes).
pub const MAX_BATCH: usize = 1 << 16;

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
    /// The batch proof is malformed: its size, index or path cannot place a leaf in a tree.
    #[error("the batch proof is malformed: {0}")]
    Batch(String),
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
            ProvenanceError::Batch(_) => "provenance_batch",
            ProvenanceError::Signature => "provenance_signature",
            ProvenanceError::Key(_) => "provenance_key",
        }
    }
}

/// A response's content (see the module's documentation) with the released attributes already
/// in their canonical encoding ([`encode_attributes`]), and where its audit index sits in it.
fn content(
    provenance: &Provenance,
    nonce: &[u8; NONCE_LEN],
    attributes_encoding: &[u8],
) -> Result<(Vec<u8>, usize), ProvenanceError> {
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
    let mut out = Vec::with_capacity(
        160 + provenance.request_id.len()
            + provenance.dataset.len()
            + provenance.provider.len()
            + attributes_encoding.len(),
    );
    put_str(&mut out, DOMAIN);
    out.extend_from_slice(nonce);
    put_str(&mut out, &provenance.request_id);
    out.extend_from_slice(pseudonym);
    put_str(&mut out, &provenance.dataset);
    put_str(&mut out, &provenance.provider);
    out.extend_from_slice(attributes_encoding);
    out.extend_from_slice(&revision);
    let index_at = out.len();
    out.extend_from_slice(&provenance.audit_index.to_be_bytes());
    out.extend_from_slice(&fetched_at.seconds.to_be_bytes());
    out.extend_from_slice(&u32::try_from(fetched_at.nanos).unwrap_or(0).to_be_bytes());
    Ok((out, index_at))
}

/// The statement a batch's signature covers.
fn statement(key_id: &str, size: u32, root: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + key_id.len());
    put_str(&mut out, BATCH_DOMAIN);
    put_str(&mut out, key_id);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(root);
    out
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

/// A response's content before signing: complete but for its nonce and audit index, which the
/// batch signer fills in once the record is durable.
#[derive(Debug)]
pub struct Unsigned {
    content: Vec<u8>,
    index_at: usize,
}

impl Unsigned {
    /// The content of `provenance` (its `audit_index` is replaced when signed) over attributes
    /// already encoded ([`encode_attributes`]).
    pub fn new(
        provenance: &Provenance,
        attributes_encoding: &[u8],
    ) -> Result<Unsigned, ProvenanceError> {
        let (content, index_at) = content(provenance, &[0; NONCE_LEN], attributes_encoding)?;
        Ok(Unsigned { content, index_at })
    }

    /// The leaf hash of the content with its nonce and audit index.
    fn leaf(&mut self, nonce: &[u8], index: LeafIndex) -> Hash {
        self.content[NONCE_AT..NONCE_AT + NONCE_LEN].copy_from_slice(nonce);
        self.content[self.index_at..self.index_at + 8].copy_from_slice(&index.0.to_be_bytes());
        isnad_audit::leaf_hash(&self.content)
    }
}

/// One response's share of a batch signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The response's audit index, as its content says.
    pub index: LeafIndex,
    /// The key that signed.
    pub key_id: String,
    /// The batch's Ed25519 signature.
    pub signature: Vec<u8>,
    /// The response's place in the batch.
    pub batch: ProvenanceBatch,
}

impl Signed {
    /// Puts the signature and the response's place in its batch into its provenance.
    pub fn attach(self, provenance: &mut Provenance) {
        provenance.audit_index = self.index.0;
        provenance.key_id = self.key_id;
        provenance.signature = self.signature;
        provenance.batch = Some(self.batch);
    }
}

/// A gateway node's provenance signing key.
pub struct ProvenanceSigner {
    key: Ed25519KeyPair,
    key_id: String,
    random: SystemRandom,
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
        Ok(ProvenanceSigner {
            key,
            key_id,
            random: SystemRandom::new(),
        })
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

    /// Signs a batch of responses with one signature: draws each a nonce, completes its content
    /// with the nonce and its audit index, and returns each its share, in the order given.
    pub fn sign_batch(
        &self,
        batch: Vec<(Unsigned, LeafIndex)>,
    ) -> Result<Vec<Signed>, ProvenanceError> {
        let size = u32::try_from(batch.len())
            .ok()
            .filter(|&size| size > 0 && size as usize <= MAX_BATCH)
            .ok_or_else(|| ProvenanceError::Batch(format!("{} responses", batch.len())))?;
        let mut nonces = vec![0u8; NONCE_LEN * batch.len()];
        self.random
            .fill(&mut nonces)
            .map_err(|_| ProvenanceError::Key("the system's random generator failed".into()))?;
        let mut tree = MemoryTree::new();
        let mut placed = Vec::with_capacity(batch.len());
        for ((mut unsigned, index), nonce) in batch.into_iter().zip(nonces.chunks(NONCE_LEN)) {
            tree.push(unsigned.leaf(nonce, index));
            placed.push((index, nonce));
        }
        let signature = self
            .key
            .sign(&statement(&self.key_id, size, &tree.root()))
            .as_ref()
            .to_vec();
        placed
            .into_iter()
            .enumerate()
            .map(|(position, (index, nonce))| {
                let path = isnad_audit::inclusion_proof(
                    &tree,
                    LeafIndex(position as u64),
                    TreeSize(u64::from(size)),
                )
                .map_err(|error| ProvenanceError::Batch(error.to_string()))?;
                Ok(Signed {
                    index,
                    key_id: self.key_id.clone(),
                    signature: signature.clone(),
                    batch: ProvenanceBatch {
                        size,
                        index: position as u32,
                        path: path.iter().map(|hash| hash.to_vec()).collect(),
                        nonce: nonce.to_vec(),
                    },
                })
            })
            .collect()
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

    /// Checks a response's provenance: its leaf, its path to its batch's root, and the batch
    /// signature over that root.
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
        let batch = provenance
            .batch
            .as_ref()
            .ok_or(ProvenanceError::Missing("batch"))?;
        let nonce: &[u8; NONCE_LEN] = batch
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| ProvenanceError::Missing("batch.nonce is not 16 bytes"))?;
        let path = batch
            .path
            .iter()
            .map(|hash| Hash::try_from(hash.as_slice()))
            .collect::<Result<Vec<Hash>, _>>()
            .map_err(|_| ProvenanceError::Batch("a path entry is not 32 bytes".into()))?;
        let (content, _) = content(provenance, nonce, &encode_attributes(&response.attributes))?;
        let root = isnad_audit::merkle::root_from_inclusion(
            LeafIndex(u64::from(batch.index)),
            TreeSize(u64::from(batch.size)),
            &isnad_audit::leaf_hash(&content),
            &path,
        )
        .map_err(|error| ProvenanceError::Batch(error.to_string()))?;
        signature::UnparsedPublicKey::new(&signature::ED25519, self.public)
            .verify(
                &statement(&self.key_id, batch.size, &root),
                &provenance.signature,
            )
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

    /// `response()` for request `n`, signed alone or in a batch with the others.
    fn batch(signer: &ProvenanceSigner, count: usize) -> Vec<AttributesResponse> {
        let mut responses: Vec<AttributesResponse> = (0..count)
            .map(|n| {
                let mut response = response();
                let provenance = response.provenance.as_mut().expect("p");
                provenance.request_id = format!("r-{n}");
                response
            })
            .collect();
        let unsigned = responses
            .iter()
            .enumerate()
            .map(|(n, response)| {
                let encoding = encode_attributes(&response.attributes);
                let unsigned = Unsigned::new(response.provenance.as_ref().expect("p"), &encoding)
                    .expect("content");
                (unsigned, LeafIndex(100 + n as u64))
            })
            .collect();
        let signed = signer.sign_batch(unsigned).expect("signed");
        for (response, signed) in responses.iter_mut().zip(signed) {
            signed.attach(response.provenance.as_mut().expect("p"));
        }
        responses
    }

    fn provenance(response: &mut AttributesResponse) -> &mut Provenance {
        response.provenance.as_mut().expect("provenance")
    }

    #[test]
    fn every_response_of_a_batch_verifies_alone() {
        let (signer, _dir) = signer();
        let key = ProvenanceKey::parse(&signer.public().to_string()).expect("parses");
        assert!(key.key_id.starts_with("gw-1+"));
        for count in [1, 2, 3, 7, 64] {
            let responses = batch(&signer, count);
            let signatures: std::collections::HashSet<&Vec<u8>> = responses
                .iter()
                .map(|r| &r.provenance.as_ref().expect("p").signature)
                .collect();
            assert_eq!(
                signatures.len(),
                1,
                "one signature for the batch of {count}"
            );
            for (n, response) in responses.iter().enumerate() {
                let provenance = response.provenance.as_ref().expect("p");
                assert_eq!(provenance.audit_index, 100 + n as u64);
                let batch = provenance.batch.as_ref().expect("batch");
                assert_eq!((batch.size, batch.index), (count as u32, n as u32));
                assert_eq!(key.verify(response), Ok(()), "response {n} of {count}");
            }
        }
    }

    #[test]
    fn nonces_differ_between_responses_and_batches() {
        let (signer, _dir) = signer();
        let nonces: std::collections::HashSet<Vec<u8>> = (0..4)
            .flat_map(|_| batch(&signer, 8))
            .map(|r| r.provenance.expect("p").batch.expect("batch").nonce)
            .collect();
        assert_eq!(nonces.len(), 32);
    }

    #[test]
    fn any_change_to_a_signed_response_breaks_it() {
        let (signer, _dir) = signer();
        let key = ProvenanceKey::parse(&signer.public().to_string()).expect("parses");
        let responses = batch(&signer, 5);
        let response = responses[2].clone();
        assert_eq!(key.verify(&response), Ok(()));

        type Change = Box<dyn Fn(&mut AttributesResponse)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "value",
                Box::new(|r| {
                    r.attributes
                        .insert("adult".into(), value(Kind::BoolValue(false)));
                }),
            ),
            (
                "removed",
                Box::new(|r| {
                    r.attributes.remove("born");
                }),
            ),
            (
                "added",
                Box::new(|r| {
                    r.attributes
                        .insert("extra".into(), value(Kind::StringValue(String::new())));
                }),
            ),
            ("index", Box::new(|r| provenance(r).audit_index += 1)),
            ("request", Box::new(|r| provenance(r).request_id.push('x'))),
            (
                "subject",
                Box::new(|r| provenance(r).subject_pseudonym[0] ^= 1),
            ),
            ("dataset", Box::new(|r| provenance(r).dataset.push('x'))),
            ("provider", Box::new(|r| provenance(r).provider.push('x'))),
            (
                "revision",
                Box::new(|r| provenance(r).policy_revision = format!("sha256:{}", "cd".repeat(32))),
            ),
            (
                "time",
                Box::new(|r| {
                    if let Some(t) = provenance(r).fetched_at.as_mut() {
                        t.nanos += 1;
                    }
                }),
            ),
            (
                "nonce",
                Box::new(|r| provenance(r).batch.as_mut().expect("b").nonce[0] ^= 1),
            ),
            (
                "path",
                Box::new(|r| provenance(r).batch.as_mut().expect("b").path[0][0] ^= 1),
            ),
            (
                "place",
                Box::new(|r| provenance(r).batch.as_mut().expect("b").index = 3),
            ),
            ("signature", Box::new(|r| provenance(r).signature[0] ^= 1)),
        ];
        for (what, change) in &changes {
            let mut changed = response.clone();
            change(&mut changed);
            assert_eq!(
                key.verify(&changed).map_err(|e| e.code()),
                Err("provenance_signature"),
                "{what}"
            );
        }
        // Another response's share of the same batch does not fit this response.
        let mut borrowed = response.clone();
        borrowed.provenance.as_mut().expect("p").batch =
            responses[3].provenance.as_ref().expect("p").batch.clone();
        assert_eq!(key.verify(&borrowed), Err(ProvenanceError::Signature));
        // A batch proof that cannot place a leaf is malformed, not merely wrong.
        let malformed: Vec<(&str, Change)> = vec![
            (
                "size",
                Box::new(|r| provenance(r).batch.as_mut().expect("b").size = 2),
            ),
            (
                "index past the size",
                Box::new(|r| provenance(r).batch.as_mut().expect("b").index = 5),
            ),
            (
                "short hash",
                Box::new(|r| {
                    provenance(r).batch.as_mut().expect("b").path[1]
                        .pop()
                        .map_or((), drop)
                }),
            ),
            (
                "extra hash",
                Box::new(|r| {
                    provenance(r)
                        .batch
                        .as_mut()
                        .expect("b")
                        .path
                        .push(vec![0; 32])
                }),
            ),
        ];
        for (what, change) in &malformed {
            let mut changed = response.clone();
            change(&mut changed);
            assert_eq!(
                key.verify(&changed).map_err(|e| e.code()),
                Err("provenance_batch"),
                "{what}"
            );
        }
        let mut unbatched = response.clone();
        unbatched.provenance.as_mut().expect("p").batch = None;
        assert_eq!(
            key.verify(&unbatched).map_err(|e| e.code()),
            Err("provenance_missing")
        );
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

    #[test]
    fn an_empty_batch_is_refused() {
        let (signer, _dir) = signer();
        assert_eq!(
            signer.sign_batch(Vec::new()).map_err(|e| e.code()),
            Err("provenance_batch")
        );
    }
}
