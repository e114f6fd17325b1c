//! A WebSocket client written by hand, frame by frame, for what a library
//! hides: RSV1 and compressed payloads as they are on the wire, offers a
//! library would not make, compressed frames a library would not send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;

/// A frame as the server sent it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// The frame's whole length on the wire.
    pub wire_len: usize,
}

impl Frame {
    /// A close frame's code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub struct RawWs {
    pub tcp: TcpStream,
    /// The `101` (or refusal) head, as text.
    pub head: String,
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path_and_query` with `headers` (`Name: value` lines) added.
    pub async fn connect(addr: SocketAddr, path_and_query: &str, headers: &[&str]) -> RawWs {
        let mut request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut tcp = timeout(PATIENCE, TcpStream::connect(addr)).await.expect("connect timed out").unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut ws = RawWs { tcp, head: String::new(), buf: Vec::new() };
        let end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            ws.fill().await.expect("the head");
        };
        ws.head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        ws.buf.drain(..end);
        ws
    }

    /// A header of the answer's head, by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout(PATIENCE, self.tcp.read(&mut chunk)).await.expect("nothing within patience").ok()?;
        if n == 0 {
            return None;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Some(())
    }

    /// The next frame; `None` once the connection ends.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = parse(&mut self.buf) {
                return Some(frame);
            }
            self.fill().await?;
        }
    }

    /// The next data frame (pings are answered, pongs skipped).
    pub async fn data(&mut self) -> Frame {
        loop {
            let frame = self.frame().await.expect("the connection ended");
            match frame.opcode {
                9 => self.send(10, false, &frame.payload).await,
                10 => {}
                _ => return frame,
            }
        }
    }

    /// Reads past data frames to the close frame; its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let frame = self.frame().await.expect("a close frame");
            if frame.opcode == CLOSE {
                return frame.close_code();
            }
        }
    }

    /// Sends a masked frame, with RSV1 when `rsv1`.
    pub async fn send(&mut self, opcode: u8, rsv1: bool, payload: &[u8]) {
        self.tcp.write_all(&client_frame(opcode, rsv1, payload)).await.unwrap();
    }
}

/// A whole frame off the front of `buf`, if there is one.
fn parse(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let (fin, rsv1, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x40 != 0, buf[0] & 0x0f);
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < header + len {
        return None;
    }
    let payload = buf[header..header + len].to_vec();
    buf.drain(..header + len);
    Some(Frame { fin, rsv1, opcode, payload, wire_len: header + len })
}

/// A client frame: final, masked.
pub fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A permessage-deflate payload inflated with a fresh inflater (as a client
/// that keeps no context from one message to the next).
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut whole = payload.to_vec();
    whole.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflater = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 20 + 1024);
    inflater.decompress_vec(&whole, &mut out, flate2::FlushDecompress::Sync).expect("valid deflate");
    assert_eq!(inflater.total_in() as usize, whole.len(), "inflated whole (room: {})", out.capacity());
    out
}

/// A payload deflated as a client does (its own compressor, no context).
pub fn deflate(plain: &[u8]) -> Vec<u8> {
    let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(plain.len() + 1024);
    compressor.compress_vec(plain, &mut out, flate2::FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}
