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
