//! What v1.2 puts between a message and the wire: compression
//! (permessage-deflate for WebSocket, gzip for the HTTP transports) and the
//! MessagePack encoding. A leaf: it knows bytes, not messages or sessions.

pub mod deflate;
pub mod gzip;
pub mod msgpack;

use bytes::{BufMut, Bytes, BytesMut};

/// The encoding a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    MsgPack,
}

impl Format {
    /// A `?format=` value: `json` or `msgpack`.
    pub fn parse(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "msgpack" => Some(Format::MsgPack),
            _ => None,
        }
    }
}

/// The bytes of one write: the usual one is a single shared piece (an
/// event's bytes, the same for every stream that gets it), passed on as it
/// is; copied into a buffer only when a second joins it.
#[derive(Debug, Default)]
pub struct Chunk {
    first: Bytes,
    more: BytesMut,
}

impl Chunk {
    pub fn push(&mut self, piece: Bytes) {
        if self.first.is_empty() && self.more.is_empty() {
            self.first = piece;
            return;
        }
        if !self.first.is_empty() {
            self.more.reserve(self.first.len() + piece.len());
            self.more.put(std::mem::take(&mut self.first));
        }
        self.more.put(piece);
    }

    pub fn len(&self) -> usize {
        self.first.len() + self.more.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_bytes(self) -> Bytes {
        match self.more.is_empty() {
            true => self.first,
            false => self.more.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_piece_is_passed_on_as_it_is_and_pieces_together_are_joined() {
        let shared = Bytes::from_static(b"id: a:1\nevent: message\ndata: {}\n\n");
        let mut one = Chunk::default();
        one.push(shared.clone());
        assert_eq!(one.len(), shared.len());
        let out = one.into_bytes();
        assert_eq!(out.as_ptr(), shared.as_ptr(), "the message's own bytes, not a copy");

        let mut three = Chunk::default();
        for part in [&b"a\n\n"[..], b"bb\n\n", b"ccc\n\n"] {
            three.push(Bytes::copy_from_slice(part));
        }
        assert_eq!(three.len(), 12);
        assert_eq!(three.into_bytes(), "a\n\nbb\n\nccc\n\n");
        assert!(Chunk::default().into_bytes().is_empty());
    }
}
