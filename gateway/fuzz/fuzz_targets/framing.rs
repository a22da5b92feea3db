//! The framing of a unary call's one message: arbitrary bytes as an HTTP/2 body arriving in
//! arbitrary pieces, put together by `grpc_message::Gathered` within a size limit. It must never
//! panic, the outcome must not depend on how the body was cut, the size limit must refuse
//! exactly the bodies over it (by their length or by the length they declare), a message taken
//! must be exactly the one the body frames, and a body that frames one uncompressed message
//! within the limit must be taken.
//!
//! Input: one byte L (the limit is L bytes), then bytes giving the pieces' lengths up to a 0xFF,
//! then the body. Lengths cycle; a length of 0 is a piece of one byte.

#![no_main]

use bytes::Bytes;
use isnad_gateway::grpc_message::{Gathered, MessageError, PREFIX};
use libfuzzer_sys::fuzz_target;

fn gather(pieces: impl Iterator<Item = Bytes>, max: usize) -> Result<Bytes, MessageError> {
    let mut message = Gathered::default();
    for piece in pieces {
        message.push(piece, max)?;
    }
    message.complete()
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(limit);
    let end = rest.iter().position(|&b| b == 0xFF).unwrap_or(rest.len());
    let body = Bytes::copy_from_slice(rest.get(end + 1..).unwrap_or_default());
    let mut lengths: Vec<usize> = rest[..end].iter().map(|&b| usize::from(b).max(1)).collect();
    if lengths.is_empty() {
        lengths.push(body.len().max(1));
    }

    let whole = gather(std::iter::once(body.clone()).filter(|b| !b.is_empty()), max);
    let mut pieces = Vec::new();
    let mut at = 0;
    for length in lengths.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let next = (at + length).min(body.len());
        pieces.push(body.slice(at..next));
        at = next;
    }
    let cut = gather(pieces.into_iter(), max);
    assert_eq!(whole, cut, "the outcome depends on how the body was cut");

    let declared = (body.len() >= PREFIX)
        .then(|| u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize);
    let framed_one = body.first() == Some(&0) && declared.is_some_and(|d| d == body.len() - PREFIX);
    // Too large exactly when the body, or the length it declares, is over the limit.
    let too_large = body.len() > PREFIX + max || declared.is_some_and(|d| d > max);
    assert_eq!(
        whole == Err(MessageError::TooLarge),
        too_large,
        "size limit misjudged"
    );
    match whole {
        Ok(message) => {
            assert!(framed_one, "a body that is not one message was taken");
            assert_eq!(&message[..], &body[PREFIX..]);
        }
        Err(MessageError::TooLarge) => {}
        Err(MessageError::Malformed(_)) => {
            assert!(
                !framed_one,
                "one uncompressed message within the limit was refused as malformed"
            );
        }
    }
});
