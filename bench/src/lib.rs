//! `pushwire bench` (the `pushwire-bench` binary): the transports side by side, against one publish
//! stream, in one run. Without `--url` a server is started in this process
//! (embedded hub, free port); with it, any server that speaks API.md is
//! driven (a remote pushwire, the Node reference).
//!
//! A run: read the channel's head (`GET /poll` without a cursor); connect
//! `--clients` subscribers per transport, all starting from that position;
//! publish `--rate` messages a second of `--payload` bytes for `--duration`
//! over HTTP; let clients drain; judge every client's seqs against the seqs
//! the publishes were answered with. Latency is the client's receive time
//! minus the message's `ts` (the server's publish time), so it needs the two
//! clocks to agree: true on one machine, a caveat otherwise. Bytes are counted
//! on the clients' own sockets (`net`), and read from the server's
//! `/api/stats` (sent, and sent before compression). `--compression` and
//! `--encoding` lists make one run per combination, one after the other.
//!
//! The clients are `pushwire-client`'s (`client/`): its counted sockets and
//! keep-alive HTTP connections, its followers (one loop per transport), its
//! WebTransport discovery and shared QUIC endpoints (a server without
//! WebTransport, the Node reference, leaves its row `n/a`), its compression
//! and encoding negotiation.
//!
//! - `clients`: the run's followers, counted into their lanes.
//! - `publish`: the publish stream; `payload`: what each message carries.
//! - `stats`: the server's `/api/stats` over a run.
//! - `lane`: per-transport counters and per-client seq tallies.
//! - `stall`: `--stall`, consumers that stop reading for a while.
//! - `probe`: server CPU and memory from `/proc`.
//! - `report` and `chart`: the table, the JSON and the SVG.

mod chart;
mod clients;
mod lane;
mod payload;
mod probe;
mod publish;
mod report;
mod stall;
mod stats;

/// Reads a server's CPU time and memory from `/proc` (also for `examples/churn.rs`).
pub use probe::Probe;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use clients::{Ready, Shared, Stop};
use lane::Latency;
use lane::{Judged, Lane, Tally};
use payload::PayloadKind;
use probe::Usage;
use publish::Plan;
use pushwire::config::{Config, at_least_one, positive_duration};
use pushwire::hub::MemoryHub;
use pushwire::message::ChannelName;
use pushwire::server::Running;
use pushwire_client::{Compression, Encoding, HttpClient, Meter, PER_ENDPOINT, Quic, Target, Transport, Variant};
use report::{Matrix, Parameters, Report, TransportRow, per_delivery};
use stall::Stall;
use stats::ServerStats;

/// Measures the transports side by side: latency, completeness, bytes
/// on the wire and requests per delivered message, and the server's CPU and
/// memory. Server flags given before `bench` configure the in-process server.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server to drive (http://host:port); without it one is started in this process on a free port.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Transports to measure, comma-separated: ws, sse, long-poll, poll, webtransport.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = transport, default_value = "ws,sse,long-poll,poll")]
    pub transports: Vec<Transport>,

    /// Subscribers per transport.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = at_least_one)]
    pub clients: usize,

    /// Messages published per second.
    #[arg(long, value_name = "MSG_PER_S", default_value_t = 10.0, value_parser = rate)]
    pub rate: f64,

    /// Size of each published JSON body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(..=1024 * 1024))]
    pub payload: u32,

    /// What the bodies hold: `repetitive` (a notification batch: the same keys, similar values),
    /// `random` (incompressible base64 in a string), or a JSON file, sent as it is.
    #[arg(long, value_name = "repetitive|random|FILE", default_value = "repetitive", value_parser = payload::parse)]
    pub payload_kind: PayloadKind,

    /// Clients ask for compression as browsers do: WebSocket offers permessage-deflate, HTTP sends
    /// `Accept-Encoding: gzip`. `on,off` makes a run of each.
    #[arg(long, value_name = "on|off", value_enum, value_delimiter = ',', default_value = "on")]
    pub compression: Vec<Compression>,

    /// `msgpack`: WebSocket asks for the subprotocol pushwire.msgpack, polls for
    /// application/msgpack; SSE, text only, is left out. `json,msgpack` makes a run of each.
    #[arg(long, value_name = "json|msgpack", value_enum, value_delimiter = ',', default_value = "json")]
    pub encoding: Vec<Encoding>,

    /// How long to publish (e.g. 10s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,

    /// Interval between a short-polling client's requests.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = positive_duration)]
    pub poll_interval: Duration,

    /// Channel to publish on and subscribe to.
    #[arg(long, value_name = "NAME", default_value = "bench")]
    pub channel: ChannelName,

    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Draw latency percentiles and bytes per delivery as SVG to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// K of each transport's clients stop reading for DURATION (default 10s), from a quarter into
    /// the publish stream, then read again and resume when cut (poll clients stall by not asking).
    #[arg(long, value_name = "K[:DURATION]", value_parser = stall::parse)]
    pub stall: Option<Stall>,

    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Process id of the server, to report its CPU time and memory (read from /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Access token (JWT) sent as `Authorization: Bearer` on every request.
    #[arg(long, value_name = "JWT", env = "PUSHWIRE_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a flag, an unreachable or non-conforming server (exit code 2).
    #[error("{0}")]
    Input(String),
    /// The run itself failed (exit code 1).
    #[error("{0}")]
    Failed(String),
}

/// Connections being opened at once: more would overflow listen backlogs
/// (Node's is 511) and time the rest out in SYN retries.
const CONNECTING_AT_ONCE: usize = 200;

/// Runs the bench (once per combination of `--compression` and
/// `--encoding`), prints the tables, writes the files; one line on stderr and
/// exit code 2 for bad input.
pub async fn main(args: BenchArgs, server: Config) -> ExitCode {
    let variants = Variant::all(&args.compression, &args.encoding);
    let result = match &variants[..] {
        [variant] => match run(&args, server, *variant).await {
            Ok(report) => {
                // The table first: a file that cannot be written loses nothing.
                print!("{}", report.table());
                write(&args, &report)
            }
            Err(e) => Err(e),
        },
        _ => matrix(&args, server, &variants).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                Error::Input(_) => 2,
                Error::Failed(_) => 1,
            })
        }
    }
}

/// A `--transports` entry, as `pushwire-client` reads it.
fn transport(s: &str) -> Result<Transport, String> {
    s.trim().parse()
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 100_000.0 => Ok(r),
        Ok(_) => Err("must be more than 0 and at most 100000".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn write(args: &BenchArgs, report: &Report) -> Result<(), Error> {
    write_json(args, report)?;
    if let Some(path) = &args.svg {
        chart::write(report, path).map_err(Error::Failed)?;
    }
    Ok(())
}

fn write_json(args: &BenchArgs, report: &impl serde::Serialize) -> Result<(), Error> {
    if let Some(path) = &args.json {
        // unwrap: the report holds no map with non-string keys, nor a non-finite float.
        let json = serde_json::to_string_pretty(report).unwrap();
        std::fs::write(path, json + "\n")
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// One run per variant, one after the other, on the same server (or each on
/// a fresh one in this process); one JSON with every run, one chart of bytes
/// per delivery across them.
async fn matrix(args: &BenchArgs, server: Config, variants: &[Variant]) -> Result<(), Error> {
    let mut runs = Vec::with_capacity(variants.len());
    for (i, variant) in variants.iter().enumerate() {
        println!("{}== {} ({} of {})", if i == 0 { "" } else { "\n" }, variant.label(), i + 1, variants.len());
        let report = run(args, server.clone(), *variant).await?;
        print!("{}", report.table());
        runs.push(report);
    }
    let matrix = Matrix { runs };
    write_json(args, &matrix)?;
    if let Some(path) = &args.svg {
        chart::write_matrix(&matrix, path).map_err(Error::Failed)?;
    }
    Ok(())
}

async fn run(args: &BenchArgs, server: Config, variant: Variant) -> Result<Report, Error> {
    let asked = unique(&args.transports);
    let transports: Vec<Transport> = asked.iter().copied().filter(|&t| variant.encoding.carries(t)).collect();
    if transports.is_empty() {
        let why = "SSE has no MessagePack encoding (API.md): ask for another transport, or --encoding json";
        return Err(Error::Input(why.into()));
    }
    let connections = args.clients * transports.len();
    for path in [&args.json, &args.svg].into_iter().flatten() {
        writable(path)?;
    }
    if let Some(stall) = args.stall.filter(|s| s.clients > args.clients) {
        let why = format!("--stall {}: more stalled clients than --clients {}", stall.clients, args.clients);
        return Err(Error::Input(why));
    }
    let files = raise_open_file_limit();
    // In-process, each TCP connection is two descriptors: the client's and the server's.
    // WebTransport sessions share a UDP socket per `PER_ENDPOINT`, on either side one.
    let quic_sessions = if transports.contains(&Transport::WebTransport) { args.clients } else { 0 };
    let tcp = connections - quic_sessions;
    let needed = tcp * if args.url.is_some() { 1 } else { 2 } + quic_sessions.div_ceil(PER_ENDPOINT) + 256;
    if needed > files {
        let why = format!("{connections} connections need about {needed} open files here; the limit is {files}");
        return Err(Error::Input(why));
    }
    let (url, local) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_string(), None),
        None => {
            let local = start_server(server)?;
            (format!("http://{}", local.addr), Some(local))
        }
    };
    let target = Arc::new(
        Target::resolve(&url, args.token.as_deref(), connections)
            .await
            .map_err(|e| Error::Input(format!("--url {e}")))?,
    );
    let probe = match (args.server_pid, &local) {
        (Some(pid), _) => Some(Probe::pid(pid)?),
        (None, Some(_)) => Some(Probe::this_process()),
        (None, None) => None,
    };
    let setup = Arc::new(Meter::default());
    let (cursor, head) = head(&target, args.channel.as_str(), &url, &setup).await?;
    let (lanes, quic) = lanes(&target, &transports, quic_sessions).await;
    // The connections the run will hold: none for a transport the server does not offer.
    let held = args.clients * lanes.iter().filter(|l| l.unavailable.is_none()).count();
    let stats_before = ServerStats::read(&target).await;

    let bar = progress_bar(args.no_progress);
    let mut usage = probe.map(Usage::start);
    let (stop_tx, stop) = watch::channel(Stop::Running);
    let (stall_tx, stall) = watch::channel(false);
    let channel = args.channel.as_str().to_string();
    let poll_interval = args.poll_interval;
    let shared =
        Arc::new(Shared { target: target.clone(), channel, cursor, poll_interval, stop, stall, variant, quic });
    let mut clients = connect(&lanes, &shared, (args.clients, args.stall), head + 1, &bar).await;

    usage.iter_mut().for_each(Usage::connected);
    // The clients' own CPU, apart from a remote server's: on a shared machine
    // a saturated load generator inflates every latency it measures.
    let own = Probe::this_process();
    let own_start = own.cpu_seconds();
    let plan = Plan {
        channel: shared.channel.clone(),
        rate: args.rate,
        payload: args.payload as usize,
        kind: args.payload_kind.clone(),
        duration: args.duration,
    };
    let publish_meter = Arc::new(Meter::default());
    let stalling = args.stall.map(|s| s.drive(stall_tx, args.duration));
    let published = publishing(&target, &plan, &publish_meter, &lanes, &bar).await;

    bar.set_prefix("draining");
    let _ = stop_tx.send(Stop::After(published.seqs.last().copied().unwrap_or(head)));
    let mut drain = args.poll_interval + (args.duration / 4).max(Duration::from_secs(5));
    drain += args.stall.map_or(Duration::ZERO, |s| s.overhang(args.duration));
    let tallies = join(&mut clients, lanes.len(), drain, &stop_tx).await;
    if let Some(task) = stalling {
        task.abort();
    }
    let stats_after = ServerStats::read(&target).await;
    bar.finish_and_clear();
    let server_usage = usage.and_then(|u| u.finish(held));
    let bench_cpu_seconds = own.cpu_seconds().zip(own_start).map(|(end, start)| end - start);
    if let Some(local) = &local {
        local.state.ctx.shutdown.trigger();
        local.handle.stop(false).await;
    }
    if published.seqs.is_empty() || published.refused {
        let why = published.first_error.unwrap_or_else(|| "no message was published".into());
        return Err(Error::Failed(format!("publishing failed: {why}")));
    }

    let mut notes = Vec::new();
    if transports.len() < asked.len() {
        notes.push("sse left out: SSE is a text protocol, it has no MessagePack encoding (API.md)".into());
    }
    if lanes.iter().any(|l| l.transport == Transport::WebTransport && l.unavailable.is_none()) {
        notes.push(
            "webtransport bytes are quinn's UDP payload counts: encrypted, QUIC headers and acknowledgements in".into(),
        );
    }
    if !target.is_local() {
        notes.push(
            "the server is not on this machine: latencies include the offset between its clock (ts) and ours".into(),
        );
    }
    if let Some(usage) = server_usage.as_ref().filter(|_| local.is_some() && args.server_pid.is_none()) {
        notes.push(format!("server CPU and memory are of {}", usage.scope));
    }
    // The server's CPU time is of every transport together: one's share is known when it ran alone.
    let measured = lanes.iter().filter(|l| l.unavailable.is_none()).count();
    let alone_cpu = server_usage.as_ref().filter(|_| measured == 1).map(|u| u.cpu_seconds);
    let rows: Vec<TransportRow> = lanes
        .iter()
        .zip(&tallies)
        .map(|(lane, tallies)| {
            let mut row = row(lane, tallies, args.clients, &published.seqs);
            if lane.unavailable.is_some() {
                return row;
            }
            row.server_counts(stats_before.since(&stats_after, lane.transport), alone_cpu);
            row.stall = args.stall.map(|s| stall::row(s.clients, &lane.latency(), tallies, &published.seqs));
            row
        })
        .collect();
    let deliveries: u64 = rows.iter().map(|r| r.deliveries).sum();
    Ok(Report {
        server: url,
        in_process: local.is_some(),
        parameters: Parameters {
            transports: transports.iter().map(|t| t.id()).collect(),
            clients: args.clients,
            rate: args.rate,
            payload: plan.kind.size(plan.payload),
            payload_kind: plan.kind.name(),
            compression: variant.compression,
            encoding: variant.encoding,
            duration_s: args.duration.as_secs_f64(),
            poll_interval_s: args.poll_interval.as_secs_f64(),
            channel: plan.channel,
            stall: args.stall.map(|s| s.parameters(args.duration)),
        },
        published: published.seqs.len() as u64,
        publish_errors: published.errors,
        publish_seconds: published.elapsed.as_secs_f64(),
        publish_connections: published.connections,
        publish_delay_us: Latency::of(&published.delay),
        publish_wire_bytes: publish_meter.written() + publish_meter.read(),
        setup_wire_bytes: setup.written() + setup.read(),
        transports: rows,
        server_usage: server_usage.map(|u| u.with_deliveries(deliveries)),
        bench_cpu_seconds: bench_cpu_seconds.filter(|_| local.is_none()),
        notes,
    })
}

/// A lane per transport, and where WebTransport sessions open (`sessions` of
/// them): a server that offers no WebTransport leaves its lane unavailable.
async fn lanes(target: &Arc<Target>, transports: &[Transport], sessions: usize) -> (Vec<Arc<Lane>>, Option<Arc<Quic>>) {
    let quic = match sessions {
        0 => None,
        sessions => Some(Quic::discover(target, sessions).await),
    };
    let lanes = transports
        .iter()
        .map(|&t| match &quic {
            Some(Err(why)) if t == Transport::WebTransport => Arc::new(Lane::unavailable(t, why.clone())),
            _ => Arc::new(Lane::new(t)),
        })
        .collect();
    (lanes, quic.and_then(Result::ok).map(Arc::new))
}

/// Fails now, not after the run, when an output file cannot be written;
/// leaves nothing behind.
fn writable(path: &std::path::Path) -> Result<(), Error> {
    let existed = path.exists();
    let opened = std::fs::OpenOptions::new().append(true).create(true).open(path);
    if !existed && opened.is_ok() {
        let _ = std::fs::remove_file(path);
    }
    opened.map(drop).map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))
}

/// The transports asked for, each once, in the order given.
fn unique(transports: &[Transport]) -> Vec<Transport> {
    let mut out = Vec::with_capacity(transports.len());
    for t in transports {
        if !out.contains(t) {
            out.push(*t);
        }
    }
    out
}

/// A server running in this process.
struct InProcess {
    addr: std::net::SocketAddr,
    state: pushwire::AppState,
    handle: actix_server::ServerHandle,
}

/// Starts a server in this process on a free loopback port, embedded hub, no demo.
fn start_server(mut config: Config) -> Result<InProcess, Error> {
    config.demo_rate = 0.0;
    let failed = |e: std::io::Error| Error::Failed(format!("cannot start the in-process server: {e}"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(failed)?;
    let hub = MemoryHub::bounded(config.history_limits(), config.memory_bounds());
    let Running { addr, state, handle, server, .. } = pushwire::server::start(config, hub, listener).map_err(failed)?;
    tokio::spawn(server);
    Ok(InProcess { addr, state, handle })
}

/// The channel's position now, as a cursor, and its seq: every client starts
/// there. Also proves that the server is there and speaks API.md.
async fn head(target: &Arc<Target>, channel: &str, url: &str, meter: &Arc<Meter>) -> Result<(String, u64), Error> {
    let mut http = HttpClient::new(target.clone(), 0, meter.clone());
    let request = target.request(Method::GET, &format!("/poll?channels={channel}"), Bytes::new());
    let unreachable = |e: String| Error::Input(format!("cannot reach {url}: {e}"));
    let response = timeout(Duration::from_secs(10), http.send(request))
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))?
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
    let body = String::from_utf8_lossy(&body);
    if status != 200 {
        let hint = if status == 401 { " (pass an access token with --token)" } else { "" };
        return Err(Error::Input(format!("{url}: GET /poll answered {status}{hint}: {}", body.trim())));
    }
    let not_api = || Error::Input(format!("{url} does not answer GET /poll as API.md says: {}", body.trim()));
    let answer: serde_json::Value = serde_json::from_str(&body).map_err(|_| not_api())?;
    let cursor = answer["cursor"].as_str().ok_or_else(not_api)?;
    let seq = cursor
        .split(',')
        .find_map(|entry| entry.strip_prefix(channel)?.strip_prefix(':')?.split(':').next()?.parse().ok())
        .ok_or_else(not_api)?;
    Ok((cursor.to_string(), seq))
}

fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    // unwrap: a constant template.
    let style =
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}").unwrap().progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// A running client, and the lane it belongs to.
type Client = (usize, JoinHandle<Tally>);

/// Starts every client (`per_lane` of each lane, some of them picked to
/// stall), a bounded number connecting at a time; returns once each has
/// subscribed (or connected, for polls) or given up.
async fn connect(
    lanes: &[Arc<Lane>],
    shared: &Arc<Shared>,
    (per_lane, stall): (usize, Option<Stall>),
    base: u64,
    bar: &ProgressBar,
) -> Vec<Client> {
    let total = lanes.iter().filter(|l| l.unavailable.is_none()).count() * per_lane;
    bar.set_prefix("connecting");
    bar.set_length(total as u64);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Ready>();
    let mut clients = Vec::with_capacity(total);
    let mut failed = Vec::new();
    let mut answered = 0;
    // Interleaved over lanes, so that no transport gets the quieter start.
    for index in 0..per_lane {
        for (l, lane) in lanes.iter().enumerate().filter(|(_, lane)| lane.unavailable.is_none()) {
            if clients.len() - answered >= CONNECTING_AT_ONCE {
                // unwrap: `ready_tx` is held here, so the channel stays open.
                failed.extend(ready_rx.recv().await.unwrap().err());
                answered += 1;
                bar.inc(1);
            }
            let stalls = stall.is_some_and(|s| s.picks(index, per_lane));
            let id = (index * lanes.len() + l, stalls);
            let client = clients::run(lane.clone(), shared.clone(), id, base, ready_tx.clone());
            clients.push((l, tokio::spawn(client)));
        }
    }
    drop(ready_tx);
    // Every client answers once; one that hangs counts as missing what it lacks.
    while answered < total
        && let Ok(Some(ready)) = timeout(Duration::from_secs(30), ready_rx.recv()).await
    {
        failed.extend(ready.err());
        answered += 1;
        bar.inc(1);
    }
    if let Some(first) = failed.first() {
        bar.suspend(|| eprintln!("warning: {} of {total} clients could not connect; the first: {first}", failed.len()));
    }
    clients
}

/// Publishes the plan while the bar shows progress and deliveries.
async fn publishing(
    target: &Arc<Target>,
    plan: &Plan,
    meter: &Arc<Meter>,
    lanes: &[Arc<Lane>],
    bar: &ProgressBar,
) -> publish::Published {
    bar.set_prefix("publishing");
    bar.set_position(0);
    bar.set_length(plan.messages());
    let done = Arc::new(AtomicU64::new(0));
    let show = {
        let (bar, done, lanes) = (bar.clone(), done.clone(), lanes.to_vec());
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                let deliveries: Vec<String> = lanes
                    .iter()
                    .map(|l| format!("{} {}", l.transport.id(), l.deliveries.load(Ordering::Relaxed)))
                    .collect();
                bar.set_message(format!("delivered: {}", deliveries.join(", ")));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let published = publish::run(target.clone(), plan, meter.clone(), done.clone()).await;
    show.abort();
    bar.set_position(done.load(Ordering::Relaxed));
    published
}

/// Waits up to `drain` for clients to finish by themselves, then stops the
/// rest; returns each lane's tallies.
async fn join(clients: &mut Vec<Client>, lanes: usize, drain: Duration, stop: &watch::Sender<Stop>) -> Vec<Vec<Tally>> {
    let mut finished = Vec::with_capacity(clients.len());
    let _ = timeout(drain, async {
        while let Some((lane, handle)) = clients.last_mut() {
            finished.push((*lane, handle.await));
            clients.pop();
        }
    })
    .await;
    let _ = stop.send(Stop::Now);
    for (lane, mut handle) in clients.drain(..) {
        let tally = timeout(Duration::from_secs(5), &mut handle).await;
        handle.abort();
        finished.push((lane, tally.unwrap_or_else(|_| Ok(Tally::new(0)))));
    }
    let mut tallies = vec![Vec::new(); lanes];
    for (lane, tally) in finished {
        // A client that panicked or hung received nothing that can be vouched for.
        tallies[lane].push(tally.unwrap_or_else(|_| Tally::new(0)));
    }
    tallies
}

/// One transport's row of the report.
fn row(lane: &Lane, tallies: &[Tally], clients: usize, published: &[u64]) -> TransportRow {
    let mut judged = Judged::default();
    for tally in tallies {
        judged += tally.judge(published);
    }
    let histogram = lane.latency().all();
    let requests = lane.requests.load(Ordering::Relaxed);
    let (sent, received) = (lane.meter.written(), lane.meter.read());
    TransportRow {
        transport: lane.transport.id(),
        unavailable: lane.unavailable.clone(),
        clients,
        connected: tallies.iter().filter(|t| t.connected).count(),
        published: published.len() as u64,
        deliveries: judged.deliveries,
        missing: judged.missing,
        duplicates: judged.duplicates,
        resets: lane.resets.load(Ordering::Relaxed),
        reconnects: lane.reconnects.load(Ordering::Relaxed),
        errors: lane.errors.load(Ordering::Relaxed),
        first_error: lane.first_error(),
        compressed: lane.compressed.load(Ordering::Relaxed),
        compressed_messages: (lane.transport == Transport::WebSocket)
            .then(|| lane.compressed_messages.load(Ordering::Relaxed)),
        latency_us: Latency::of(&histogram),
        wire_bytes_sent: sent,
        wire_bytes_received: received,
        wire_bytes_per_delivery: per_delivery(sent + received, judged.deliveries),
        requests,
        requests_per_delivery: per_delivery(requests, judged.deliveries),
        empty_polls: lane.empty_polls.load(Ordering::Relaxed),
        server_slow_disconnects: None,
        server_bytes_sent: None,
        server_bytes_sent_uncompressed: None,
        server_bytes_sent_per_delivery: None,
        server_bytes_sent_uncompressed_per_delivery: None,
        server_cpu_us_per_delivery: None,
        stall: None,
        histogram,
    }
}

/// Raises the soft open-file limit to the hard one (a load generator holds
/// a socket per client); returns the limit now in force.
fn raise_open_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass; setrlimit only reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_have_short_and_long_names() {
        assert_eq!(transport("ws"), Ok(Transport::WebSocket));
        assert_eq!(transport("long-poll"), Ok(Transport::LongPoll));
        assert_eq!(transport("webtransport"), Ok(Transport::WebTransport));
        assert_eq!(transport("wt"), Ok(Transport::WebTransport));
        assert!(transport("carrier-pigeon").unwrap_err().contains("unknown transport 'carrier-pigeon'"));
        assert!(rate("0").is_err() && rate("-1").is_err() && rate("NaN").is_err());
        assert_eq!(rate("2.5"), Ok(2.5));
    }
}
