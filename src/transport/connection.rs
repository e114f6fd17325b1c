//! A connection's life as an operator sees it, the same for every transport:
//! counted open while it lasts, then counted closed by why it ended, with one
//! log line (WebSocket and SSE sessions, held long polls). It ends when the
//! [`Connection`] drops, so a client that vanishes (its stream or held request
//! dropped mid-way) is still counted and logged, as `client_gone`.

use std::sync::Arc;
use std::time::Instant;

use super::Transport;
use crate::stats::{Ending, Stats};
use crate::wire::Mark;

/// Where the end-of-connection lines go, so that `RUST_LOG` can tune them
/// apart from the rest (`RUST_LOG=info,pushwire::connections=warn`).
pub const LOG_TARGET: &str = "pushwire::connections";

pub struct Connection {
    stats: Arc<Stats>,
    transport: Transport,
    started: Instant,
    channels: usize,
    messages: u64,
    ending: Option<Ending>,
    /// The WebSocket close code sent, if one was.
    code: Option<u16>,
    /// The connection's byte totals when the request was routed.
    wire: Option<Mark>,
    /// The request's span (route, client address, request id), which the
    /// log line belongs to even when the end comes from outside it.
    span: tracing::Span,
}

impl Connection {
    pub fn open(stats: &Arc<Stats>, transport: Transport, channels: usize, wire: Option<Mark>) -> Connection {
        stats.opened(transport);
        Connection {
            stats: stats.clone(),
            transport,
            started: Instant::now(),
            channels,
            messages: 0,
            ending: None,
            code: None,
            wire,
            span: tracing::Span::current(),
        }
    }

    /// Messages this connection delivered, for its log line (the server's
    /// counters are kept by [`Stats::delivered`]).
    pub fn delivered(&mut self, messages: usize) {
        self.messages += messages as u64;
    }

    pub fn set_channels(&mut self, channels: usize) {
        self.channels = channels;
    }

    /// Why it ends; the first reason given stands.
    pub fn end(&mut self, ending: Ending) {
        self.ending.get_or_insert(ending);
    }

    /// A WebSocket session ends with this close code and reason.
    pub fn close(&mut self, code: u16, ending: Ending) {
        self.code.get_or_insert(code);
        self.end(ending);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let ending = self.ending.unwrap_or(Ending::ClientGone);
        self.stats.closed(self.transport, ending);
        if self.transport == Transport::Poll {
            return; // an answer at once: the request log is enough
        }
        let (sent, received) = self.wire.as_ref().map(Mark::since).unzip();
        // Milliseconds are precision enough, and read better than nanoseconds.
        let duration_secs = self.started.elapsed().as_millis() as f64 / 1000.0;
        macro_rules! closed {
            ($level:expr) => {
                tracing::event!(
                    target: LOG_TARGET,
                    parent: &self.span,
                    $level,
                    transport = self.transport.name(),
                    channels = self.channels,
                    reason = ending.name(),
                    code = self.code,
                    duration_secs,
                    messages = self.messages,
                    bytes_sent = sent,
                    bytes_received = received,
                    "connection closed"
                )
            };
        }
        // A long poll answered as usual is one request of many a second per
        // client: a line each would drown the log (and cost more than the
        // poll). How one ended otherwise is worth a line.
        if self.transport == Transport::LongPoll && ending == Ending::Normal {
            closed!(tracing::Level::DEBUG);
        } else {
            closed!(tracing::Level::INFO);
        }
    }
}
