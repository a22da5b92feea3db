//! The record encoding: round trips, one encoding per record, and every kind of malformed input
//! refused with its code.

use isnad_audit::record::{MAX_LIST_LEN, MAX_RECORD_LEN, RecordView};
use isnad_audit::{AuditRecord, Decision, Released, SubjectPseudonym, Withheld, pseudonym};

fn sample() -> AuditRecord {
    AuditRecord {
        time: 1_795_000_000_123_456_789,
        node: "gw-1".into(),
        request_id: "req-42".into(),
        consumer: "housing-programme".into(),
        provider: "identity-authority".into(),
        dataset: "identity.person".into(),
        purpose: "housing-grant".into(),
        legal_basis: "statute".into(),
        basis_reference: "Housing Act art. 7".into(),
        consent_id: Some("c-123".into()),
        subject: pseudonym(b"pseudonym key", "784-1990-1234567-1"),
        requested: vec!["full_name_en".into(), "date_of_birth".into(), "iban".into()],
        released: vec![
            Released {
                field: "full_name_en".into(),
                treatment: "allow".into(),
                rule_id: "r1".into(),
            },
            Released {
                field: "date_of_birth".into(),
                treatment: "age_over(21)".into(),
                rule_id: "r1".into(),
            },
        ],
        withheld: vec![Withheld {
            field: "iban".into(),
            reason: "field_not_granted".into(),
            rule_id: String::new(),
        }],
        decision: Decision::Released,
        policy_revision: [7; 32],
        released_digest: [9; 32],
        status: "ok".into(),
    }
}

fn refused() -> AuditRecord {
    AuditRecord {
        consent_id: None,
        released: vec![],
        decision: Decision::Refused {
            step: "consent".into(),
            reason: "consent_revoked".into(),
        },
        released_digest: [0; 32],
        status: "PERMISSION_DENIED".into(),
        ..sample()
    }
}

#[test]
fn a_record_round_trips() {
    for record in [
        sample(),
        refused(),
        AuditRecord {
            decision: Decision::Withheld,
            ..sample()
        },
    ] {
        let bytes = record.encode().expect("encodes");
        assert_eq!(bytes[0], 1, "format version first");
        assert_eq!(AuditRecord::decode(&bytes).expect("decodes"), record);
        assert_eq!(
            AuditRecord::decode(&bytes)
                .expect("decodes")
                .encode()
                .expect("encodes"),
            bytes
        );
    }
}

#[test]
fn the_encoding_is_pinned_byte_by_byte() {
    let record = AuditRecord {
        time: 0x0102_0304_0506_0708,
        node: "n".into(),
        request_id: String::new(),
        consumer: "c".into(),
        provider: "p".into(),
        dataset: "d".into(),
        purpose: "u".into(),
        legal_basis: String::new(),
        basis_reference: String::new(),
        consent_id: None,
        subject: SubjectPseudonym([0xAA; 32]),
        requested: vec!["f".into()],
        released: vec![Released {
            field: "f".into(),
            treatment: "allow".into(),
            rule_id: "r".into(),
        }],
        withheld: vec![],
        decision: Decision::Released,
        policy_revision: [0xBB; 32],
        released_digest: [0xCC; 32],
        status: "ok".into(),
    };
    let mut expected = vec![1u8];
    expected.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
    for text in ["n", "", "c", "p", "d", "u", "", ""] {
        expected.extend_from_slice(&(text.len() as u16).to_le_bytes());
        expected.extend_from_slice(text.as_bytes());
    }
    expected.push(0); // no consent id
    expected.extend_from_slice(&[0xAA; 32]);
    expected.extend_from_slice(&[1, 0, 1, 0, b'f']); // requested: ["f"]
    expected.extend_from_slice(&[1, 0, 1, 0, b'f', 5, 0]);
    expected.extend_from_slice(b"allow");
    expected.extend_from_slice(&[1, 0, b'r']);
    expected.extend_from_slice(&[0, 0]); // withheld: []
    expected.push(0); // released
    expected.extend_from_slice(&[0xBB; 32]);
    expected.extend_from_slice(&[0xCC; 32]);
    expected.extend_from_slice(&[2, 0, b'o', b'k']);
    assert_eq!(record.encode().expect("encodes"), expected);
}

#[test]
fn equal_records_encode_to_equal_bytes() {
    assert_eq!(
        sample().encode().expect("encodes"),
        sample().clone().encode().expect("encodes")
    );
    assert_ne!(
        sample().encode().expect("encodes"),
        refused().encode().expect("encodes")
    );
}

#[test]
fn the_pseudonym_is_hmac_sha256_of_the_subject() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    let p = pseudonym(b"Jefe", "what do ya want for nothing?");
    assert_eq!(
        isnad_audit::hex(&p.0),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_ne!(pseudonym(b"k", "a"), pseudonym(b"k", "b"));
    assert_ne!(pseudonym(b"k1", "a"), pseudonym(b"k2", "a"));
}

fn decode_code(bytes: &[u8]) -> &'static str {
    let err = AuditRecord::decode(bytes).expect_err("malformed");
    // The verifier's validation without views refuses alike.
    assert_eq!(RecordView::validate(bytes), Err(err.clone()));
    err.code()
}

#[test]
fn an_unknown_version_is_refused() {
    let mut bytes = sample().encode().expect("encodes");
    bytes[0] = 2;
    assert_eq!(decode_code(&bytes), "record_unknown_version");
    assert_eq!(decode_code(&[]), "record_unknown_version");
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = sample().encode().expect("encodes");
    bytes.push(0);
    let err = AuditRecord::decode(&bytes).expect_err("trailing");
    assert_eq!(err.code(), "record_trailing_bytes");
    assert_eq!(err.offset(), bytes.len() - 1);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample().encode().expect("encodes");
    for len in 1..bytes.len() {
        let err = AuditRecord::decode(&bytes[..len]).expect_err("truncated");
        assert_eq!(err.code(), "record_truncated", "cut at {len}");
        assert_eq!(RecordView::validate(&bytes[..len]), Err(err.clone()));
        assert!(err.offset() <= len, "offset within the input");
    }
}

#[test]
fn a_length_running_past_the_end_is_refused() {
    let mut bytes = sample().encode().expect("encodes");
    // The node's length is at bytes 9..11.
    bytes[9] = 0xFF;
    bytes[10] = 0xFF;
    let err = AuditRecord::decode(&bytes).expect_err("bad length");
    assert_eq!(err.code(), "record_truncated");
    assert_eq!(err.offset(), 9);
}

#[test]
fn bad_utf8_is_refused_with_its_offset() {
    let mut bytes = sample().encode().expect("encodes");
    bytes[11] = 0xFF; // the node's first byte
    let err = AuditRecord::decode(&bytes).expect_err("bad utf-8");
    assert_eq!(err.code(), "record_bad_utf8");
    assert_eq!(err.offset(), 11);
}

fn offset_of_requested_count(record: &AuditRecord) -> usize {
    // version, time, 8 texts, consent tag (+ text), subject
    let texts = [
        &record.node,
        &record.request_id,
        &record.consumer,
        &record.provider,
        &record.dataset,
        &record.purpose,
        &record.legal_basis,
        &record.basis_reference,
    ];
    1 + 8
        + texts.iter().map(|t| 2 + t.len()).sum::<usize>()
        + 1
        + record.consent_id.as_ref().map_or(0, |c| 2 + c.len())
        + 32
}

#[test]
fn a_list_longer_than_the_bound_is_refused() {
    let record = sample();
    let mut bytes = record.encode().expect("encodes");
    let at = offset_of_requested_count(&record);
    assert_eq!(bytes[at], 3, "three fields requested");
    bytes[at..at + 2].copy_from_slice(&(MAX_LIST_LEN as u16 + 1).to_le_bytes());
    let err = AuditRecord::decode(&bytes).expect_err("too many");
    assert_eq!(err.code(), "record_bad_length");
    assert_eq!(err.offset(), at);
}

#[test]
fn an_unknown_tag_is_refused() {
    let record = sample();
    let mut bytes = record.encode().expect("encodes");
    let at = offset_of_requested_count(&record) - 32 - 2 - "c-123".len() - 1;
    assert_eq!(bytes[at], 1, "consent tag");
    bytes[at] = 2;
    let err = AuditRecord::decode(&bytes).expect_err("bad tag");
    assert_eq!(err.code(), "record_bad_tag");
    assert_eq!(err.offset(), at);

    // The decision tag sits before the two hashes and the status.
    let mut bytes = record.encode().expect("encodes");
    let at = bytes.len() - 2 - "ok".len() - 64 - 1;
    assert_eq!(bytes[at], 0, "decision released");
    bytes[at] = 3;
    assert_eq!(decode_code(&bytes), "record_bad_tag");
}

#[test]
fn records_over_the_bounds_are_not_encoded() {
    let long = AuditRecord {
        node: "x".repeat(70_000),
        ..sample()
    };
    assert_eq!(
        long.encode().expect_err("long").code(),
        "record_field_too_long"
    );
    let many = AuditRecord {
        requested: vec!["f".into(); MAX_LIST_LEN + 1],
        ..sample()
    };
    assert_eq!(
        many.encode().expect_err("many").code(),
        "record_list_too_long"
    );
    let large = AuditRecord {
        requested: vec!["f".repeat(100); MAX_LIST_LEN],
        ..sample()
    };
    assert_eq!(
        large.encode().expect_err("large").code(),
        "record_too_large"
    );
    assert_eq!(
        decode_code(&vec![1u8; MAX_RECORD_LEN + 1]),
        "record_too_large"
    );
}

#[test]
fn the_view_borrows_the_same_fields() {
    let record = sample();
    let bytes = record.encode().expect("encodes");
    RecordView::validate(&bytes).expect("valid");
    let view = RecordView::parse(&bytes).expect("valid");
    assert_eq!(view.consumer, record.consumer);
    assert_eq!(view.subject, record.subject);
    assert_eq!(view.requested.iter().collect::<Vec<_>>(), record.requested);
    assert_eq!(view.released.len(), 2);
    assert_eq!(
        view.withheld.iter().next(),
        Some(("iban", "field_not_granted", ""))
    );
}

#[test]
fn hex_is_lower_case_two_digits_a_byte() {
    assert_eq!(
        isnad_audit::hex(&[0x00, 0x0f, 0x10, 0xa5, 0xff]),
        "000f10a5ff"
    );
    assert_eq!(isnad_audit::hex(&[]), "");
}
