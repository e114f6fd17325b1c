//! gzip (RFC 1952) for the HTTP transports. A poll's answer is compressed
//! whole. An event stream is a gzip member built from pieces deflated on
//! their own ([`super::deflate`]): a message's event is deflated once and
//! its bytes are shared by every stream that gets it, and each stream keeps
//! only a running CRC and length. Every piece ends with a sync flush, so a
//! client inflates each event as it arrives: nothing waits in a compressor.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Chunk, deflate};

/// A gzip member's header: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// Pieces shorter than this are sent as stored blocks: deflate would save
/// nothing on a heartbeat and would cost a compressor's reset.
const STORED_BELOW: usize = 96;

/// `data` as one whole gzip member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 32);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&deflate::deflate(data));
    out.extend_from_slice(&trailer(crc(data), data.len()));
    out
}

fn crc(data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

/// The final (empty, fixed-code) block, then the CRC and length of everything.
fn trailer(crc: u32, len: usize) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[..2].copy_from_slice(&[0x03, 0x00]);
    out[2..6].copy_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out[6..].copy_from_slice(&(len as u32).to_le_bytes());
    out
}

/// One gzip member written as a stream of pieces.
#[derive(Debug, Default)]
pub struct GzipStream {
    crc: crc32fast::Hasher,
    len: usize,
    started: bool,
}

/// A piece of a stream: its plain bytes and, when deflated once for every
/// stream, those deflated bytes.
pub struct Piece<'a> {
    pub plain: &'a [u8],
    pub deflated: Option<Bytes>,
}

impl GzipStream {
    /// Appends `piece` to `out`, compressed; returns the compressed length.
    pub fn push(&mut self, piece: Piece<'_>, out: &mut Chunk) -> usize {
        let mut written = 0;
        if !self.started {
            self.started = true;
            out.push(Bytes::from_static(&HEADER));
            written += HEADER.len();
        }
        self.crc.update(piece.plain);
        self.len += piece.plain.len();
        let compressed = match piece.deflated {
            Some(shared) => shared,
            None if piece.plain.len() < STORED_BELOW => stored(piece.plain),
            None => Bytes::from(deflate::deflate(piece.plain)),
        };
        written += compressed.len();
        out.push(compressed);
        written
    }

    /// The end of the member; returns the length written.
    pub fn finish(self, out: &mut Chunk) -> usize {
        let mut written = 0;
        if !self.started {
            out.push(Bytes::from_static(&HEADER));
            written += HEADER.len();
        }
        let trailer = trailer(self.crc.finalize(), self.len);
        out.push(Bytes::copy_from_slice(&trailer));
        written + trailer.len()
    }
}

/// `data` in stored (uncompressed) blocks, as a stream after a sync flush can take them.
fn stored(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 5 * (data.len() / 65535 + 1));
    for block in data.chunks(65535) {
        let len = block.len() as u16;
        out.put_u8(0x00); // not final, stored; the rest of the byte is padding
        out.put_u16_le(len);
        out.put_u16_le(!len);
        out.put_slice(block);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_whole_answer_round_trips() {
        let answer = br#"{"messages":[],"resets":[],"cursor":"demo:1:abc"}"#.repeat(20);
        let gz = gzip(&answer);
        assert!(gz.len() < answer.len() / 4);
        assert_eq!(gunzip(&gz), answer);
    }

    #[test]
    fn a_stream_of_shared_stored_and_deflated_pieces_is_one_valid_member() {
        let event = b"event: message\ndata: {\"text\":\"hello hello hello hello hello hello hello hello\"}\n".repeat(3);
        let shared = Bytes::from(deflate::deflate(&event));
        let mut stream = GzipStream::default();
        let mut chunk = Chunk::default();
        let mut expected = Vec::new();
        for plain in [&b": open\n\n"[..], &event, b"id: demo:1:abc\n\n", &[b'x'; 300]] {
            let deflated = (plain == &event[..]).then(|| shared.clone());
            stream.push(Piece { plain, deflated }, &mut chunk);
            expected.extend_from_slice(plain);
        }
        stream.finish(&mut chunk);
        assert_eq!(gunzip(&chunk.into_bytes()), expected);
    }

    #[test]
    fn what_was_sent_so_far_inflates_without_the_end() {
        let mut stream = GzipStream::default();
        let mut chunk = Chunk::default();
        stream.push(Piece { plain: b"event: a\ndata: 1\n\n", deflated: None }, &mut chunk);
        let sent = chunk.into_bytes();
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        std::io::Write::write_all(&mut decoder, &sent).unwrap();
        std::io::Write::flush(&mut decoder).unwrap();
        assert_eq!(decoder.get_ref().as_slice(), b"event: a\ndata: 1\n\n");
    }
}
