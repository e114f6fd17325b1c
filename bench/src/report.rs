//! What a run found: one row per transport, the run's parameters, and the
//! server's CPU and memory when they could be read. Printed as a table,
//! written as JSON (`--json`); `chart` draws it (`--svg`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::lane::Latency;
use super::stall::{StallParameters, StallRow};
use super::stats::Moved;
use pushwire_client::{Compression, Encoding};

#[derive(Debug, Serialize)]
pub struct Report {
    /// The server's URL; in-process servers are marked so.
    pub server: String,
    pub in_process: bool,
    pub parameters: Parameters,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_seconds: f64,
    /// Connections publishing took to keep the rate.
    pub publish_connections: usize,
    /// From when each publish was due to its answer.
    pub publish_delay_us: Latency,
    /// Bytes of the publishing connections, both directions.
    pub publish_wire_bytes: u64,
    /// Bytes of the one `GET /poll` that found the channel's head (a server
    /// counts it as short-polling traffic; the `poll` row does not hold it).
    pub setup_wire_bytes: u64,
    pub transports: Vec<TransportRow>,
    pub server_usage: Option<ServerUsage>,
    /// CPU time of the bench itself over the same window (driving a server
    /// elsewhere; in-process it is part of `server_usage`).
    pub bench_cpu_seconds: Option<f64>,
    /// Caveats that apply to this run's figures.
    pub notes: Vec<String>,
}

/// Several runs, one per combination of `--compression` and `--encoding`.
#[derive(Debug, Serialize)]
pub struct Matrix {
    pub runs: Vec<Report>,
}

#[derive(Debug, Serialize)]
pub struct Parameters {
    pub transports: Vec<&'static str>,
    pub clients: usize,
    pub rate: f64,
    /// Bytes of each published body.
    pub payload: usize,
    /// `repetitive`, `random` or `file:PATH`.
    pub payload_kind: String,
    /// Whether clients asked for compression (what they got is per transport).
    pub compression: Compression,
    pub encoding: Encoding,
    pub duration_s: f64,
    pub poll_interval_s: f64,
    pub channel: String,
    /// `--stall`, when given.
    pub stall: Option<StallParameters>,
}

#[derive(Debug, Serialize)]
pub struct TransportRow {
    pub transport: &'static str,
    /// Why this transport could not be measured: the server does not offer
    /// it (WebTransport on the Node reference, or switched off). Its counts are 0.
    pub unavailable: Option<String>,
    pub clients: usize,
    /// Clients that connected (and, for the streams, were subscribed).
    pub connected: usize,
    pub published: u64,
    /// Published messages received, summed over clients (copies included):
    /// `clients × published` when nothing is missing or doubled.
    pub deliveries: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub resets: u64,
    pub reconnects: u64,
    pub errors: u64,
    /// The first error, in words.
    pub first_error: Option<String>,
    /// Answers that came compressed: WebSocket upgrades that accepted
    /// permessage-deflate, SSE streams and poll answers in gzip.
    pub compressed: u64,
    /// WebSocket messages that came compressed (a server leaves small ones plain).
    pub compressed_messages: Option<u64>,
    pub latency_us: Latency,
    /// Bytes these clients' sockets wrote and read: requests, responses,
    /// heads, chunk framing, handshakes and frame headers included.
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    pub wire_bytes_per_delivery: Option<f64>,
    /// HTTP requests answered, the WebSocket upgrade included (a long poll
    /// still held when the run ends is not).
    pub requests: u64,
    pub requests_per_delivery: Option<f64>,
    pub empty_polls: u64,
    /// Connections the server cut for not keeping up (`/api/stats`
    /// `slow_disconnects` over the run), when the server tells.
    pub server_slow_disconnects: Option<u64>,
    /// What the server sent this transport's connections over the run, on
    /// the wire and as it would have been uncompressed (`/api/stats`
    /// `bytes_sent` and `bytes_sent_uncompressed`), when it tells.
    pub server_bytes_sent: Option<u64>,
    pub server_bytes_sent_uncompressed: Option<u64>,
    pub server_bytes_sent_per_delivery: Option<f64>,
    pub server_bytes_sent_uncompressed_per_delivery: Option<f64>,
    /// Server CPU time per delivery, in µs, when this transport ran alone
    /// (the server's CPU time is not split by transport).
    pub server_cpu_us_per_delivery: Option<f64>,
    /// How the stalled clients fared, and the others meanwhile (`--stall`).
    pub stall: Option<StallRow>,
    /// Every client's latency (`latency_us`).
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl TransportRow {
    /// What the server counted for this transport over the run, and its CPU
    /// time when this transport ran alone.
    pub fn server_counts(&mut self, moved: Moved, cpu_seconds: Option<f64>) {
        self.server_slow_disconnects = moved.slow_disconnects;
        self.server_bytes_sent = moved.bytes_sent;
        self.server_bytes_sent_uncompressed = moved.bytes_sent_uncompressed;
        self.server_bytes_sent_per_delivery = moved.bytes_sent.and_then(|b| per_delivery(b, self.deliveries));
        self.server_bytes_sent_uncompressed_per_delivery =
            moved.bytes_sent_uncompressed.and_then(|b| per_delivery(b, self.deliveries));
        self.server_cpu_us_per_delivery =
            cpu_seconds.and_then(|cpu| per_delivery(1, self.deliveries).map(|d| d * cpu * 1e6));
    }
}

/// The server's CPU and memory over the run.
#[derive(Debug, Serialize)]
pub struct ServerUsage {
    /// Which process was measured.
    pub scope: String,
    /// CPU time (user + system) from the first publish to the end of the drain.
    pub cpu_seconds: f64,
    /// The same, in user space and in the kernel.
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub wall_seconds: f64,
    pub connections: usize,
    pub rss_before_bytes: u64,
    /// Once every client is connected, before the first publish.
    pub rss_connected_bytes: u64,
    pub rss_peak_bytes: u64,
    /// `(connected − before) / connections`: what an idle connection costs.
    pub rss_per_connection_bytes: f64,
    /// Deliveries of every transport together, and the CPU time they took.
    pub deliveries: u64,
    pub deliveries_per_cpu_second: Option<f64>,
    pub cpu_us_per_delivery: Option<f64>,
}

impl ServerUsage {
    /// With the run's deliveries and what each cost.
    pub fn with_deliveries(self, deliveries: u64) -> ServerUsage {
        let cpu = self.cpu_seconds;
        ServerUsage {
            deliveries,
            deliveries_per_cpu_second: (cpu > 0.0).then(|| deliveries as f64 / cpu),
            cpu_us_per_delivery: per_delivery(1, deliveries).map(|d| d * cpu * 1e6),
            ..self
        }
    }
}

/// `n / deliveries`, when there were any.
pub fn per_delivery(n: u64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| n as f64 / deliveries as f64)
}

impl Report {
    /// The comparison table, with the run's parameters above it and the
    /// server's usage and notes below.
    pub fn table(&self) -> String {
        let p = &self.parameters;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pushwire bench: {}{} · {} clients per transport · {} msg/s × {} B ({}) for {} s · channel {}",
            self.server,
            if self.in_process { " (in-process)" } else { "" },
            p.clients,
            p.rate,
            p.payload,
            p.payload_kind,
            p.duration_s,
            p.channel
        );
        let _ = writeln!(out, "compression {}, encoding {}", p.compression.name(), p.encoding.name());
        let _ = writeln!(
            out,
            "published {} in {:.1} s ({:.0} msg/s, {} errors, {} connections); due → answered: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            self.published,
            self.publish_seconds,
            self.published as f64 / self.publish_seconds.max(f64::EPSILON),
            self.publish_errors,
            self.publish_connections,
            self.publish_delay_us.p50 as f64 / 1000.0,
            self.publish_delay_us.p99 as f64 / 1000.0,
            self.publish_delay_us.max as f64 / 1000.0,
        );
        let header = [
            "transport",
            "clients",
            "deliveries",
            "missing",
            "dup",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "bytes/deliv",
            "sent/deliv",
            "raw/deliv",
            "compressed",
            "cpu µs/deliv",
            "req/deliv",
            "empty polls",
        ];
        let ratio = |r: Option<f64>, decimals: usize| r.map_or("-".into(), |r| format!("{r:.decimals$}"));
        let rows: Vec<Vec<String>> = self
            .transports
            .iter()
            .map(|t| {
                if t.unavailable.is_some() {
                    let mut cells = vec![t.transport.to_string(), "n/a".to_string()];
                    cells.resize(header.len(), "-".to_string());
                    return cells;
                }
                vec![
                    t.transport.to_string(),
                    format!("{}/{}", t.connected, t.clients),
                    t.deliveries.to_string(),
                    t.missing.to_string(),
                    t.duplicates.to_string(),
                    ms(t.latency_us.p50),
                    ms(t.latency_us.p90),
                    ms(t.latency_us.p99),
                    ms(t.latency_us.p999),
                    ms(t.latency_us.max),
                    ratio(t.wire_bytes_per_delivery, 1),
                    ratio(t.server_bytes_sent_per_delivery, 1),
                    ratio(t.server_bytes_sent_uncompressed_per_delivery, 1),
                    match t.compressed_messages {
                        Some(messages) => format!("{}+{messages}m", t.compressed),
                        None => t.compressed.to_string(),
                    },
                    ratio(t.server_cpu_us_per_delivery, 2),
                    ratio(t.requests_per_delivery, 4),
                    t.empty_polls.to_string(),
                ]
            })
            .collect();
        out.push_str(&align(&header, &rows));
        if let Some(stall) = &p.stall {
            out.push_str(&self.stall_table(stall));
        }
        let _ = writeln!(
            out,
            "bytes/deliv: counted on the bench's sockets, both ways; sent/ and raw/deliv: the server's /api/stats, \
             sent on the wire and before compression; compressed: answers in gzip or deflate (+m: WebSocket messages)"
        );
        for t in &self.transports {
            if let Some(why) = &t.unavailable {
                let _ = writeln!(out, "{}: n/a: {why}", t.transport);
            }
        }
        for t in self.transports.iter().filter(|t| t.resets + t.reconnects + t.errors > 0) {
            let _ = writeln!(
                out,
                "{}: {} resets, {} reconnects, {} failed requests{}",
                t.transport,
                t.resets,
                t.reconnects,
                t.errors,
                t.first_error.as_deref().map_or(String::new(), |e| format!("; the first: {e}"))
            );
        }
        if let Some(u) = &self.server_usage {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let _ = writeln!(
                out,
                "\nserver ({}):\n  {:.2} s CPU ({:.2} user + {:.2} kernel) over {:.1} s ({:.0}% of one core); RSS {:.1} MiB before, {:.1} MiB with {} connections ({:.1} KiB each), {:.1} MiB peak",
                u.scope,
                u.cpu_seconds,
                u.user_seconds,
                u.system_seconds,
                u.wall_seconds,
                100.0 * u.cpu_seconds / u.wall_seconds.max(f64::EPSILON),
                mib(u.rss_before_bytes),
                mib(u.rss_connected_bytes),
                u.connections,
                u.rss_per_connection_bytes / 1024.0,
                mib(u.rss_peak_bytes),
            );
            if let (Some(us), Some(rate)) = (u.cpu_us_per_delivery, u.deliveries_per_cpu_second) {
                let _ = writeln!(
                    out,
                    "  {us:.2} µs CPU per delivery, {rate:.0} deliveries per CPU-second ({} deliveries, every transport)",
                    u.deliveries
                );
            }
        }
        if let Some(cpu) = self.bench_cpu_seconds {
            let _ = writeln!(out, "bench (its clients and publisher): {cpu:.2} s CPU over the same time");
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

impl Report {
    /// The stalled clients of each transport, and the others' latency meanwhile.
    fn stall_table(&self, stall: &StallParameters) -> String {
        let mut out = format!(
            "\nstalled: {} of {} clients per transport read nothing for {} s from {} s into the publish stream\n",
            stall.clients, self.parameters.clients, stall.duration_s, stall.start_s
        );
        type Cell = fn(&TransportRow, &StallRow) -> String;
        let columns: [(&str, Cell); 12] = [
            ("transport", |t, _| t.transport.to_string()),
            ("stalled", |_, s| s.clients.to_string()),
            ("cut", |_, s| s.cut.to_string()),
            ("reconnects", |_, s| s.reconnects.to_string()),
            ("server cuts", |t, _| t.server_slow_disconnects.map_or("-".into(), |n| n.to_string())),
            ("missing", |_, s| s.missing.to_string()),
            ("dup", |_, s| s.duplicates.to_string()),
            ("others p50", |_, s| ms(s.healthy_latency_us.p50)),
            ("others p99", |_, s| ms(s.healthy_latency_us.p99)),
            ("others max", |_, s| ms(s.healthy_latency_us.max)),
            ("stalled p99", |_, s| ms(s.stalled_latency_us.p99)),
            ("stalled max", |_, s| ms(s.stalled_latency_us.max)),
        ];
        let header = columns.map(|(name, _)| name);
        let rows: Vec<Vec<String>> = self
            .transports
            .iter()
            .filter_map(|t| Some((t, t.stall.as_ref()?)))
            .map(|(t, s)| columns.iter().map(|(_, cell)| cell(t, s)).collect())
            .collect();
        out.push_str(&align(&header, &rows));
        out
    }
}

/// µs as ms, two decimals.
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// Columns padded to their widest cell: the first left-aligned, the rest right.
fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let _ = match i {
                0 => write!(out, "{cell:<width$}"),
                _ => write!(out, "  {cell:>width$}"),
            };
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let table =
            align(&["transport", "n"], &[vec!["ws".into(), "12345".into()], vec!["long-poll".into(), "7".into()]]);
        assert_eq!(table, "transport      n\nws         12345\nlong-poll      7\n");
        assert_eq!(per_delivery(5, 0), None);
        assert_eq!(per_delivery(5, 2), Some(2.5));
    }
}
