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

use crate::wire::{give_back_buffer, lend_buffer, poll_read_into};

/// What the peer sent, with fragmented messages put back together.
#[derive(Debug)]
pub enum Incoming {
    Text(ByteString),
    Binary,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("a frame or message over the size limit")]
    Overflow,
    #[error("a text message that is not UTF-8")]
    InvalidUtf8,
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
    /// A fragmented message being put together: whether it is text, its parts.
    partial: Option<(bool, BytesMut)>,
    max_message: usize,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsSocket<T> {
    /// A socket whose peer may send frames and messages of up to `max_size`
    /// bytes; `leftover` is what was read past the handshake.
    pub fn new(io: T, leftover: BytesMut, max_size: usize) -> WsSocket<T> {
        let read = if leftover.is_empty() { BytesMut::new() } else { BytesMut::from(&leftover[..]) };
        WsSocket {
            io,
            codec: Codec::new().max_size(max_size),
            read,
            write: BytesMut::new(),
            partial: None,
            max_message: max_size,
        }
    }

    /// The next message from the peer; `None` once its side is closed.
    /// Cancel-safe: what was read stays in the socket for the next call.
    pub async fn recv(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            if !self.read.is_empty() {
                match self.codec.decode(&mut self.read) {
                    Ok(Some(frame)) => {
                        if self.read.is_empty() {
                            self.read = BytesMut::new();
                        }
                        match self.assemble(frame) {
                            Ok(Some(incoming)) => return Some(Ok(incoming)),
                            Ok(None) => continue,
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    Ok(None) => {}
                    Err(ProtocolError::Overflow) => return Some(Err(ReadError::Overflow)),
                    Err(ProtocolError::Io(e)) => return Some(Err(ReadError::Io(e))),
                    Err(e) => return Some(Err(ReadError::Protocol(e))),
                }
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(ReadError::Io(e))),
            }
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_read_into(&mut self.io, cx, &mut self.read)
    }

    /// A whole message from a frame, or `None` while a fragmented one is
    /// still being put together.
    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, ReadError> {
        let (part, last) = match frame {
            Frame::Text(bytes) => return text(bytes).map(Some),
            Frame::Binary(_) => return Ok(Some(Incoming::Binary)),
            Frame::Ping(payload) => return Ok(Some(Incoming::Ping(payload))),
            Frame::Pong(_) => return Ok(Some(Incoming::Pong)),
            Frame::Close(_) => return Ok(Some(Incoming::Close)),
            Frame::Continuation(Item::FirstText(part)) => {
                self.partial = Some((true, BytesMut::new()));
                (part, false)
            }
            Frame::Continuation(Item::FirstBinary(part)) => {
                self.partial = Some((false, BytesMut::new()));
                (part, false)
            }
            Frame::Continuation(Item::Continue(part)) => (part, false),
            Frame::Continuation(Item::Last(part)) => (part, true),
        };
        // The codec checks that continuations follow a first part.
        let (_, whole) = self.partial.get_or_insert_with(|| (false, BytesMut::new()));
        if whole.len() + part.len() > self.max_message {
            return Err(ReadError::Overflow);
        }
        whole.extend_from_slice(&part);
        if !last {
            return Ok(None);
        }
        let (is_text, whole) = self.partial.take().unwrap_or_default();
        if is_text { text(whole.freeze()).map(Some) } else { Ok(Some(Incoming::Binary)) }
    }

    /// Queues a text frame; [`WsSocket::flush`] writes it.
    pub fn queue_text(&mut self, text: &str) {
        Parser::write_message(self.write_buffer(), text.as_bytes(), OpCode::Text, true, false);
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.write.len()
    }

    pub fn queue_ping(&mut self) {
        Parser::write_message(self.write_buffer(), b"", OpCode::Ping, true, false);
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
        let _ = tokio::time::timeout(grace, async {
            self.flush().await?;
            std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await?;
            while let Some(Ok(incoming)) = self.recv().await {
                if matches!(incoming, Incoming::Close) {
                    break;
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
    }
}

fn text(bytes: Bytes) -> Result<Incoming, ReadError> {
    ByteString::try_from(bytes).map(Incoming::Text).map_err(|_| ReadError::InvalidUtf8)
}
