//! HTTP/2 frames written and read by hand, for what a well-behaved client
//! (the `h2` crate) will not send: header blocks left unfinished or grown
//! past the limits, and streams beyond the server's concurrency limit.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A SETTINGS frame's parameters.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
            .collect()
    }

    /// A RST_STREAM's or GOAWAY's error code.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A client connection speaking raw frames.
pub struct RawH2<S> {
    io: S,
    read: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawH2<S> {
    /// Sends the connection preface and empty SETTINGS.
    pub async fn start(io: S) -> RawH2<S> {
        Self::start_with(io, &[]).await
    }

    /// Sends the connection preface and SETTINGS with these parameters.
    pub async fn start_with(io: S, settings: &[(u16, u32)]) -> RawH2<S> {
        let mut raw = RawH2 { io, read: BytesMut::new() };
        raw.io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let payload: Vec<u8> =
            settings.iter().flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes())).collect();
        raw.send(SETTINGS, 0, 0, &payload).await.unwrap();
        raw
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> std::io::Result<()> {
        self.io.write_all(&frame(kind, flags, stream, payload)).await
    }

    /// Bytes as they are: a part of a frame, say.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await
    }

    /// The next frame from the server, PINGs and SETTINGS acknowledged on
    /// the way (and returned); `None` once the connection is closed.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if self.read.len() >= 9 {
                let len =
                    (usize::from(self.read[0]) << 16) | (usize::from(self.read[1]) << 8) | usize::from(self.read[2]);
                if self.read.len() >= 9 + len {
                    let (kind, flags) = (self.read[3], self.read[4]);
                    let stream = u32::from_be_bytes(self.read[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    self.read.advance(9);
                    let payload = self.read.split_to(len).to_vec();
                    match (kind, flags & ACK) {
                        (PING, 0) => self.send(PING, ACK, 0, &payload).await.ok()?,
                        (SETTINGS, 0) => self.send(SETTINGS, ACK, 0, &[]).await.ok()?,
                        _ => {}
                    }
                    return Some(Frame { kind, flags, stream, payload });
                }
            }
            match self.io.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads and answers nothing (not even PINGs) until the server closes;
    /// the frame kinds it sent meanwhile.
    pub async fn ignore_until_closed(&mut self) -> Vec<u8> {
        let mut kinds = Vec::new();
        loop {
            while self.read.len() >= 9 {
                let len =
                    (usize::from(self.read[0]) << 16) | (usize::from(self.read[1]) << 8) | usize::from(self.read[2]);
                if self.read.len() < 9 + len {
                    break;
                }
                kinds.push(self.read[3]);
                self.read.advance(9 + len);
            }
            match self.io.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => return kinds,
                Ok(_) => {}
            }
        }
    }

    /// Frames until one of `kind` (on any stream), or `None` at the close.
    pub async fn until(&mut self, kind: u8) -> Option<Frame> {
        loop {
            let frame = self.frame().await?;
            if frame.kind == kind {
                return Some(frame);
            }
        }
    }
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK header field, literal and not indexed, without Huffman coding.
pub fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    for s in [name, value] {
        integer(&mut out, s.len(), 7, 0);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541, 5.1).
fn integer(out: &mut Vec<u8>, mut value: usize, n: u32, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// The header block of a GET of `path`.
pub fn get(authority: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path)] {
        block.extend(literal(name, value));
    }
    block
}
