//! What the bench counts: per transport (a [`Lane`], shared by its clients
//! while they run) and per client (a [`Tally`] of the seqs it received,
//! judged against the published seqs once publishing is over).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

use pushwire_client::{Meter, Transport};

pub use pushwire_client::Judged;

/// One transport's clients, counted together.
#[derive(Debug)]
pub struct Lane {
    pub transport: Transport,
    /// Why the server cannot be measured on this transport (it does not
    /// offer it): no client runs, the row says so.
    pub unavailable: Option<String>,
    /// Every byte of every socket these clients opened.
    pub meter: Arc<Meter>,
    pub requests: AtomicU64,
    /// Poll answers without a message.
    pub empty_polls: AtomicU64,
    /// Message frames received (duplicates included).
    pub deliveries: AtomicU64,
    pub resets: AtomicU64,
    /// Connections lost while the run went on (each was resumed from its cursor).
    pub reconnects: AtomicU64,
    /// Requests answered with an error status, or failed on the wire, and
    /// frames or answers that did not read.
    pub errors: AtomicU64,
    /// The first of those errors, in words.
    first_error: Mutex<Option<String>>,
    /// Answers that came compressed: WebSocket upgrades that accepted
    /// permessage-deflate, SSE streams and poll answers in gzip.
    pub compressed: AtomicU64,
    /// WebSocket messages that came compressed (RSV1).
    pub compressed_messages: AtomicU64,
    /// Publish → receive, in µs: of the clients that read all along, and of
    /// those that stalled (`--stall`).
    latency: Mutex<Latencies>,
}

/// Publish → receive of a lane's healthy and stalled clients.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub healthy: Histogram<u64>,
    pub stalled: Histogram<u64>,
}

impl Latencies {
    /// Every client's.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = self.healthy.clone();
        // unwrap: both have the same bounds, so every value fits.
        all.add(&self.stalled).unwrap();
        all
    }
}

impl Lane {
    pub fn new(transport: Transport) -> Lane {
        Lane {
            transport,
            unavailable: None,
            meter: Arc::default(),
            requests: AtomicU64::new(0),
            empty_polls: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            compressed: AtomicU64::new(0),
            compressed_messages: AtomicU64::new(0),
            latency: Mutex::new(Latencies { healthy: histogram(), stalled: histogram() }),
        }
    }

    /// A lane of a transport the server does not offer, and why.
    pub fn unavailable(transport: Transport, why: String) -> Lane {
        Lane { unavailable: Some(why), ..Lane::new(transport) }
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error, and keeps the first one's words.
    pub fn failed(&self, why: String) {
        Lane::count(&self.errors);
        self.first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A message frame arrived at a client (one that `stalled`, or not):
    /// `received − ts` is recorded.
    pub fn delivered(&self, stalled: bool, ts: u64) {
        let latency = now_micros().saturating_sub(ts);
        Lane::count(&self.deliveries);
        let mut latencies = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = if stalled { &mut latencies.stalled } else { &mut latencies.healthy };
        histogram.saturating_record(latency);
    }

    pub fn latency(&self) -> Latencies {
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A histogram of µs from 1 µs to an hour, 3 significant figures. Record
/// with `saturating_record`, which clamps to these bounds (it does not
/// resize, as `record` would: `Histogram::new`'s bounds are tiny).
pub fn histogram() -> Histogram<u64> {
    // unwrap: valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

/// Microseconds since the Unix epoch, the unit of a message's `ts`.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What one client received (its seqs, tallied by `pushwire_client`), and how it went.
#[derive(Debug, Clone)]
pub struct Tally {
    pub seqs: pushwire_client::Tally,
    /// Whether the client connected at all.
    pub connected: bool,
    /// Whether it is one of the clients that stall (`--stall`).
    pub stalled: bool,
    /// Connections it lost while the run went on.
    pub reconnects: u64,
}

impl Tally {
    /// A client that received nothing from the run's first seq `base` on.
    pub fn new(base: u64) -> Tally {
        Tally { seqs: pushwire_client::Tally::new(base), connected: false, stalled: false, reconnects: 0 }
    }

    /// This client's account of the `published` seqs.
    pub fn judge(&self, published: &[u64]) -> Judged {
        self.seqs.judge(published)
    }
}

/// Publish → receive, in µs.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}
