//! Compressed streams read as a browser reads them.
//!
//! **WebSocket permessage-deflate (RFC 7692).** tungstenite 0.30 has no
//! extension support: it fails a connection on any frame with RSV1 set. So
//! the extension lives in [`Inflating`], a socket layer *under* tungstenite:
//! it passes the handshake through, reads the server's `101` head itself, and
//! when the server accepted `permessage-deflate` it rewrites every compressed
//! server message into the uncompressed frame tungstenite expects (RSV1
//! clear, payload inflated, length adjusted). Everything else (pings, close,
//! the client's own frames, which are never compressed) passes untouched, so
//! tungstenite still speaks the protocol. One inflater per connection, kept
//! from message to message: right whether the server takes its context over
//! (Node's `ws` may) or answers `server_no_context_takeover` (pushwire does),
//! since a message compressed without context never refers back.
//!
//! **HTTP gzip.** [`GzipStream`] inflates an SSE body piece by piece, so
//! events are parsed as they arrive; [`gunzip`] a whole poll answer.
//!
//! The bytes counted on the wire are below both: `Counted` is the socket.

use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use flate2::write::GzDecoder;
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The offer a browser makes (Chromium's, word for word).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A server message larger than this, compressed or inflated, fails the
/// connection (tungstenite's own default message limit is 64 MiB).
const MAX_MESSAGE: usize = 64 << 20;

pin_project_lite::pin_project! {
    /// A client socket that inflates permessage-deflate server messages, when
    /// the handshake's answer accepted the extension.
    pub struct Inflating<S> {
        #[pin]
        inner: S,
        state: State,
        // Read from the socket, not yet handed on.
        input: BytesMut,
        // Ready for tungstenite.
        output: BytesMut,
    }
}

enum State {
    /// Until the end of the server's handshake answer.
    Head,
    /// No extension: bytes pass as they are.
    Plain,
    /// permessage-deflate in force.
    Deflate(Box<Messages>),
}

/// The inflater (made with the first compressed message: an idle connection
/// holds none), and whether the message now arriving is compressed (set by
/// its first frame, RSV1; its continuations carry no RSV1 of their own).
struct Messages {
    inflater: Option<Decompress>,
    compressed: bool,
    /// Compressed messages seen: the server compressed at least these.
    count: u64,
}

impl<S> Inflating<S> {
    /// A socket whose handshake `offered` permessage-deflate (else it only passes bytes on).
    pub fn new(inner: S, offered: bool) -> Inflating<S> {
        let state = if offered { State::Head } else { State::Plain };
        Inflating { inner, state, input: BytesMut::new(), output: BytesMut::new() }
    }

    /// Server messages that came compressed; none when the extension is not in force.
    pub fn compressed_messages(&self) -> u64 {
        match &self.state {
            State::Deflate(messages) => messages.count,
            _ => 0,
        }
    }
}

impl State {
    /// Moves what `input` completes to `output`.
    fn advance(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<()> {
        loop {
            match self {
                State::Head => {
                    let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(()) };
                    let head = input.split_to(end + 4);
                    *self = if accepts_deflate(&head) {
                        State::Deflate(Box::new(Messages { inflater: None, compressed: false, count: 0 }))
                    } else {
                        State::Plain
                    };
                    output.extend_from_slice(&head);
                }
                State::Plain => {
                    output.extend_from_slice(&input.split());
                    return Ok(());
                }
                State::Deflate(messages) => {
                    if !messages.frame(input, output)? {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Whether a `101` head accepts permessage-deflate (what else it says of the
/// server's window does not matter to an inflater with the full window).
fn accepts_deflate(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let switching = lines.next().is_some_and(|status| status.split(' ').nth(1) == Some("101"));
    switching
        && lines.filter_map(|l| l.split_once(':')).any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                && value.split(',').any(|ext| ext.split(';').next().unwrap_or("").trim() == "permessage-deflate")
        })
}

impl Messages {
    /// Moves one whole frame from `input` to `output`, inflated when it is
    /// part of a compressed message; false when `input` holds no whole frame.
    fn frame(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<bool> {
        let Some((header, len)) = header_len(input) else { return Ok(false) };
        if len > MAX_MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a server frame of {len} bytes")));
        }
        if input.len() < header + len {
            input.reserve(header + len - input.len());
            return Ok(false);
        }
        let (first, opcode) = (input[0], input[0] & 0x0f);
        let masked = input[1] & 0x80 != 0;
        match opcode {
            1 | 2 => self.compressed = first & 0x40 != 0,
            0 => {}
            _ => {
                // A control frame: never compressed, and it may come between fragments.
                output.extend_from_slice(&input.split_to(header + len));
                return Ok(true);
            }
        }
        if !self.compressed || masked {
            // Uncompressed; or masked, which tungstenite refuses from a server anyway.
            output.extend_from_slice(&input.split_to(header + len));
            return Ok(true);
        }
        let fin = first & 0x80 != 0;
        input.advance(header);
        let payload = input.split_to(len);
        let mut inflated = Vec::with_capacity(len * 4);
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        inflate(inflater, &payload, &mut inflated)?;
        if fin {
            // RFC 7692 7.2.2: the tail the sender took off.
            inflate(inflater, &[0, 0, 0xff, 0xff], &mut inflated)?;
            self.count += 1;
        }
        if inflated.len() > MAX_MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a server message inflates past 64 MiB"));
        }
        output.extend_from_slice(&[first & !0x40]);
        match inflated.len() {
            n @ 0..=125 => output.extend_from_slice(&[n as u8]),
            n @ 126..=0xffff => {
                output.extend_from_slice(&[126]);
                output.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                output.extend_from_slice(&[127]);
                output.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        output.extend_from_slice(&inflated);
        Ok(true)
    }
}

/// A frame's header size and payload length, once its header is all there.
fn header_len(input: &[u8]) -> Option<(usize, usize)> {
    let second = *input.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (header, len) = match second & 0x7f {
        126 => (4, u16::from_be_bytes(input.get(2..4)?.try_into().ok()?) as u64),
        127 => (10, u64::from_be_bytes(input.get(2..10)?.try_into().ok()?)),
        n => (2, u64::from(n)),
    };
    (input.len() >= header + mask).then(|| (header + mask, usize::try_from(len).unwrap_or(usize::MAX)))
}

/// Inflates all of `input` (raw deflate) onto `out`.
fn inflate(inflater: &mut Decompress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let bad = |e: flate2::DecompressError| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut used = 0;
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(4096));
        }
        let before = inflater.total_in();
        let status = inflater.decompress_vec(&input[used..], out, FlushDecompress::Sync).map_err(bad)?;
        used += (inflater.total_in() - before) as usize;
        let room_left = out.capacity() > out.len();
        match status {
            Status::StreamEnd => return Ok(()),
            _ if used == input.len() && room_left => return Ok(()),
            _ if out.len() > MAX_MESSAGE => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a server message inflates past 64 MiB"));
            }
            _ => {}
        }
    }
}

impl<S: AsyncRead> AsyncRead for Inflating<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if matches!(this.state, State::Plain) && this.output.is_empty() && this.input.is_empty() {
            return this.inner.poll_read(cx, buf);
        }
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output.split_to(n));
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(this.inner.as_mut().poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The end: a frame left half-read is tungstenite's to report.
                this.output.extend_from_slice(&this.input.split());
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.state.advance(this.input, this.output)?;
        }
    }
}

impl<S: AsyncWrite> AsyncWrite for Inflating<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// An SSE body in gzip, inflated as its pieces arrive: the server flushes its
/// compressor after every event, so each piece completes the events it carries.
pub struct GzipStream(GzDecoder<Vec<u8>>);

impl Default for GzipStream {
    fn default() -> GzipStream {
        GzipStream::new()
    }
}

impl GzipStream {
    pub fn new() -> GzipStream {
        GzipStream(GzDecoder::new(Vec::new()))
    }

    /// Inflates `piece`; returns what it completes.
    pub fn feed(&mut self, piece: &[u8]) -> io::Result<&[u8]> {
        self.0.get_mut().clear();
        self.0.write_all(piece)?;
        // The decoder holds back what it inflated last until it is flushed.
        self.0.flush()?;
        Ok(self.0.get_ref())
    }
}

/// A whole gzip body, inflated.
pub fn gunzip(body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use tokio::io::AsyncReadExt;

    /// One message as a permessage-deflate server sends it: raw deflate,
    /// sync-flushed, the `00 00 ff ff` tail taken off.
    fn deflated(compressor: &mut Compress, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + 64);
        compressor.compress_vec(message, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: x\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";

    async fn read_all(wire: Vec<u8>, piece: usize) -> Vec<u8> {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            for part in wire.chunks(piece) {
                tokio::io::AsyncWriteExt::write_all(&mut server, part).await.unwrap();
            }
        });
        let mut inflating = Inflating::new(&mut client, true);
        let mut out = Vec::new();
        inflating.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn compressed_messages_become_plain_frames_whatever_the_read_sizes() {
        let text = br#"{"type":"message","channel":"c","seq":1,"data":{"k":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"}}"#;
        let big = text.repeat(40);
        // Context taken over from message to message, as Node's ws may: the
        // second copy is a back-reference into the first.
        let mut compressor = Compress::new(Compression::default(), false);
        let mut wire = HEAD.to_vec();
        wire.extend(frame(0x81 | 0x40, &deflated(&mut compressor, text)));
        wire.extend(frame(0x89, b"ping")); // a control frame passes as it is
        wire.extend(frame(0x81 | 0x40, &deflated(&mut compressor, text)));
        wire.extend(frame(0x82, b"\x81\xa1a\x01")); // an uncompressed message (RSV1 clear)
        // A compressed message in two fragments: RSV1 on the first only.
        let whole = deflated(&mut compressor, &big);
        let (a, b) = whole.split_at(whole.len() / 2);
        wire.extend(frame(0x01 | 0x40, a));
        wire.extend(frame(0x80, b));

        let mut expected = HEAD.to_vec();
        expected.extend(frame(0x81, text));
        expected.extend(frame(0x89, b"ping"));
        expected.extend(frame(0x81, text));
        expected.extend(frame(0x82, b"\x81\xa1a\x01"));
        for piece in [1, 7, 100, 1 << 16] {
            let out = read_all(wire.clone(), piece).await;
            assert_eq!(&out[..expected.len()], &expected[..], "read {piece} bytes at a time");
            // The fragments: their payloads, inflated, are the big message.
            let mut fragments = &out[expected.len()..];
            let mut message = Vec::new();
            while let Some((header, len)) = header_len(fragments) {
                assert_eq!(fragments[0] & 0x40, 0, "RSV1 cleared");
                message.extend_from_slice(&fragments[header..header + len]);
                fragments = &fragments[header + len..];
            }
            assert_eq!(message, big, "read {piece} bytes at a time");
        }
    }

    #[tokio::test]
    async fn without_the_extension_nothing_changes() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        let mut wire = head.clone();
        wire.extend(frame(0x81 | 0x40, b"left for tungstenite to refuse"));
        assert_eq!(read_all(wire.clone(), 5).await, wire);
        assert!(accepts_deflate(HEAD));
        assert!(!accepts_deflate(b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
        assert!(!accepts_deflate(b"HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: x-permessage-deflater\r\n\r\n"));
    }

    #[test]
    fn gzip_pieces_give_what_they_complete() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        let mut stream = GzipStream::new();
        let mut seen = Vec::new();
        for event in ["data: one\n\n", "data: two\n\n"] {
            let before = encoder.get_ref().len();
            encoder.write_all(event.as_bytes()).unwrap();
            encoder.flush().unwrap();
            let piece = encoder.get_ref()[before..].to_vec();
            // Each flushed piece yields its event at once, not with the next one.
            assert_eq!(stream.feed(&piece).unwrap(), event.as_bytes());
            seen.extend(piece);
        }
        let whole = encoder.finish().unwrap();
        assert_eq!(gunzip(&whole).unwrap(), b"data: one\n\ndata: two\n\n");
    }
}
