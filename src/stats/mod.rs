//! The server's counters, served by `/api/stats` and `/metrics`. Bytes are
//! counted at the socket by [`crate::wire`], so HTTP headers, chunked framing
//! and WebSocket frame headers are included.
//!
//! Everything here is a relaxed atomic that the code doing the work bumps:
//! delivering a message costs a few atomic adds, with no lock, allocation or
//! formatting. [`prometheus`] turns the values into Prometheus text only when
//! `/metrics` is scraped.

mod latency;
mod prometheus;

pub use latency::Latency;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::hub::{Hub, HubCounts};
use crate::transport_kind::Transport;

/// What a request (and the bytes its connection carries meanwhile) is
/// counted as: one of the transports, a publish, or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Stream(Transport),
    /// `POST /channels/{channel}/messages`.
    Publish,
    /// Pages, static files, stats, health.
    Other,
    /// The bytes of HTTP/2 connections, whose frames interleave requests of
    /// every kind (their requests are still counted per transport).
    Http2,
}

impl Traffic {
    /// In the order of their [`Traffic::index`].
    pub const ALL: [Traffic; 8] = [
        Traffic::Stream(Transport::WebSocket),
        Traffic::Stream(Transport::Sse),
        Traffic::Stream(Transport::LongPoll),
        Traffic::Stream(Transport::Poll),
        Traffic::Stream(Transport::WebTransport),
        Traffic::Publish,
        Traffic::Other,
        Traffic::Http2,
    ];

    /// Its key in `/api/stats` and label in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Traffic::Stream(transport) => transport.name(),
            Traffic::Publish => "publish",
            Traffic::Other => "other",
            Traffic::Http2 => "http2",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Traffic::Stream(transport) => transport.index(),
            Traffic::Publish => 5,
            Traffic::Other => 6,
            Traffic::Http2 => 7,
        }
    }

    pub fn from_index(i: usize) -> Traffic {
        Traffic::ALL.get(i).copied().unwrap_or(Traffic::Other)
    }
}

impl From<Transport> for Traffic {
    fn from(transport: Transport) -> Traffic {
        Traffic::Stream(transport)
    }
}

/// One transport's counters, as `/api/stats` shows them.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub requests: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub resets_delivered: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// What compressed payloads were before compression, and what they are
    /// on the wire: `bytes_sent_uncompressed` is `bytes_sent` with the one
    /// put back for the other (v1.2).
    pub compressed_from: AtomicU64,
    pub compressed_to: AtomicU64,
    pub empty_polls: AtomicU64,
    /// Connections cut for not keeping up: their queue overflowed, or a
    /// WebSocket send waited past `--write-timeout`.
    pub slow_disconnects: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct CountersSnapshot {
    pub connections_open: i64,
    pub connections_total: u64,
    pub requests: u64,
    pub messages_delivered: u64,
    pub resets_delivered: u64,
    pub bytes_sent: u64,
    /// What the same writes would have been without compression (v1.2).
    pub bytes_sent_uncompressed: u64,
    pub bytes_received: u64,
    pub empty_polls: u64,
    pub slow_disconnects: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a payload of `plain` bytes sent as `sent` compressed bytes.
    pub fn compressed(&self, plain: usize, sent: usize) {
        Counters::add(&self.compressed_from, plain as u64);
        Counters::add(&self.compressed_to, sent as u64);
    }

    pub fn bytes_sent_uncompressed(&self) -> u64 {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Read in the order they are bumped (to, then sent after the write):
        // a payload compressed and not yet written can only make it smaller.
        (get(&self.bytes_sent) + get(&self.compressed_from)).saturating_sub(get(&self.compressed_to))
    }

    fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_total: get(&self.connections_total),
            requests: get(&self.requests),
            messages_delivered: get(&self.messages_delivered),
            resets_delivered: get(&self.resets_delivered),
            bytes_sent: get(&self.bytes_sent),
            bytes_sent_uncompressed: self.bytes_sent_uncompressed(),
            bytes_received: get(&self.bytes_received),
            empty_polls: get(&self.empty_polls),
            slow_disconnects: get(&self.slow_disconnects),
        }
    }
}

/// Why a connection (or held request) ended: the `reason` label of
/// `pushwire_connections_closed_total`. WebSocket endings come from
/// [`crate::protocol::Disconnect`], which names one for each close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client said goodbye (WebSocket close), or a poll was answered.
    Normal,
    /// The connection closed or broke without a goodbye, or was cut at the socket.
    ClientGone,
    /// Its queue overflowed: it could not keep up with the stream.
    Slow,
    /// A WebSocket frame could not be handed over within `--write-timeout`.
    WriteTimeout,
    /// WebSocket pings went unanswered.
    NoPong,
    /// The access token reached its `exp`.
    TokenExpired,
    /// An operator cut it (the dashboard's "drop connections").
    Dropped,
    /// The server is shutting down.
    Shutdown,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// A WebSocket frame over `--max-frame`.
    TooBig,
    /// A WebSocket text frame that is not UTF-8.
    InvalidUtf8,
    /// A fragmented WebSocket message not finished within `--request-timeout`.
    Unfinished,
    /// The hub failed it.
    HubFailure,
}

impl Ending {
    pub const ALL: [Ending; 13] = [
        Ending::Normal,
        Ending::ClientGone,
        Ending::Slow,
        Ending::WriteTimeout,
        Ending::NoPong,
        Ending::TokenExpired,
        Ending::Dropped,
        Ending::Shutdown,
        Ending::ProtocolError,
        Ending::TooBig,
        Ending::InvalidUtf8,
        Ending::Unfinished,
        Ending::HubFailure,
    ];

    /// Its `reason` label, and its name in the connection's log line.
    pub fn name(self) -> &'static str {
        match self {
            Ending::Normal => "normal",
            Ending::ClientGone => "client_gone",
            Ending::Slow => "slow",
            Ending::WriteTimeout => "write_timeout",
            Ending::NoPong => "no_pong",
            Ending::TokenExpired => "token_expired",
            Ending::Dropped => "dropped",
            Ending::Shutdown => "shutdown",
            Ending::ProtocolError => "protocol_error",
            Ending::TooBig => "too_big",
            Ending::InvalidUtf8 => "invalid_utf8",
            Ending::Unfinished => "unfinished",
            Ending::HubFailure => "hub_failure",
        }
    }

    /// Whether the client was cut for not keeping up (`slow_disconnects`).
    pub fn is_slow(self) -> bool {
        matches!(self, Ending::Slow | Ending::WriteTimeout)
    }

    /// Whether `transport` can end this way: the series `/metrics` shows
    /// even at 0 (any other that happened is shown too).
    fn expected(self, transport: Transport) -> bool {
        use Ending::*;
        match transport {
            Transport::WebSocket | Transport::WebTransport => true,
            Transport::Sse => matches!(self, ClientGone | Slow | TokenExpired | Dropped | Shutdown),
            Transport::LongPoll => {
                matches!(self, Normal | ClientGone | TokenExpired | Dropped | Shutdown | HubFailure)
            }
            Transport::Poll => matches!(self, Normal | ClientGone | HubFailure),
        }
    }
}

/// What a limit or an access rule refused or cut: the `kind` label of
/// `pushwire_limit_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `--max-connections`: a connection answered 503 and closed.
    Connections,
    /// `--max-connections-per-ip`: a connection answered 429 and closed.
    ConnectionsPerIp,
    /// `--publish-rate`: a publish answered 429 (or a WebSocket `error` frame).
    PublishRate,
    /// `--request-timeout`: a request head or body, or a fragmented WebSocket
    /// message, that did not arrive in time.
    RequestTimeout,
    /// `--write-timeout`: a connection cut for not reading (at the socket, or
    /// by its WebSocket session).
    WriteTimeout,
    /// A request head over 16 KiB: answered 431 and closed.
    HeadersTooLarge,
    /// `--max-channels`: a channel list, or a connection's channels, over the limit.
    Channels,
    /// A WebSocket `ref` that is not a string or number of at most 128 bytes.
    Ref,
    /// A WebSocket upgrade, POST or preflight from an origin not allowed.
    Origin,
    /// A missing or invalid access token.
    Unauthorized,
    /// A token that does not allow the channel or the dashboard control.
    Forbidden,
    /// An HTTP/2 connection told to go away for resetting streams faster
    /// than it let them be answered.
    Http2Resets,
}

impl Rejection {
    pub const ALL: [Rejection; 12] = [
        Rejection::Connections,
        Rejection::ConnectionsPerIp,
        Rejection::PublishRate,
        Rejection::RequestTimeout,
        Rejection::WriteTimeout,
        Rejection::HeadersTooLarge,
        Rejection::Channels,
        Rejection::Ref,
        Rejection::Origin,
        Rejection::Unauthorized,
        Rejection::Forbidden,
        Rejection::Http2Resets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rejection::Connections => "connections",
            Rejection::ConnectionsPerIp => "connections_per_ip",
            Rejection::PublishRate => "publish_rate",
            Rejection::RequestTimeout => "request_timeout",
            Rejection::WriteTimeout => "write_timeout",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::Channels => "channels",
            Rejection::Ref => "ref",
            Rejection::Origin => "origin",
            Rejection::Unauthorized => "unauthorized",
            Rejection::Forbidden => "forbidden",
            Rejection::Http2Resets => "http2_resets",
        }
    }
}

/// All counters of one server. Shared as `Arc<Stats>`.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    transports: [Counters; Traffic::ALL.len()],
    /// Per transport, per [`Ending`].
    closed: [[AtomicU64; Ending::ALL.len()]; Transport::ALL.len()],
    /// Per transport: publish-to-write latency of delivered messages.
    latency: [Latency; Transport::ALL.len()],
    rejections: [AtomicU64; Rejection::ALL.len()],
    /// Publishes and history reads through the server's hub ([`crate::hub::Counted`]).
    hub: std::sync::Arc<HubCounts>,
    exposition: prometheus::Exposition,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            transports: Default::default(),
            closed: Default::default(),
            latency: Default::default(),
            rejections: Default::default(),
            hub: Default::default(),
            exposition: prometheus::Exposition::new(),
        }
    }
}

impl Stats {
    pub fn get(&self, traffic: impl Into<Traffic>) -> &Counters {
        &self.transports[traffic.into().index()]
    }

    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn snapshot(&self) -> Vec<(Traffic, CountersSnapshot)> {
        Traffic::ALL.iter().map(|&t| (t, self.get(t).snapshot())).collect()
    }

    /// Counts a connection (or held request) opened; [`Stats::closed`] counts its end.
    pub fn opened(&self, transport: Transport) {
        let counters = self.get(transport);
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        Counters::add(&counters.connections_total, 1);
    }

    pub fn closed(&self, transport: Transport, ending: Ending) {
        self.get(transport).connections_open.fetch_sub(1, Ordering::Relaxed);
        Counters::add(&self.closed[transport.index()][ending as usize], 1);
        if ending.is_slow() {
            Counters::add(&self.get(transport).slow_disconnects, 1);
        }
    }

    /// Counts a message handed to the socket (or put in a poll answer) at
    /// `now`, published at `ts` (both microseconds since the epoch).
    pub fn delivered(&self, transport: Transport, ts: u64, now: u64) {
        Counters::add(&self.get(transport).messages_delivered, 1);
        self.latency[transport.index()].record(now.saturating_sub(ts));
    }

    pub fn rejected(&self, rejection: Rejection) {
        Counters::add(&self.rejections[rejection as usize], 1);
    }

    /// The counts a [`crate::hub::Counted`] hub keeps for this server.
    pub fn hub_counts(&self) -> std::sync::Arc<HubCounts> {
        self.hub.clone()
    }

    /// Prometheus text exposition of every counter, the hub's included.
    pub fn prometheus(&self, hub: &dyn Hub) -> String {
        self.exposition.render(self, hub)
    }
}
