//! The request decoder: arbitrary bytes as the message of a `GetAttributes` call, with an
//! arbitrary `grpc-timeout` header, through `decode_and_admit` (protobuf decoding, then step 2,
//! admit). It must never panic; an admitted request must satisfy every rule of admission, and a
//! refusal must carry a known reason code and a message that does not depend on the subject.
//!
//! Input: one byte N, then N bytes of `grpc-timeout` (lossy UTF-8; N = 255 means no header), then
//! the message.

#![no_main]

use std::collections::HashSet;

use isnad_gateway::config::Limits;
use isnad_gateway::pipeline::decode_and_admit;
use isnad_proto::v1::AttributesRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const REASONS: &[&str] = &[
    "malformed_request",
    "request_too_large",
    "invalid_subject",
    "no_dataset",
    "no_purpose",
    "no_fields",
    "too_many_fields",
    "invalid_field_name",
    "duplicate_field",
    "invalid_request_id",
    "invalid_deadline",
];

/// Another character of the same kind: a letter for a letter (same case), a digit for a digit.
fn other_of_its_kind(c: char) -> char {
    match c {
        'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (header, message) = if n == 255 {
        (None, rest)
    } else {
        let n = usize::from(n).min(rest.len());
        (Some(String::from_utf8_lossy(&rest[..n]).into_owned()), &rest[n..])
    };
    let limits = Limits {
        max_fields: 8,
        max_request_bytes: 512,
        ..Limits::default()
    };
    match decode_and_admit(&limits, header.as_deref(), message) {
        Ok(admitted) => {
            let request = &admitted.request;
            assert!(request.encoded_len() <= limits.max_request_bytes);
            assert!(!request.subject.is_empty() && request.subject.len() <= 128);
            assert!(request
                .subject
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
            assert!(!request.dataset.is_empty() && !request.purpose.is_empty());
            assert!(!request.fields.is_empty() && request.fields.len() <= limits.max_fields);
            let mut seen = HashSet::new();
            for field in &request.fields {
                assert!(!field.is_empty() && field.len() <= 64);
                assert!(field
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
                assert!(seen.insert(field), "duplicate field admitted");
            }
            assert!(!admitted.request_id.is_empty() && admitted.request_id.len() <= 128);
            assert!(admitted.request_id.bytes().all(|b| b.is_ascii_graphic()));
            let max = std::time::Duration::from_millis(limits.max_deadline_ms);
            assert!(admitted.deadline <= tokio::time::Instant::now() + max);
            let mut twin = admitted.request.clone();
            twin.subject = twin.subject.chars().map(other_of_its_kind).collect();
            assert!(decode_and_admit(&limits, header.as_deref(), &twin.encode_to_vec()).is_ok());
        }
        Err(denial) => {
            assert!(REASONS.contains(&denial.reason), "unknown reason {}", denial.reason);
            // The subject is citizen data: no message may depend on it. The same request with
            // another subject of the same shape (each letter and digit changed, everything else
            // kept) is refused for the same reason with the same message.
            if let Ok(mut request) = AttributesRequest::decode(message) {
                request.subject = request.subject.chars().map(other_of_its_kind).collect();
                let twin = decode_and_admit(&limits, header.as_deref(), &request.encode_to_vec());
                let twin = twin.expect_err("the twin is refused too");
                assert_eq!(twin.reason, denial.reason);
                assert_eq!(twin.message, denial.message);
            }
        }
    }
});
