//! WebTransport sessions (API.md v1.2): the WebSocket session
//! (`websocket::serve`) over one bidirectional QUIC stream that the server
//! opens, each frame a JSON object followed by `\n`, or one MessagePack map
//! after another. QUIC keeps the connection alive, so the session sends no
//! pings; a close is WebTransport's CLOSE_WEBTRANSPORT_SESSION capsule, with
//! the WebSocket close code as its application error code and the same
//! reason, which a browser reads from `WebTransport.closed`. Bytes are
//! counted as QUIC sees them on the
//! wire: the UDP payloads of the session's connection, encrypted, with
//! headers and acknowledgements.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ws::CloseReason;
use bytes::{Buf, BytesMut};
use bytestring::ByteString;
use tokio::io::AsyncWrite;
use web_transport_quinn::{RecvStream, SendStream, Session};

use super::Transport;
use super::websocket::{Carrier, Incoming, ReadError};
use crate::encoding::Format;
use crate::lab::inspect::Inspected;
use crate::stats::{Counters, Stats};
use crate::wire::{give_back_buffer, lend_buffer, poll_read_into};

/// Marks a request made from a WebTransport session request (`server::quic`):
/// only such a request can become a WebTransport session.
#[derive(Debug, Clone, Copy)]
pub struct OverQuic;

/// Carried on the answer to a session request the network lab blocks: the
/// listener leaves it unanswered, as a firewall that drops UDP would.
#[derive(Debug, Clone, Copy)]
pub struct Unanswered;

/// The server-opened stream of one session, with its connection.
pub struct WtStream {
    session: Session,
    send: SendStream,
    recv: RecvStream,
    format: Format,
    /// Bytes read but not yet a whole frame; empty (unallocated) when idle.
    read: BytesMut,
    /// Frames queued but not yet written; empty (unallocated) once written.
    write: BytesMut,
    max_frame: usize,
    stats: Arc<Stats>,
    /// The dashboard page's lane, when the session is tagged (`client=`).
    lane: Option<Arc<Inspected>>,
    /// The connection's UDP byte totals already counted.
    counted: (u64, u64),
}

/// A request's extended CONNECT as it was received (pseudo-headers first),
/// for the teaching panel.
#[derive(Debug, Clone)]
pub struct ConnectHead(pub String);

impl WtStream {
    pub fn new(
        session: Session,
        (send, recv): (SendStream, RecvStream),
        format: Format,
        max_frame: usize,
        stats: Arc<Stats>,
        lane: Option<Arc<Inspected>>,
    ) -> WtStream {
        let mut stream = WtStream {
            session,
            send,
            recv,
            format,
            read: BytesMut::new(),
            write: BytesMut::new(),
            max_frame,
            stats,
            lane,
            counted: (0, 0),
        };
        stream.count();
        stream
    }

    /// Counts what the connection has sent and received since last counted.
    fn count(&mut self) {
        let quic = web_transport_quinn::quinn::Connection::stats(&self.session);
        let (sent, received) = (quic.udp_tx.bytes, quic.udp_rx.bytes);
        let (new_sent, new_received) = (sent.saturating_sub(self.counted.0), received.saturating_sub(self.counted.1));
        let counters = self.stats.get(Transport::WebTransport);
        Counters::add(&counters.bytes_sent, new_sent);
        Counters::add(&counters.bytes_received, new_received);
        if let Some(page) = &self.lane {
            let lane = page.lane(Transport::WebTransport);
            Counters::add(&lane.bytes_sent, new_sent);
            Counters::add(&lane.bytes_received, new_received);
        }
        self.counted = (sent, received);
    }

    /// A whole frame off the front of what was read, if there is one.
    fn frame(&mut self) -> Option<Result<Incoming, ReadError>> {
        let len = match self.format {
            Format::Json => match self.read.iter().position(|&b| b == b'\n') {
                Some(end) => end + 1,
                None if self.read.len() > self.max_frame => return Some(Err(ReadError::Overflow)),
                None => return None,
            },
            Format::MsgPack => match msgpack_len(&self.read) {
                Ok(Some(len)) => len,
                Ok(None) if self.read.len() > self.max_frame => return Some(Err(ReadError::Overflow)),
                Ok(None) => return None,
                Err(()) => return Some(Err(ReadError::Malformed)),
            },
        };
        if len > self.max_frame + 1 {
            return Some(Err(ReadError::Overflow));
        }
        let frame = self.read.split_to(len).freeze();
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        Some(Ok(match self.format {
            Format::Json => match ByteString::try_from(frame.slice(..len - 1)) {
                Ok(text) => Incoming::Text(text),
                Err(_) => return Some(Err(ReadError::InvalidUtf8)),
            },
            Format::MsgPack => Incoming::Binary(frame),
        }))
    }
}

/// The length of the MessagePack value at the front of `bytes`: `None`
/// while it is incomplete, `Err` when it cannot be one.
fn msgpack_len(bytes: &[u8]) -> Result<Option<usize>, ()> {
    let mut reader = rmp_serde::Deserializer::new(io::Cursor::new(bytes));
    reader.set_max_depth(128);
    match serde::de::IgnoredAny::deserialize(&mut reader) {
        Ok(_) => Ok(Some(reader.position() as usize)),
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e) | rmp_serde::decode::Error::InvalidDataRead(e))
            if e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            Ok(None)
        }
        Err(_) => Err(()),
    }
}

use serde::Deserialize as _;

impl Carrier for WtStream {
    const PINGS: bool = false;

    fn queue_data(&mut self, payload: &[u8], _binary: bool, _compressed: bool) -> usize {
        if self.write.capacity() == 0 {
            self.write = lend_buffer();
        }
        let start = self.write.len();
        self.write.extend_from_slice(payload);
        if self.format == Format::Json {
            self.write.extend_from_slice(b"\n");
        }
        if let Some(page) = &self.lane {
            page.lane(Transport::WebTransport).keep_response(&self.write[start..]);
        }
        payload.len() + usize::from(self.format == Format::Json)
    }

    fn queued(&self) -> usize {
        self.write.len()
    }

    /// QUIC keeps the connection alive: no pings.
    fn queue_ping(&mut self, _: &[u8]) {}

    fn queue_pong(&mut self, _: &[u8]) {}

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.write.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.send).poll_write(cx, &self.write))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write.advance(n);
        }
        give_back_buffer(std::mem::take(&mut self.write));
        self.count();
        Poll::Ready(Ok(()))
    }

    async fn recv(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            if let Some(frame) = self.frame() {
                return Some(frame);
            }
            match std::future::poll_fn(|cx| poll_read_into(&mut self.recv, cx, &mut self.read)).await {
                Ok(0) => return None,
                Ok(_) => self.count(),
                Err(e) => return Some(Err(ReadError::Io(e))),
            }
        }
    }

    /// What is queued is written (a QUIC close discards unsent stream
    /// data), then the session closes with the code and reason: the capsule
    /// on the CONNECT stream, and the connection once the peer has read it
    /// (web-transport-quinn waits up to three round trips for that).
    async fn close(mut self, reason: Option<CloseReason>, grace: Duration) {
        let _ = tokio::time::timeout(grace, async {
            std::future::poll_fn(|cx| self.poll_flush(cx)).await?;
            self.send.finish().map_err(io::Error::other)?;
            self.send.stopped().await.map_err(io::Error::other)
        })
        .await;
        self.count();
        let (code, text) = match reason {
            Some(CloseReason { code, description }) => (u16::from(code), description.unwrap_or_default()),
            None => (1000, String::new()),
        };
        self.session.close(u32::from(code), text.as_bytes());
        let _ = tokio::time::timeout(grace, self.session.closed()).await;
        self.count();
    }
}
