//! Per-transport counters, served by `/api/stats` and `/metrics`. Bytes are
//! counted at the socket by [`crate::wire`], so HTTP headers, chunked framing
//! and WebSocket frame headers are included.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::transport::Transport;

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
    pub const ALL: [Traffic; 7] = [
        Traffic::Stream(Transport::WebSocket),
        Traffic::Stream(Transport::Sse),
        Traffic::Stream(Transport::LongPoll),
        Traffic::Stream(Transport::Poll),
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
            Traffic::Publish => 4,
            Traffic::Other => 5,
            Traffic::Http2 => 6,
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

/// One transport's counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub requests: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub resets_delivered: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub empty_polls: AtomicU64,
    /// Connections cut because their queue overflowed.
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
    pub bytes_received: u64,
    pub empty_polls: u64,
    pub slow_disconnects: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
            bytes_received: get(&self.bytes_received),
            empty_polls: get(&self.empty_polls),
            slow_disconnects: get(&self.slow_disconnects),
        }
    }
}

/// All counters of the process. Shared as `Arc<Stats>`.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    transports: [Counters; 7],
}

impl Default for Stats {
    fn default() -> Self {
        Stats { started: Instant::now(), transports: Default::default() }
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

    /// Counts an open connection (or held request) until the guard drops.
    pub fn open(self: &Arc<Self>, transport: Transport) -> OpenGuard {
        let counters = self.get(transport);
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        Counters::add(&counters.connections_total, 1);
        OpenGuard { stats: self.clone(), transport }
    }

    /// Prometheus text exposition of the counters.
    pub fn prometheus(&self, hub_ready: bool) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(4096);
        let metrics: [Metric; 9] = [
            ("connections_open", "gauge", "Open connections (held requests for polls).", |s| s.connections_open.into()),
            ("connections_total", "counter", "Connections (held requests) accepted.", |s| s.connections_total.into()),
            ("requests_total", "counter", "HTTP requests.", |s| s.requests.into()),
            ("messages_delivered_total", "counter", "Messages delivered to clients.", |s| s.messages_delivered.into()),
            ("resets_delivered_total", "counter", "Reset events delivered to clients.", |s| s.resets_delivered.into()),
            ("bytes_sent_total", "counter", "Bytes written to sockets, headers and framing included.", |s| {
                s.bytes_sent.into()
            }),
            ("bytes_received_total", "counter", "Bytes read from sockets, headers and framing included.", |s| {
                s.bytes_received.into()
            }),
            ("empty_polls_total", "counter", "Poll answers that carried no message.", |s| s.empty_polls.into()),
            ("slow_disconnects_total", "counter", "Connections cut for not keeping up.", |s| s.slow_disconnects.into()),
        ];
        let snapshot = self.snapshot();
        for (name, kind, help, value) in metrics {
            let _ = writeln!(out, "# HELP pushwire_{name} {help}\n# TYPE pushwire_{name} {kind}");
            for (traffic, s) in &snapshot {
                let _ = writeln!(out, "pushwire_{name}{{transport=\"{}\"}} {}", traffic.name(), value(s));
            }
        }
        let _ =
            writeln!(out, "# HELP pushwire_hub_ready Whether the hub is reachable.\n# TYPE pushwire_hub_ready gauge");
        let _ = writeln!(out, "pushwire_hub_ready {}", u8::from(hub_ready));
        out
    }
}

/// A Prometheus metric: name, type, help, and how to read it from a snapshot.
type Metric = (&'static str, &'static str, &'static str, fn(&CountersSnapshot) -> i128);

/// Decrements a transport's open-connection gauge when dropped.
#[derive(Debug)]
pub struct OpenGuard {
    stats: Arc<Stats>,
    transport: Transport,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.get(self.transport).connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}
