//! The audit record and its binary encoding (format version 1).
//!
//! The encoding is deterministic and canonical: one record has exactly one encoding, and any
//! byte string that decodes re-encodes to itself. Leaves are hashed over the stored bytes, so a
//! verifier never re-serializes a record; it only checks that the bytes are a valid record.
//!
//! Layout (all integers little endian; `str` = u16 length then that many bytes of UTF-8;
//! `list<T>` = u16 count then the entries):
//!
//! ```text
//! u8        format version (1)
//! u64       time, Unix nanoseconds
//! str       node
//! str       request_id
//! str       consumer
//! str       provider
//! str       dataset
//! str       purpose
//! str       legal_basis
//! str       basis_reference
//! u8 [str]  consent_id: 0 = none, 1 = some, then the text
//! [32]      subject pseudonym
//! list<str>                  requested
//! list<(str, str, str)>      released: field, treatment, rule id
//! list<(str, str, str)>      withheld: field, reason code, rule id
//! u8 [str str] decision: 0 = released, 1 = withheld, 2 = refused, then step and reason
//! [32]      policy revision
//! [32]      released digest
//! str       status
//! ```

use ring::hmac;
use thiserror::Error;

/// The format version written as the first byte of every record.
pub const RECORD_VERSION: u8 = 1;
/// The largest encoded record, in bytes.
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// The most entries in one list (requested, released or withheld).
pub const MAX_LIST_LEN: usize = 1024;

/// HMAC-SHA256(key, subject): the only form in which a subject appears in the log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectPseudonym(pub [u8; 32]);

impl std::fmt::Debug for SubjectPseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectPseudonym({})", crate::hex(&self.0))
    }
}

/// The pseudonym of `subject` under the gateway's pseudonym key.
pub fn pseudonym(key: &[u8], subject: &str) -> SubjectPseudonym {
    Pseudonymizer::new(key).of(subject)
}

/// [`pseudonym`] with the key prepared once (its HMAC pads), for a caller that makes many.
#[derive(Clone)]
pub struct Pseudonymizer(hmac::Key);

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}

impl Pseudonymizer {
    /// Prepares `key`.
    pub fn new(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// The pseudonym of `subject`.
    pub fn of(&self, subject: &str) -> SubjectPseudonym {
        let tag = hmac::sign(&self.0, subject.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SubjectPseudonym(out)
    }
}

/// A field released to the consumer, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The field name.
    pub field: String,
    /// The treatment applied, e.g. `allow` or `mask(keep_last=4)`.
    pub treatment: String,
    /// The rule that released it.
    pub rule_id: String,
}

/// A field that was asked for and not released, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// The field name.
    pub field: String,
    /// The stable reason code.
    pub reason: String,
    /// The rule that decided it (may be empty: default deny).
    pub rule_id: String,
}

/// The outcome of a request as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some fields were released.
    Released,
    /// The request was answered with nothing released.
    Withheld,
    /// The request was refused as a whole.
    Refused {
        /// The lifecycle step that refused it, e.g. `consent`.
        step: String,
        /// The stable reason code.
        reason: String,
    },
}

/// One access to citizen data, as written to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the request was decided, Unix nanoseconds.
    pub time: u64,
    /// The gateway node that served it.
    pub node: String,
    /// The request id.
    pub request_id: String,
    /// The consumer agency id.
    pub consumer: String,
    /// The provider agency id.
    pub provider: String,
    /// The dataset.
    pub dataset: String,
    /// The purpose.
    pub purpose: String,
    /// The legal basis: `statute`, `consent`, `court_order`, or empty.
    pub legal_basis: String,
    /// The basis reference (a statute's reference), may be empty.
    pub basis_reference: String,
    /// The consent id (`jti`) when a consent was used.
    pub consent_id: Option<String>,
    /// The subject's pseudonym.
    pub subject: SubjectPseudonym,
    /// The fields asked for.
    pub requested: Vec<String>,
    /// The fields released.
    pub released: Vec<Released>,
    /// The fields withheld.
    pub withheld: Vec<Withheld>,
    /// The outcome.
    pub decision: Decision,
    /// The policy revision the request was decided under.
    pub policy_revision: [u8; 32],
    /// SHA-256 of the released attributes (all zero when nothing was released).
    pub released_digest: [u8; 32],
    /// `ok`, or the gRPC / reason code of the answer.
    pub status: String,
}

/// Why a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A text field is longer than 65,535 bytes.
    #[error("record field `{field}` is {len} bytes, more than 65535")]
    FieldTooLong {
        /// The field's name (never its content).
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A list has more than [`MAX_LIST_LEN`] entries.
    #[error("record list `{field}` has {len} entries, more than {MAX_LIST_LEN}")]
    TooManyEntries {
        /// The list's name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The encoded record is longer than [`MAX_RECORD_LEN`].
    #[error("encoded record is {len} bytes, more than {MAX_RECORD_LEN}")]
    TooLarge {
        /// The encoded length.
        len: usize,
    },
}

impl EncodeError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            EncodeError::FieldTooLong { .. } => "record_field_too_long",
            EncodeError::TooManyEntries { .. } => "record_list_too_long",
            EncodeError::TooLarge { .. } => "record_too_large",
        }
    }
}

/// Why bytes are not a valid record. `offset` is the byte offset within the record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Empty input, or a version other than [`RECORD_VERSION`].
    #[error("unknown record format version {version:?}")]
    UnknownVersion {
        /// The first byte, if any.
        version: Option<u8>,
    },
    /// The record is longer than [`MAX_RECORD_LEN`].
    #[error("record is {len} bytes, more than {MAX_RECORD_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The record ends inside a field.
    #[error("record ends inside `{field}` at byte {offset}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it started.
        offset: usize,
    },
    /// A text field is not UTF-8.
    #[error("record field `{field}` at byte {offset} is not UTF-8")]
    BadUtf8 {
        /// The field.
        field: &'static str,
        /// Where its text starts.
        offset: usize,
    },
    /// A list count is over [`MAX_LIST_LEN`].
    #[error("record list `{field}` at byte {offset} has {count} entries, more than {MAX_LIST_LEN}")]
    BadLength {
        /// The list.
        field: &'static str,
        /// Where its count is.
        offset: usize,
        /// The count read.
        count: usize,
    },
    /// An option or decision tag that is not defined.
    #[error("record field `{field}` at byte {offset} has unknown tag {tag}")]
    BadTag {
        /// The field.
        field: &'static str,
        /// Where the tag is.
        offset: usize,
        /// The tag read.
        tag: u8,
    },
    /// Bytes after the last field.
    #[error("{count} trailing bytes after the record at byte {offset}")]
    TrailingBytes {
        /// Where the record ended.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
}

impl DecodeError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::UnknownVersion { .. } => "record_unknown_version",
            DecodeError::TooLarge { .. } => "record_too_large",
            DecodeError::Truncated { .. } => "record_truncated",
            DecodeError::BadUtf8 { .. } => "record_bad_utf8",
            DecodeError::BadLength { .. } => "record_bad_length",
            DecodeError::BadTag { .. } => "record_bad_tag",
            DecodeError::TrailingBytes { .. } => "record_trailing_bytes",
        }
    }

    /// The byte offset within the record where the problem is.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::UnknownVersion { .. } | DecodeError::TooLarge { .. } => 0,
            DecodeError::Truncated { offset, .. }
            | DecodeError::BadUtf8 { offset, .. }
            | DecodeError::BadLength { offset, .. }
            | DecodeError::BadTag { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset,
        }
    }
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn str(&mut self, field: &'static str, text: &str) -> Result<(), EncodeError> {
        let len = u16::try_from(text.len()).map_err(|_| EncodeError::FieldTooLong {
            field,
            len: text.len(),
        })?;
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn count(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        if len > MAX_LIST_LEN {
            return Err(EncodeError::TooManyEntries { field, len });
        }
        // MAX_LIST_LEN fits in a u16.
        self.out.extend_from_slice(&(len as u16).to_le_bytes());
        Ok(())
    }
}

impl AuditRecord {
    /// The record's canonical bytes. Fails when a field or the whole is over its bound, so that
    /// every encoded record also decodes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer {
            out: Vec::with_capacity(512),
        };
        w.out.push(RECORD_VERSION);
        w.out.extend_from_slice(&self.time.to_le_bytes());
        w.str("node", &self.node)?;
        w.str("request_id", &self.request_id)?;
        w.str("consumer", &self.consumer)?;
        w.str("provider", &self.provider)?;
        w.str("dataset", &self.dataset)?;
        w.str("purpose", &self.purpose)?;
        w.str("legal_basis", &self.legal_basis)?;
        w.str("basis_reference", &self.basis_reference)?;
        match &self.consent_id {
            None => w.out.push(0),
            Some(id) => {
                w.out.push(1);
                w.str("consent_id", id)?;
            }
        }
        w.out.extend_from_slice(&self.subject.0);
        w.count("requested", self.requested.len())?;
        for field in &self.requested {
            w.str("requested", field)?;
        }
        w.count("released", self.released.len())?;
        for r in &self.released {
            w.str("released.field", &r.field)?;
            w.str("released.treatment", &r.treatment)?;
            w.str("released.rule_id", &r.rule_id)?;
        }
        w.count("withheld", self.withheld.len())?;
        for r in &self.withheld {
            w.str("withheld.field", &r.field)?;
            w.str("withheld.reason", &r.reason)?;
            w.str("withheld.rule_id", &r.rule_id)?;
        }
        match &self.decision {
            Decision::Released => w.out.push(0),
            Decision::Withheld => w.out.push(1),
            Decision::Refused { step, reason } => {
                w.out.push(2);
                w.str("decision.step", step)?;
                w.str("decision.reason", reason)?;
            }
        }
        w.out.extend_from_slice(&self.policy_revision);
        w.out.extend_from_slice(&self.released_digest);
        w.str("status", &self.status)?;
        if w.out.len() > MAX_RECORD_LEN {
            return Err(EncodeError::TooLarge { len: w.out.len() });
        }
        Ok(w.out)
    }

    /// Decodes a record's bytes, strictly: exactly one valid record and nothing after it.
    pub fn decode(bytes: &[u8]) -> Result<AuditRecord, DecodeError> {
        let view = RecordView::parse(bytes)?;
        let triples = |list: TripleList<'_>| -> Vec<(String, String, String)> {
            list.iter()
                .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
                .collect()
        };
        Ok(AuditRecord {
            time: view.time,
            node: view.node.to_owned(),
            request_id: view.request_id.to_owned(),
            consumer: view.consumer.to_owned(),
            provider: view.provider.to_owned(),
            dataset: view.dataset.to_owned(),
            purpose: view.purpose.to_owned(),
            legal_basis: view.legal_basis.to_owned(),
            basis_reference: view.basis_reference.to_owned(),
            consent_id: view.consent_id.map(str::to_owned),
            subject: view.subject,
            requested: view.requested.iter().map(str::to_owned).collect(),
            released: triples(view.released)
                .into_iter()
                .map(|(field, treatment, rule_id)| Released {
                    field,
                    treatment,
                    rule_id,
                })
                .collect(),
            withheld: triples(view.withheld)
                .into_iter()
                .map(|(field, reason, rule_id)| Withheld {
                    field,
                    reason,
                    rule_id,
                })
                .collect(),
            decision: match view.decision {
                DecisionView::Released => Decision::Released,
                DecisionView::Withheld => Decision::Withheld,
                DecisionView::Refused { step, reason } => Decision::Refused {
                    step: step.to_owned(),
                    reason: reason.to_owned(),
                },
            },
            policy_revision: view.policy_revision,
            released_digest: view.released_digest,
            status: view.status.to_owned(),
        })
    }
}

/// A validated record borrowed from its bytes: what the verifier and the index read, without
/// allocating.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// See [`AuditRecord::time`].
    pub time: u64,
    /// See [`AuditRecord::node`].
    pub node: &'a str,
    /// See [`AuditRecord::request_id`].
    pub request_id: &'a str,
    /// See [`AuditRecord::consumer`].
    pub consumer: &'a str,
    /// See [`AuditRecord::provider`].
    pub provider: &'a str,
    /// See [`AuditRecord::dataset`].
    pub dataset: &'a str,
    /// See [`AuditRecord::purpose`].
    pub purpose: &'a str,
    /// See [`AuditRecord::legal_basis`].
    pub legal_basis: &'a str,
    /// See [`AuditRecord::basis_reference`].
    pub basis_reference: &'a str,
    /// See [`AuditRecord::consent_id`].
    pub consent_id: Option<&'a str>,
    /// See [`AuditRecord::subject`].
    pub subject: SubjectPseudonym,
    /// See [`AuditRecord::requested`].
    pub requested: StrList<'a>,
    /// See [`AuditRecord::released`]: (field, treatment, rule id).
    pub released: TripleList<'a>,
    /// See [`AuditRecord::withheld`]: (field, reason, rule id).
    pub withheld: TripleList<'a>,
    /// See [`AuditRecord::decision`].
    pub decision: DecisionView<'a>,
    /// See [`AuditRecord::policy_revision`].
    pub policy_revision: [u8; 32],
    /// See [`AuditRecord::released_digest`].
    pub released_digest: [u8; 32],
    /// See [`AuditRecord::status`].
    pub status: &'a str,
}

/// A borrowed [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionView<'a> {
    /// See [`Decision::Released`].
    Released,
    /// See [`Decision::Withheld`].
    Withheld,
    /// See [`Decision::Refused`].
    Refused {
        /// The step.
        step: &'a str,
        /// The reason.
        reason: &'a str,
    },
}

/// A validated list of texts inside a record.
#[derive(Debug, Clone, Copy)]
pub struct StrList<'a> {
    count: usize,
    bytes: &'a [u8],
}

/// A validated list of text triples inside a record.
#[derive(Debug, Clone, Copy)]
pub struct TripleList<'a> {
    count: usize,
    bytes: &'a [u8],
}

/// Reads a `str` already validated by [`RecordView::parse`].
fn take_valid_str<'a>(bytes: &mut &'a [u8]) -> &'a str {
    let len = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
    let text = &bytes[2..2 + len];
    *bytes = &bytes[2 + len..];
    // Validated at parse time; an empty text can never be reached on a second pass otherwise.
    std::str::from_utf8(text).unwrap_or_default()
}

impl<'a> StrList<'a> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut rest = self.bytes;
        (0..self.count).map(move |_| take_valid_str(&mut rest))
    }
}

impl<'a> TripleList<'a> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str, &'a str)> + use<'a> {
        let mut rest = self.bytes;
        (0..self.count).map(move |_| {
            let a = take_valid_str(&mut rest);
            let b = take_valid_str(&mut rest);
            let c = take_valid_str(&mut rest);
            (a, b, c)
        })
    }
}

/// Reads fields in order. With `FULL` false it only validates: texts are checked (ASCII
/// first, the common case, then UTF-8) and returned empty, which makes the verifier's pass
/// over millions of records about a fifth faster than building views.
struct Reader<'a, const FULL: bool> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a, const FULL: bool> Reader<'a, FULL> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated {
                field,
                offset: self.pos,
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn array32(&mut self, field: &'static str) -> Result<[u8; 32], DecodeError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(field, 32)?);
        Ok(out)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        let len = self.u16(field).map_err(|_| DecodeError::Truncated {
            field,
            offset: start,
        })? as usize;
        let text_at = self.pos;
        let bytes = self.take(field, len).map_err(|_| DecodeError::Truncated {
            field,
            offset: start,
        })?;
        let bad = || DecodeError::BadUtf8 {
            field,
            offset: text_at,
        };
        if FULL {
            std::str::from_utf8(bytes).map_err(|_| bad())
        } else if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok("")
        } else {
            Err(bad())
        }
    }

    fn count(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.u16(field)? as usize;
        if count > MAX_LIST_LEN {
            return Err(DecodeError::BadLength {
                field,
                offset: at,
                count,
            });
        }
        Ok(count)
    }

    fn str_list(&mut self, field: &'static str) -> Result<StrList<'a>, DecodeError> {
        let count = self.count(field)?;
        let start = self.pos;
        for _ in 0..count {
            self.str(field)?;
        }
        Ok(StrList {
            count,
            bytes: &self.bytes[start..self.pos],
        })
    }

    fn triple_list(
        &mut self,
        field: &'static str,
        names: [&'static str; 3],
    ) -> Result<TripleList<'a>, DecodeError> {
        let count = self.count(field)?;
        let start = self.pos;
        for _ in 0..count {
            for name in names {
                self.str(name)?;
            }
        }
        Ok(TripleList {
            count,
            bytes: &self.bytes[start..self.pos],
        })
    }
}

impl<'a> RecordView<'a> {
    /// Validates `bytes` as one record (same rules as [`AuditRecord::decode`]) and borrows its
    /// fields.
    pub fn parse(bytes: &'a [u8]) -> Result<RecordView<'a>, DecodeError> {
        Self::read::<true>(bytes)
    }

    /// Checks that `bytes` are one valid record, as [`RecordView::parse`] does, without
    /// keeping the fields.
    pub fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
        RecordView::read::<false>(bytes).map(|_| ())
    }

    fn read<const FULL: bool>(bytes: &'a [u8]) -> Result<RecordView<'a>, DecodeError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(DecodeError::TooLarge { len: bytes.len() });
        }
        match bytes.first() {
            Some(&RECORD_VERSION) => {}
            other => {
                return Err(DecodeError::UnknownVersion {
                    version: other.copied(),
                });
            }
        }
        let mut r = Reader::<FULL> { bytes, pos: 1 };
        let time_bytes = r.take("time", 8)?;
        let mut time = [0u8; 8];
        time.copy_from_slice(time_bytes);
        let time = u64::from_le_bytes(time);
        let node = r.str("node")?;
        let request_id = r.str("request_id")?;
        let consumer = r.str("consumer")?;
        let provider = r.str("provider")?;
        let dataset = r.str("dataset")?;
        let purpose = r.str("purpose")?;
        let legal_basis = r.str("legal_basis")?;
        let basis_reference = r.str("basis_reference")?;
        let tag_at = r.pos;
        let consent_id = match r.u8("consent_id")? {
            0 => None,
            1 => Some(r.str("consent_id")?),
            tag => {
                return Err(DecodeError::BadTag {
                    field: "consent_id",
                    offset: tag_at,
                    tag,
                });
            }
        };
        let subject = SubjectPseudonym(r.array32("subject")?);
        let requested = r.str_list("requested")?;
        let released = r.triple_list(
            "released",
            ["released.field", "released.treatment", "released.rule_id"],
        )?;
        let withheld = r.triple_list(
            "withheld",
            ["withheld.field", "withheld.reason", "withheld.rule_id"],
        )?;
        let tag_at = r.pos;
        let decision = match r.u8("decision")? {
            0 => DecisionView::Released,
            1 => DecisionView::Withheld,
            2 => DecisionView::Refused {
                step: r.str("decision.step")?,
                reason: r.str("decision.reason")?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    field: "decision",
                    offset: tag_at,
                    tag,
                });
            }
        };
        let policy_revision = r.array32("policy_revision")?;
        let released_digest = r.array32("released_digest")?;
        let status = r.str("status")?;
        if r.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                offset: r.pos,
                count: bytes.len() - r.pos,
            });
        }
        Ok(RecordView {
            time,
            node,
            request_id,
            consumer,
            provider,
            dataset,
            purpose,
            legal_basis,
            basis_reference,
            consent_id,
            subject,
            requested,
            released,
            withheld,
            decision,
            policy_revision,
            released_digest,
            status,
        })
    }
}
