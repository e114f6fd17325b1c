//! `--stall K[:DURATION]`: stuck consumers. K of each transport's clients
//! stop reading their socket for DURATION, from a quarter into the publish
//! stream, as a phone in a tunnel or a frozen tab would; then they read
//! again. A server that bounds its queues cuts them meanwhile (API.md: queue
//! full, WebSocket close 1013, SSE stream ended with a comment) and they
//! resume from their cursor like any client that lost its connection. Poll
//! clients stall by not asking, which the server does not see: it holds
//! nothing for them between requests.
//!
//! What it shows: whether the stalled clients were cut and got everything
//! back, and whether the others' latency stayed bounded meanwhile.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::sleep;

use super::lane::{Judged, Latencies, Latency, Tally};
use pushwire::config::positive_duration;

/// One transport's stalled clients, apart from the others.
#[derive(Debug, Serialize)]
pub struct StallRow {
    pub clients: usize,
    /// Stalled clients whose connection ended at least once, as they saw it: cut.
    pub cut: usize,
    /// Connections the stalled clients lost, all told (each resumed from its cursor).
    pub reconnects: u64,
    /// Connections the other clients lost: none unless the server cut them too.
    pub healthy_reconnects: u64,
    /// The stalled clients' part of the transport's `missing` and `duplicates`.
    pub missing: u64,
    pub duplicates: u64,
    /// Publish → receive of the clients that read all along.
    pub healthy_latency_us: Latency,
    /// Publish → receive of the stalled clients, their stall included.
    pub stalled_latency_us: Latency,
    #[serde(skip)]
    pub healthy: Histogram<u64>,
    #[serde(skip)]
    pub stalled: Histogram<u64>,
}

/// Stalled clients per transport, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub clients: usize,
    pub duration: Duration,
}

/// How long a stall lasts when `--stall` names none.
const DEFAULT: Duration = Duration::from_secs(10);

/// Parses `K[:DURATION]` (`50`, `50:20s`).
pub fn parse(s: &str) -> Result<Stall, String> {
    let (clients, duration) = match s.split_once(':') {
        Some((clients, duration)) => (clients, positive_duration(duration)?),
        None => (s, DEFAULT),
    };
    let clients = clients.trim().parse().map_err(|_| format!("expected K[:DURATION], such as 50:10s, not '{s}'"))?;
    Ok(Stall { clients, duration })
}

impl Stall {
    /// Whether client `index` of `per_lane` is one of the stalled: `clients`
    /// of them, spread evenly over the connection order.
    pub fn picks(&self, index: usize, per_lane: usize) -> bool {
        (index + 1) * self.clients / per_lane > index * self.clients / per_lane
    }

    /// When the stall starts, after the first publish.
    pub fn start(publishing: Duration) -> Duration {
        publishing / 4
    }

    /// How far the stall reaches past the end of publishing, which the drain must add.
    pub fn overhang(&self, publishing: Duration) -> Duration {
        (Stall::start(publishing) + self.duration).saturating_sub(publishing)
    }

    /// Turns `signal` on (stalled clients read nothing) at the stall's start
    /// and off at its end, counted from now, the first publish.
    pub fn drive(&self, signal: watch::Sender<bool>, publishing: Duration) -> JoinHandle<()> {
        let (start, duration) = (Stall::start(publishing), self.duration);
        tokio::spawn(async move {
            sleep(start).await;
            let _ = signal.send(true);
            sleep(duration).await;
            let _ = signal.send(false);
        })
    }

    pub fn parameters(&self, publishing: Duration) -> StallParameters {
        StallParameters {
            clients: self.clients,
            duration_s: self.duration.as_secs_f64(),
            start_s: Stall::start(publishing).as_secs_f64(),
        }
    }
}

/// `--stall` in the report's parameters.
#[derive(Debug, Serialize)]
pub struct StallParameters {
    /// Stalled clients per transport.
    pub clients: usize,
    pub duration_s: f64,
    /// Seconds after the first publish.
    pub start_s: f64,
}

/// How a transport's `clients` stalled clients fared, from their tallies,
/// and the others' latency meanwhile.
pub fn row(clients: usize, latencies: &Latencies, tallies: &[Tally], published: &[u64]) -> StallRow {
    let (stalled, healthy): (Vec<&Tally>, Vec<&Tally>) = tallies.iter().partition(|t| t.stalled);
    let mut judged = Judged::default();
    for tally in &stalled {
        judged += tally.judge(published);
    }
    StallRow {
        clients,
        cut: stalled.iter().filter(|t| t.reconnects > 0).count(),
        reconnects: stalled.iter().map(|t| t.reconnects).sum(),
        healthy_reconnects: healthy.iter().map(|t| t.reconnects).sum(),
        missing: judged.missing,
        duplicates: judged.duplicates,
        healthy_latency_us: Latency::of(&latencies.healthy),
        stalled_latency_us: Latency::of(&latencies.stalled),
        healthy: latencies.healthy.clone(),
        stalled: latencies.stalled.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_a_count_and_an_optional_duration() {
        assert_eq!(parse("50"), Ok(Stall { clients: 50, duration: DEFAULT }));
        assert_eq!(parse("3:2s"), Ok(Stall { clients: 3, duration: Duration::from_secs(2) }));
        assert!(parse("x:2s").unwrap_err().contains("K[:DURATION]"));
        assert!(parse("3:0s").is_err() && parse("3:soon").is_err());
    }

    #[test]
    fn the_stalled_are_spread_over_the_clients() {
        let picked = |k, n| (0..n).filter(|&i| Stall { clients: k, duration: DEFAULT }.picks(i, n)).collect::<Vec<_>>();
        assert_eq!(picked(2, 10), [4, 9]);
        assert_eq!(picked(50, 1000).len(), 50);
        assert_eq!(picked(3, 3), [0, 1, 2]);
        assert!(picked(0, 5).is_empty());
    }

    #[test]
    fn the_drain_covers_a_stall_that_outlasts_publishing() {
        let stall = Stall { clients: 1, duration: Duration::from_secs(10) };
        assert_eq!(stall.overhang(Duration::from_secs(40)), Duration::ZERO);
        assert_eq!(stall.overhang(Duration::from_secs(8)), Duration::from_secs(4));
    }
}
