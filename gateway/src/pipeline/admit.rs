//! Step 2: the agency is within its limits ([`agency`]: requests in flight, rate), the request
//! is well-formed and within limits, and it has a deadline.

pub(crate) mod agency;

use std::time::Duration;

use isnad_proto::v1::AttributesRequest;
use prost::Message;
use tokio::time::Instant;
use tonic::Code;

use super::{Denial, Step};
use crate::config::Limits;

/// A request that passed admission.
#[derive(Debug)]
pub struct Admitted {
    /// The request as sent.
    pub request: AttributesRequest,
    /// The caller's request id, or one the gateway assigned.
    pub request_id: String,
    /// When the request must be answered by.
    pub deadline: Instant,
}

const MAX_SUBJECT_BYTES: usize = 128;
const MAX_FIELD_BYTES: usize = 64;
const MAX_REQUEST_ID_BYTES: usize = 128;

fn invalid(reason: &'static str, message: impl Into<String>) -> Denial {
    Denial::new(Step::Admit, Code::InvalidArgument, reason, message)
}

/// Step 2 on a decoded request.
pub(crate) fn admit(
    limits: &Limits,
    grpc_timeout: Option<&str>,
    request: AttributesRequest,
) -> Result<Admitted, Denial> {
    let size = request.encoded_len();
    if size > limits.max_request_bytes {
        return Err(invalid(
            "request_too_large",
            format!(
                "the request is {size} bytes; the limit is {}",
                limits.max_request_bytes
            ),
        ));
    }
    // The subject is citizen data: messages say what is wrong with it, never what it is.
    let subject = &request.subject;
    if subject.is_empty()
        || subject.len() > MAX_SUBJECT_BYTES
        || !subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(invalid(
            "invalid_subject",
            format!("subject must be 1 to {MAX_SUBJECT_BYTES} characters of A-Z a-z 0-9 - _ . :"),
        ));
    }
    if request.dataset.is_empty() {
        return Err(invalid("no_dataset", "name the dataset"));
    }
    if request.purpose.is_empty() {
        return Err(invalid("no_purpose", "state the purpose"));
    }
    if request.fields.is_empty() {
        return Err(invalid("no_fields", "name at least one field"));
    }
    if request.fields.len() > limits.max_fields {
        return Err(invalid(
            "too_many_fields",
            format!(
                "{} fields requested; the limit is {}",
                request.fields.len(),
                limits.max_fields
            ),
        ));
    }
    // A few names are compared with the earlier ones; many go into a set.
    let mut seen = (request.fields.len() > 16)
        .then(|| std::collections::HashSet::with_capacity(request.fields.len()));
    for (n, field) in request.fields.iter().enumerate() {
        if field.is_empty()
            || field.len() > MAX_FIELD_BYTES
            || !field
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "invalid_field_name",
                format!("field names are 1 to {MAX_FIELD_BYTES} characters of a-z 0-9 - _ ."),
            ));
        }
        let named_before = match &mut seen {
            Some(seen) => !seen.insert(field.as_str()),
            None => request.fields[..n].contains(field),
        };
        if named_before {
            return Err(invalid(
                "duplicate_field",
                format!("field {field:?} is named twice"),
            ));
        }
    }
    let request_id = if request.request_id.is_empty() {
        new_request_id()
    } else if request.request_id.len() > MAX_REQUEST_ID_BYTES
        || !request.request_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid(
            "invalid_request_id",
            format!("request_id must be 1 to {MAX_REQUEST_ID_BYTES} printable ASCII characters"),
        ));
    } else {
        request.request_id.clone()
    };
    let timeout = match grpc_timeout {
        None => limits.default_deadline(),
        Some(header) => parse_grpc_timeout(header)
            .ok_or_else(|| invalid("invalid_deadline", "the grpc-timeout header is malformed"))?
            .min(limits.max_deadline()),
    };
    // Finish a little before the caller gives up, so it gets our precise error rather than a
    // bare cancellation.
    let margin = (timeout / 20).min(Duration::from_millis(50));
    Ok(Admitted {
        request,
        request_id,
        deadline: Instant::now() + timeout - margin,
    })
}

/// The request decoder as the gateway runs it: the protobuf bytes of an `AttributesRequest`
/// (the message of a gRPC frame, as tonic hands it over) decoded, then admitted. Bytes that are
/// not such a message are refused with `malformed_request`, as the server's codec layer does.
/// For the fuzz target (`gateway/fuzz`) and tests; the server decodes through tonic.
pub fn decode_and_admit(
    limits: &Limits,
    grpc_timeout: Option<&str>,
    message: &[u8],
) -> Result<Admitted, Denial> {
    let request = AttributesRequest::decode(message).map_err(|_| {
        invalid(
            "malformed_request",
            "the request is not a well-formed message of this method's type",
        )
    })?;
    admit(limits, grpc_timeout, request)
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
fn parse_grpc_timeout(header: &str) -> Option<Duration> {
    let (&unit, digits) = header.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(value * 3600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return None,
    })
}

/// A request id unique to this process's lifetime: a random prefix chosen at start-up and a
/// counter. Ids only need to be unique and unguessable across restarts, not secret, so no
/// per-request randomness (a system call) is spent on them.
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        // The system RNG does not fail on supported platforms; the counter keeps ids unique.
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        u64::from_be_bytes(bytes)
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    isnad_audit::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AttributesRequest {
        AttributesRequest {
            subject: "784199012345678".into(),
            dataset: "identity.person".into(),
            fields: vec!["full_name_en".into()],
            purpose: "housing-grant".into(),
            ..Default::default()
        }
    }

    fn reason(request: AttributesRequest) -> &'static str {
        admit(&Limits::default(), None, request)
            .expect_err("refused")
            .reason
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "1é", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refuses_malformed_requests_with_precise_reasons() {
        let mut r = request();
        r.fields.clear();
        assert_eq!(reason(r), "no_fields");
        let mut r = request();
        r.fields.push("full_name_en".into());
        assert_eq!(reason(r), "duplicate_field");
        let mut r = request();
        r.fields.push("../etc/passwd".into());
        assert_eq!(reason(r), "invalid_field_name");
        let mut r = request();
        r.subject = "784 1990\n".into();
        assert_eq!(reason(r), "invalid_subject");
        let mut r = request();
        r.fields = (0..65).map(|i| format!("f{i}")).collect();
        assert_eq!(reason(r), "too_many_fields");
        let mut r = request();
        r.consent_token = "x".repeat(70_000);
        assert_eq!(reason(r), "request_too_large");
    }

    #[test]
    fn a_subject_never_appears_in_a_refusal() {
        let mut r = request();
        r.subject = "784-secret-subject!".into();
        let denial = admit(&Limits::default(), None, r).expect_err("refused");
        assert!(!denial.message.contains("secret"), "{}", denial.message);
    }

    #[test]
    fn caps_the_deadline_and_assigns_a_request_id() {
        let limits = Limits::default();
        let admitted = admit(&limits, Some("5H"), request()).expect("admitted");
        assert!(admitted.deadline <= Instant::now() + limits.max_deadline());
        assert_eq!(admitted.request_id.len(), 32);
        let next = admit(&limits, None, request()).expect("admitted");
        assert_ne!(admitted.request_id, next.request_id);
    }
}
