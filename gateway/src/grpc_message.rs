//! One length-prefixed gRPC message, as it crosses HTTP/2 in a unary call: the gateway's reply
//! to `GetAttributes` and its request to a provider are framed here, and a request or a reply
//! arriving in DATA frames is put together here, within a size limit checked against the
//! length the peer declares before any of the message is buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The message prefix: a compression flag and a 4-byte big-endian length.
pub const PREFIX: usize = 5;

/// Why the bytes that arrived are not the one message of a unary call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The message is declared, or has grown, longer than the limit.
    TooLarge,
    /// Not exactly one whole, uncompressed message.
    Malformed(&'static str),
}

/// A message as it arrives, in one or more pieces.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The first piece, kept as it came: usually the whole message.
    first: Bytes,
    /// The pieces gathered, once there is more than one.
    gathered: BytesMut,
}

impl Gathered {
    /// Adds a piece; refuses a message whose declared or received length is over `max`.
    pub fn push(&mut self, piece: Bytes, max: usize) -> Result<(), MessageError> {
        if self.bytes().len().saturating_add(piece.len()) > PREFIX.saturating_add(max) {
            return Err(MessageError::TooLarge);
        }
        if self.first.is_empty() && self.gathered.is_empty() {
            self.first = piece;
        } else {
            if self.gathered.is_empty() {
                self.gathered.extend_from_slice(&self.first);
                self.first = Bytes::new();
            }
            self.gathered.extend_from_slice(&piece);
        }
        let bytes = self.bytes();
        if bytes.len() >= PREFIX {
            let declared = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            if declared as usize > max {
                return Err(MessageError::TooLarge);
            }
        }
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        if self.gathered.is_empty() {
            &self.first
        } else {
            &self.gathered
        }
    }

    /// The message without its prefix, if exactly one uncompressed message arrived.
    pub fn complete(self) -> Result<Bytes, MessageError> {
        let mut bytes = if self.gathered.is_empty() {
            self.first
        } else {
            self.gathered.freeze()
        };
        if bytes.len() < PREFIX {
            return Err(MessageError::Malformed("no message"));
        }
        if bytes[0] != 0 {
            // The gateway offers no compression, so no peer may use it.
            return Err(MessageError::Malformed("compressed message"));
        }
        let declared = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        bytes.advance(PREFIX);
        if bytes.len() != declared {
            return Err(MessageError::Malformed(
                "message length differs from its prefix",
            ));
        }
        Ok(bytes)
    }
}

/// `message` with its prefix, in one buffer.
pub fn encode(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message
        .encode(&mut buf)
        .expect("the buffer has the message's length");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isnad_proto::v1::FetchRequest;
    use prost::Message;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_message_in_pieces_is_put_together() {
        let whole = framed(b"hello, provider");
        for split in 0..whole.len() {
            let mut message = Gathered::default();
            for piece in [&whole[..split], &whole[split..]] {
                if !piece.is_empty() {
                    message
                        .push(Bytes::copy_from_slice(piece), 100)
                        .expect("within the limit");
                }
            }
            assert_eq!(
                &message.complete().expect("complete")[..],
                b"hello, provider"
            );
        }
    }

    #[test]
    fn the_declared_length_is_checked_before_the_message_arrives() {
        let mut message = Gathered::default();
        let mut prefix = vec![0];
        prefix.extend_from_slice(&101u32.to_be_bytes());
        assert_eq!(
            message.push(Bytes::from(prefix), 100),
            Err(MessageError::TooLarge)
        );
    }

    #[test]
    fn more_bytes_than_the_limit_are_refused_whatever_the_prefix_says() {
        let mut message = Gathered::default();
        message
            .push(Bytes::from(framed(&[7; 100])), 100)
            .expect("exactly the limit");
        assert_eq!(
            message.push(Bytes::from_static(&[0]), 100),
            Err(MessageError::TooLarge)
        );
    }

    #[test]
    fn short_compressed_and_trailing_messages_are_malformed() {
        let complete = |bytes: Vec<u8>| {
            let mut message = Gathered::default();
            message.push(Bytes::from(bytes), 100).expect("small");
            message.complete()
        };
        assert_eq!(
            Gathered::default().complete(),
            Err(MessageError::Malformed("no message"))
        );
        let mut compressed = framed(b"x");
        compressed[0] = 1;
        assert_eq!(
            complete(compressed),
            Err(MessageError::Malformed("compressed message"))
        );
        let mut two = framed(b"x");
        two.extend(framed(b"y"));
        assert_eq!(
            complete(two),
            Err(MessageError::Malformed(
                "message length differs from its prefix"
            ))
        );
        let mut cut = framed(b"xyz");
        cut.pop();
        assert_eq!(
            complete(cut),
            Err(MessageError::Malformed(
                "message length differs from its prefix"
            ))
        );
    }

    #[test]
    fn a_message_is_framed_with_its_length() {
        let request = FetchRequest {
            subject: "784199000000001".to_owned(),
            fields: vec!["full_name_en".to_owned()],
            ..FetchRequest::default()
        };
        let bytes = encode(&request);
        assert_eq!(bytes[0], 0);
        let declared = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(declared, bytes.len() - PREFIX);
        assert_eq!(
            FetchRequest::decode(&bytes[PREFIX..]).expect("decodes"),
            request
        );
    }
}
