//! Hostile requests: bytes that are not a request, invalid UTF-8, a request far over the size
//! limit, control characters, path-like names, empty and huge field names. Each gets
//! INVALID_ARGUMENT (or the policy's refusal) with a stable reason code, nothing is released, and
//! the gateway keeps serving.

use bytes::{Buf, BufMut};
use isnad_proto::v1::AttributesRequest;
use isnad_tests::{Federation, applicant, channel_with, get, refusal, request};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends and receives raw message bytes, so a test can send what no client library would.
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

#[derive(Debug, Default, Clone, Copy)]
struct RawEncoder;

#[derive(Debug, Default, Clone, Copy)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// Calls `Exchange/GetAttributes` with `bytes` as the message: the code and reason of the
/// refusal (a success is a test failure).
async fn send_raw(federation: &Federation, bytes: Vec<u8>) -> (Code, String) {
    let channel = channel_with(
        federation.gateway,
        &federation.material("housing-programme"),
    );
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/isnad.v1.Exchange/GetAttributes");
    match grpc.unary(tonic::Request::new(bytes), path, RawCodec).await {
        Ok(response) => panic!(
            "a hostile message was answered: {} bytes",
            response.get_ref().len()
        ),
        Err(status) => (
            status.code(),
            isnad_proto::errors::reason(&status).unwrap_or_default(),
        ),
    }
}

#[tokio::test]
async fn bytes_that_are_not_a_request_get_a_reason_code() {
    let federation = Federation::start();
    // Not protobuf at all: a field with wire type 7, a truncated length.
    let garbage = vec![0x0f, 0xff, 0xff, 0xff];
    // Field 1 (subject) declared 16 bytes long, 3 given.
    let truncated = vec![0x0a, 0x10, b'7', b'8', b'4'];
    // Field 1 (subject) holding bytes that are not UTF-8.
    let bad_utf8 = vec![0x0a, 0x03, 0xff, 0xfe, 0xfd];
    // A request of 1 MiB: far over max_request_bytes (64 KiB), refused by the transport.
    let huge = AttributesRequest {
        request_id: "x".repeat(1 << 20),
        ..request("identity.person", "housing-grant", &["full_name_en"])
    }
    .encode_to_vec();
    for (case, bytes, reason) in [
        ("garbage", garbage, "malformed_request"),
        ("truncated", truncated, "malformed_request"),
        ("invalid UTF-8", bad_utf8, "malformed_request"),
        ("1 MiB", huge, "request_too_large"),
    ] {
        assert_eq!(
            send_raw(&federation, bytes).await,
            (Code::InvalidArgument, reason.to_owned()),
            "{case}"
        );
    }
    // The same bytes, valid: answered.
    let mut client = federation.client("housing-programme");
    get(
        &mut client,
        request("identity.person", "housing-grant", &["full_name_en"]),
    )
    .await
    .expect("the gateway keeps serving");
}

/// Sends `body` as the whole HTTP/2 body of a `GetAttributes` request, framed or not: the
/// answer's status (from its headers or its trailers) and body.
async fn post(federation: &Federation, body: Vec<u8>) -> (tonic::Status, bytes::Bytes) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let channel = channel_with(
        federation.gateway,
        &federation.material("housing-programme"),
    );
    let request = http::Request::post("/isnad.v1.Exchange/GetAttributes")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .expect("a request");
    let response = channel.oneshot(request).await.expect("an HTTP/2 response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("the body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = tonic::Status::from_header_map(&parts.headers)
        .or_else(|| tonic::Status::from_header_map(&trailers))
        .expect("a grpc-status");
    (status, collected.to_bytes())
}

/// The refusal `body` gets (a success is a test failure).
async fn send_body(federation: &Federation, body: Vec<u8>) -> (Code, String) {
    let (status, _) = post(federation, body).await;
    assert_ne!(status.code(), Code::Ok, "a malformed body was answered");
    (
        status.code(),
        isnad_proto::errors::reason(&status).unwrap_or_default(),
    )
}

/// `payload` with a gRPC message prefix declaring `declared` bytes, compressed or not.
fn framed(compressed: bool, declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn bodies_that_are_not_one_whole_uncompressed_message_get_a_reason_code() {
    let federation = Federation::start();
    let valid = request("identity.person", "housing-grant", &["full_name_en"]).encode_to_vec();
    let len = u32::try_from(valid.len()).expect("small");
    let mut two = framed(false, len, &valid);
    two.extend(framed(false, len, &valid));
    for (case, body, reason) in [
        ("no message", Vec::new(), "malformed_request"),
        ("a prefix cut short", vec![0, 0, 0], "malformed_request"),
        (
            "a message cut short",
            framed(false, len + 1, &valid),
            "malformed_request",
        ),
        ("two messages", two, "malformed_request"),
        // Compression was not negotiated (no grpc-encoding), so the flag cannot be honoured.
        (
            "a compressed message",
            framed(true, len, &valid),
            "malformed_request",
        ),
        // Refused on the declared length, before the bytes are waited for.
        (
            "a message declared as 1 GiB",
            framed(false, 1 << 30, &valid),
            "request_too_large",
        ),
    ] {
        assert_eq!(
            send_body(&federation, body).await,
            (Code::InvalidArgument, reason.to_owned()),
            "{case}"
        );
    }
    // The same message, framed right: answered.
    let (status, bytes) = post(&federation, framed(false, len, &valid)).await;
    assert_eq!(status.code(), Code::Ok);
    let reply = isnad_proto::v1::AttributesResponse::decode(&bytes[5..]).expect("a reply");
    assert!(reply.attributes.contains_key("full_name_en"), "released");
}

#[tokio::test]
async fn names_with_control_characters_paths_or_odd_sizes_get_a_reason_code() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let ask = |dataset: &str, purpose: &str, fields: &[&str]| AttributesRequest {
        subject: applicant(),
        dataset: dataset.to_owned(),
        purpose: purpose.to_owned(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        ..AttributesRequest::default()
    };
    let long_field = "a".repeat(65);
    let cases: Vec<(&str, AttributesRequest, Code, &str)> = vec![
        (
            "path-like dataset",
            ask("../../etc/passwd", "housing-grant", &["full_name_en"]),
            Code::InvalidArgument,
            "unknown_dataset",
        ),
        (
            "dataset with a NUL",
            ask("identity.person\0", "housing-grant", &["full_name_en"]),
            Code::InvalidArgument,
            "unknown_dataset",
        ),
        (
            "purpose with a newline",
            ask("identity.person", "housing-grant\n", &["full_name_en"]),
            Code::InvalidArgument,
            "unknown_purpose",
        ),
        (
            "empty field name",
            ask("identity.person", "housing-grant", &[""]),
            Code::InvalidArgument,
            "invalid_field_name",
        ),
        (
            "field name of 65 characters",
            ask("identity.person", "housing-grant", &[&long_field]),
            Code::InvalidArgument,
            "invalid_field_name",
        ),
        (
            "field name with an escape character",
            ask(
                "identity.person",
                "housing-grant",
                &["full_name_en\u{1b}[2J"],
            ),
            Code::InvalidArgument,
            "invalid_field_name",
        ),
        (
            "subject with a path",
            AttributesRequest {
                subject: "../784197912761950".into(),
                ..ask("identity.person", "housing-grant", &["full_name_en"])
            },
            Code::InvalidArgument,
            "invalid_subject",
        ),
        (
            "subject with a control character",
            AttributesRequest {
                subject: format!("{}\u{7}", applicant()),
                ..ask("identity.person", "housing-grant", &["full_name_en"])
            },
            Code::InvalidArgument,
            "invalid_subject",
        ),
        (
            "request id with a newline",
            AttributesRequest {
                request_id: "id\nforged log line".into(),
                ..ask("identity.person", "housing-grant", &["full_name_en"])
            },
            Code::InvalidArgument,
            "invalid_request_id",
        ),
    ];
    for (case, hostile, code, reason) in cases {
        let result = get(&mut client, hostile).await;
        if let Err(status) = &result {
            assert!(
                !status.message().contains(&applicant()),
                "{case}: the message names the subject"
            );
        }
        assert_eq!(refusal(result), (code, reason.to_owned()), "{case}");
    }
    let logs = federation.process.logs();
    assert!(!logs.contains(&applicant()), "the log names the subject");
    assert!(
        !logs.contains("forged log line\n"),
        "a request id split a log line"
    );
}
