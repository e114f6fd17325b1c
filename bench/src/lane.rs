//! What the bench counts: per transport (a [`Lane`], shared by its clients
//! while they run) and per client (a [`Tally`] of the seqs it received,
//! judged against the published seqs once publishing is over).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::net::Meter;
use pushwire::Transport;

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

    /// A message frame arrived at client `tally`: its seq is tallied and
    /// `received − ts` recorded.
    pub fn delivered(&self, tally: &mut Tally, seq: u64, ts: u64) {
        let latency = now_micros().saturating_sub(ts);
        tally.record(seq);
        Lane::count(&self.deliveries);
        let mut latencies = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = if tally.stalled { &mut latencies.stalled } else { &mut latencies.healthy };
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

/// The seqs one client received, from the run's first seq (`base`) on.
#[derive(Debug, Clone)]
pub struct Tally {
    base: u64,
    /// Times each seq `base + i` arrived (saturating).
    counts: Vec<u8>,
    /// The highest seq received, `base − 1` before any.
    pub last: u64,
    /// Whether the client connected at all.
    pub connected: bool,
    /// Whether it is one of the clients that stall (`--stall`).
    pub stalled: bool,
    /// Connections it lost while the run went on.
    pub reconnects: u64,
}

impl Tally {
    pub fn new(base: u64) -> Tally {
        Tally {
            base,
            counts: Vec::new(),
            last: base.saturating_sub(1),
            connected: false,
            stalled: false,
            reconnects: 0,
        }
    }

    pub fn record(&mut self, seq: u64) {
        self.last = self.last.max(seq);
        let Some(i) = seq.checked_sub(self.base) else { return }; // history from before the run
        let i = i as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    /// This client's account of the `published` seqs (others, such as a
    /// foreign publisher's, are left out).
    pub fn judge(&self, published: &[u64]) -> Judged {
        let mut judged = Judged::default();
        for &seq in published {
            let count = seq.checked_sub(self.base).and_then(|i| self.counts.get(i as usize)).copied().unwrap_or(0);
            judged.deliveries += u64::from(count);
            judged.missing += u64::from(count == 0);
            judged.duplicates += u64::from(count.saturating_sub(1));
        }
        judged
    }
}

/// Published messages received (copies included), never received, and received again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub deliveries: u64,
    pub missing: u64,
    pub duplicates: u64,
}

impl std::ops::AddAssign for Judged {
    fn add_assign(&mut self, other: Judged) {
        self.deliveries += other.deliveries;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_tells_missing_and_duplicate_seqs_of_the_published_ones() {
        let mut tally = Tally::new(11);
        assert_eq!(tally.last, 10);
        for seq in [3, 11, 12, 12, 14, 14, 14, 20] {
            tally.record(seq);
        }
        assert_eq!(tally.last, 20);
        // 13 and 15 missing; 12 once extra, 14 twice; 20 was not ours; 3 predates the run.
        assert_eq!(tally.judge(&[11, 12, 13, 14, 15]), Judged { deliveries: 6, missing: 2, duplicates: 3 });
        assert_eq!(Tally::new(1).judge(&[1, 2]), Judged { deliveries: 0, missing: 2, duplicates: 0 });
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
