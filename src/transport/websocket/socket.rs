//! WebSocket frames over a bare socket, with buffers that exist only while
//! they hold bytes.
//!
//! Why not actix-ws: under it, an upgraded connection keeps actix-http's
//! HTTP/1 dispatcher with its 8 KiB read and 8 KiB write buffers for life,
//! plus a session channel in front of them, which made an idle WebSocket cost
//! ~18 KiB and every delivery two queue hops (docs/benchmarks.md). Here a
//! session owns its socket: reads go through a buffer on the worker's stack
//! and only a frame still incomplete is kept on the heap; writes are encoded
//! straight from the message's JSON into one buffer, written with one call
//! however many frames it holds, and released once written. The frame format
//! is actix-http's own WebSocket codec, the one actix-ws uses.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Decoder;
use actix_http::ws::{CloseReason, Codec, Frame, Item, OpCode, Parser, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Sleep, sleep};

use crate::encoding::deflate::{self, InflateError};
use crate::wire::{give_back_buffer, lend_buffer, poll_read_into};

/// What the peer sent, with fragmented messages put back together.
#[derive(Debug)]
pub enum Incoming {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("a frame or message over the size limit")]
    Overflow,
    #[error("a text message that is not UTF-8")]
    InvalidUtf8,
    #[error("a fragmented message not finished in time")]
    Unfinished,
    #[error("a compressed message that does not inflate")]
    Inflate,
    /// A WebTransport stream whose bytes are not frames of its encoding.
    #[error("bytes that are not a frame")]
    Malformed,
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// The connection broke: nobody is left to tell.
    #[error("connection lost: {0}")]
    Io(io::Error),
}

/// One side of a WebSocket connection, server role.
pub struct WsSocket<T> {
    io: T,
    codec: Codec,
    /// Bytes read but not yet a whole frame; empty (unallocated) when idle.
    read: BytesMut,
    /// Frames encoded but not yet written; empty (unallocated) once written.
    write: BytesMut,
    /// A fragmented message being put together; boxed, as most sessions never see one.
    partial: Option<Box<Partial>>,
    max_message: usize,
    /// How long a fragmented message may take, from its first fragment.
    message_timeout: Duration,
    /// permessage-deflate was negotiated: a message's first frame may carry RSV1.
    deflate: bool,
    /// What the frame at the front of `read` was found to be.
    front: Front,
}

/// The frame at the front of the read buffer, as far as RSV1 goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    /// Not looked at yet.
    Unseen,
    Plain,
    /// RSV1 was set, and cleared for the codec (which refuses reserved bits):
    /// its message is compressed.
    Compressed,
}

/// A fragmented message being put together.
struct Partial {
    text: bool,
    compressed: bool,
    whole: BytesMut,
    /// When it must be whole: fragments of a message that never ends are not
    /// kept past it, however alive the peer otherwise looks.
    deadline: Pin<Box<Sleep>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsSocket<T> {
    /// A socket whose peer may send frames and messages of up to `max_size`
    /// bytes, a fragmented message within `message_timeout`; `leftover` is
    /// what was read past the handshake.
    pub fn new(io: T, leftover: BytesMut, max_size: usize, message_timeout: Duration, deflate: bool) -> WsSocket<T> {
        let read = if leftover.is_empty() { BytesMut::new() } else { BytesMut::from(&leftover[..]) };
        WsSocket {
            io,
            codec: Codec::new().max_size(max_size),
            read,
            write: BytesMut::new(),
            partial: None,
            max_message: max_size,
            message_timeout,
            deflate,
            front: Front::Unseen,
        }
    }

    /// The next message from the peer; `None` once its side is closed.
    /// Cancel-safe: what was read stays in the socket for the next call.
    pub async fn recv(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            let (frame, compressed) = match self.next_frame().await? {
                Ok(frame) => frame,
                Err(e) => return Some(Err(e)),
            };
            match self.assemble(frame, compressed) {
                Ok(Some(incoming)) => return Some(Ok(incoming)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next frame as the peer sent it, and whether its message is
    /// compressed; `None` once its side is closed.
    async fn next_frame(&mut self) -> Option<Result<(Frame, bool), ReadError>> {
        loop {
            if !self.read.is_empty() {
                self.look_at_front();
                match self.codec.decode(&mut self.read) {
                    Ok(Some(frame)) => {
                        if self.read.is_empty() {
                            self.read = BytesMut::new();
                        }
                        let compressed = std::mem::replace(&mut self.front, Front::Unseen) == Front::Compressed;
                        return Some(Ok((frame, compressed)));
                    }
                    Ok(None) => {}
                    Err(ProtocolError::Overflow) => return Some(Err(ReadError::Overflow)),
                    // Decoding reads no socket: every error is the peer's, even
                    // the `Io` actix-http reports reserved (RSV) bits set with.
                    Err(e) => return Some(Err(ReadError::Protocol(e))),
                }
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// RFC 7692: RSV1 on a data frame's first byte marks its message
    /// compressed. actix-http's codec refuses any reserved bit, so the bit
    /// is noted and cleared before the codec reads the frame; on any other
    /// frame, or without deflate, it is left for the codec to refuse (1002).
    fn look_at_front(&mut self) {
        if self.front != Front::Unseen {
            return;
        }
        let first = self.read[0];
        // Only a message's first frame may carry it: not a continuation
        // (opcode 0) nor a control frame (opcodes 8 and up).
        let opcode = first & 0x0f;
        let starts_message = opcode == 0x1 || opcode == 0x2;
        self.front = if self.deflate && starts_message && first & 0x40 != 0 {
            self.read[0] = first & !0x40;
            Front::Compressed
        } else {
            Front::Plain
        };
    }

    /// Reads more; while a fragmented message is unfinished, only until its deadline.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, ReadError>> {
        if let Some(partial) = &mut self.partial
            && partial.deadline.as_mut().poll(cx).is_ready()
        {
            self.partial = None;
            return Poll::Ready(Err(ReadError::Unfinished));
        }
        poll_read_into(&mut self.io, cx, &mut self.read).map_err(ReadError::Io)
    }

    /// A whole message from a frame, or `None` while a fragmented one is
    /// still being put together.
    fn assemble(&mut self, frame: Frame, compressed: bool) -> Result<Option<Incoming>, ReadError> {
        let (part, last) = match frame {
            Frame::Text(bytes) => return text(self.inflated(bytes, compressed)?).map(Some),
            Frame::Binary(bytes) => return Ok(Some(Incoming::Binary(self.inflated(bytes, compressed)?))),
            Frame::Ping(payload) => return Ok(Some(Incoming::Ping(payload))),
            Frame::Pong(payload) => return Ok(Some(Incoming::Pong(payload))),
            Frame::Close(_) => return Ok(Some(Incoming::Close)),
            Frame::Continuation(Item::FirstText(part)) => (self.start(true, compressed, part), false),
            Frame::Continuation(Item::FirstBinary(part)) => (self.start(false, compressed, part), false),
            Frame::Continuation(Item::Continue(part)) => (part, false),
            Frame::Continuation(Item::Last(part)) => (part, true),
        };
        // The codec checks that continuations follow a first part; none is
        // kept of a message already given up on.
        let Some(partial) = &mut self.partial else { return Ok(None) };
        if partial.whole.len() + part.len() > self.max_message {
            return Err(ReadError::Overflow);
        }
        partial.whole.extend_from_slice(&part);
        if !last {
            return Ok(None);
        }
        // unwrap: matched as `Some` above.
        let Partial { text: is_text, compressed, whole, .. } = *self.partial.take().unwrap();
        let whole = self.inflated(whole.freeze(), compressed)?;
        if is_text { text(whole).map(Some) } else { Ok(Some(Incoming::Binary(whole))) }
    }

    /// Starts a fragmented message; its first part is returned to be added.
    fn start(&mut self, text: bool, compressed: bool, first: Bytes) -> Bytes {
        let deadline = Box::pin(sleep(self.message_timeout));
        self.partial = Some(Box::new(Partial { text, compressed, whole: BytesMut::new(), deadline }));
        first
    }

    /// A message's payload, inflated when it came compressed: its inflated
    /// size is held to the same limit as a frame's.
    fn inflated(&self, payload: Bytes, compressed: bool) -> Result<Bytes, ReadError> {
        if !compressed {
            return Ok(payload);
        }
        match deflate::inflate(&payload, self.max_message) {
            Ok(plain) => Ok(Bytes::from(plain)),
            Err(InflateError::TooBig) => Err(ReadError::Overflow),
            Err(InflateError::Invalid) => Err(ReadError::Inflate),
        }
    }

    /// Queues a data frame (binary or text) whose payload is compressed with
    /// permessage-deflate when `compressed`; returns the frame's length.
    pub fn queue_data(&mut self, payload: &[u8], binary: bool, compressed: bool) -> usize {
        let op = if binary { OpCode::Binary } else { OpCode::Text };
        let buffer = self.write_buffer();
        let start = buffer.len();
        Parser::write_message(&mut *buffer, payload, op, true, false);
        if compressed {
            // RSV1, which actix-http's writer has no parameter for.
            buffer[start] |= 0x40;
        }
        buffer.len() - start
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.write.len()
    }

    pub fn queue_ping(&mut self, payload: &[u8]) {
        Parser::write_message(self.write_buffer(), payload, OpCode::Ping, true, false);
    }

    pub fn queue_pong(&mut self, payload: &[u8]) {
        Parser::write_message(self.write_buffer(), payload, OpCode::Pong, true, false);
    }

    /// The buffer frames are queued in: the thread's spare when nothing is queued.
    fn write_buffer(&mut self) -> &mut BytesMut {
        if self.write.capacity() == 0 {
            self.write = lend_buffer();
        }
        &mut self.write
    }

    /// Writes everything queued, in as few calls as the socket allows.
    /// Cancel-safe: what is not written yet stays queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.write.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.write))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n == self.write.len() {
                self.write.clear(); // its room stays whole for reuse
            } else {
                self.write.advance(n);
            }
        }
        // Written: the buffer goes back to the thread for the next writer.
        give_back_buffer(std::mem::take(&mut self.write));
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Closes as RFC 6455 asks: the close frame, then the end of our side,
    /// then what the peer still sends is read (up to its close frame or its
    /// end) so that unread bytes do not turn the close into a reset that could
    /// destroy the close frame on its way. All within `grace`.
    pub async fn close(mut self, reason: Option<CloseReason>, grace: Duration) {
        Parser::write_close(&mut self.write, reason, false);
        // What the peer sends now is only read past, not put together.
        self.partial = None;
        let _ = tokio::time::timeout(grace, async {
            self.flush().await?;
            std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await?;
            while let Some(Ok((frame, _))) = self.next_frame().await {
                if matches!(frame, Frame::Close(_)) {
                    break;
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
    }
}

/// The length of a server frame (unmasked) with a payload of `payload` bytes.
pub fn frame_len(payload: usize) -> usize {
    let header = match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    header + payload
}

impl<T: AsyncRead + AsyncWrite + Unpin> super::Carrier for WsSocket<T> {
    const PINGS: bool = true;

    fn queue_data(&mut self, payload: &[u8], binary: bool, compressed: bool) -> usize {
        WsSocket::queue_data(self, payload, binary, compressed)
    }

    fn queued(&self) -> usize {
        WsSocket::queued(self)
    }

    fn queue_ping(&mut self, payload: &[u8]) {
        WsSocket::queue_ping(self, payload);
    }

    fn queue_pong(&mut self, payload: &[u8]) {
        WsSocket::queue_pong(self, payload);
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        WsSocket::poll_flush(self, cx)
    }

    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, ReadError>>> {
        WsSocket::recv(self)
    }

    fn close(self, reason: Option<CloseReason>, grace: Duration) -> impl Future<Output = ()> {
        WsSocket::close(self, reason, grace)
    }
}

fn text(bytes: Bytes) -> Result<Incoming, ReadError> {
    ByteString::try_from(bytes).map(Incoming::Text).map_err(|_| ReadError::InvalidUtf8)
}
