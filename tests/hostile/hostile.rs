//! Hostile input against the real binary: every attack of the hardening
//! issues at once (HTTP/2's in `http2`), for 30 s, while 50 honest clients over all four transports
//! follow a steady stream. At the end every honest client has every published
//! seq exactly once, and the server's memory stayed bounded. Plus random
//! bytes at every parser a client can reach, over real sockets.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::*;
use pushwire_client::{Event, Follow, Target, Transport};

/// How long the attack lasts.
const SOAK: Duration = Duration::from_secs(30);
/// Honest publishes: 20 a second for the whole soak.
const RATE: f64 = 20.0;
/// Peak resident memory the server may reach under the attack (see README,
/// "Security"): 110–170 MiB measured, depending on how loaded the machine is
/// (a slower server holds more unread answers until their write timeout).
const MAX_RSS_KB: u64 = 256 * 1024;

/// The pushwire binary, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushwire"))
            .args(["--bind", "127.0.0.1:0", "--demo-rate", "0"])
            .args(args)
            .env("RUST_LOG", "warn,pushwire=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the pushwire binary");
        let url = announced_url(&mut child).await;
        let addr = url.trim_start_matches("http://").parse().unwrap_or_else(|_| panic!("not an address: {url}"));
        Server { child, addr }
    }

    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A TCP connection from a chosen loopback address (attackers come from
/// 127.0.0.2, honest clients from 127.0.0.1, so per-address limits tell them apart).
pub(crate) async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

pub(crate) const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// The kinds of [`attack`], the last one random bytes.
const ATTACKS: usize = 9;

fn upgrade(addr: SocketAddr, query: &str) -> String {
    format!(
        "GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client text frame (any payload, valid UTF-8 or not).
fn frame(payload: &[u8]) -> Vec<u8> {
    frame_of(0x81, payload)
}

/// A masked client frame whose first byte (FIN, RSV, opcode) is `head`.
fn frame_of(head: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![head];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
    out.extend_from_slice(payload);
    out
}

/// One attacker: repeats its attack until `stop`, ignoring every outcome.
async fn attack(kind: usize, addr: SocketAddr, stop: Arc<AtomicBool>, attempts: Arc<AtomicU64>) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        attempts.fetch_add(1, Ordering::Relaxed);
        let Ok(mut tcp) = connect_from(ATTACKER, addr).await else {
            sleep(Duration::from_millis(50)).await;
            continue;
        };
        let payload: Vec<u8> = match kind {
            // Slow second request: one whole request, then part of a head.
            0 => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\nGET /heal").into_bytes(),
            // A body announced and never sent.
            1 => format!(
                "POST /channels/stall/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
            )
            .into_bytes(),
            // Polls of large history that are never read.
            2 => format!("GET /poll?channels=big&cursor=big:0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            // A WebSocket that sends large refs and never reads.
            3 => {
                let mut bytes = upgrade(addr, "?channels=honest").into_bytes();
                let big_ref = format!(r#"{{"type":"ping","ref":"{}"}}"#, "r".repeat(100_000));
                for _ in 0..4 {
                    bytes.extend(frame(big_ref.as_bytes()));
                }
                bytes
            }
            // Invalid UTF-8, then garbage frames.
            4 => {
                let mut bytes = upgrade(addr, "").into_bytes();
                bytes.extend(frame(&[0xff, 0xfe, 0xfd]));
                bytes
            }
            // A channel list far past the limit, in a query.
            5 => {
                let names: Vec<String> = (0..12_000).map(|i| format!("{i:x}")).collect();
                format!("GET /poll?channels={} HTTP/1.1\r\nHost: {addr}\r\n\r\n", names.join(",")).into_bytes()
            }
            // Publishes to ever new channels, from a foreign origin and as text/plain, plus big ones.
            6 => {
                let n = fastrand::u64(..);
                let mut bytes = Vec::new();
                bytes.extend(format!("POST /channels/flood{n}/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes());
                bytes.extend(format!("POST /channels/x/messages HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes());
                bytes.extend(format!("POST /api/demo HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 29\r\n\r\n{{\"rate\":1000,\"payload\":16384}}").into_bytes());
                let big = format!("\"{}\"", "b".repeat(60_000));
                bytes.extend(format!("POST /channels/big/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}", big.len()).into_bytes());
                bytes
            }
            // A fragmented message just under the frame limit that never ends,
            // kept busy with unsolicited pongs, and never read.
            7 => {
                let mut bytes = upgrade(addr, "?channels=honest").into_bytes();
                let part = "f".repeat(10_000);
                bytes.extend(frame_of(0x01, part.as_bytes())); // text, not final
                for _ in 0..12 {
                    bytes.extend(frame_of(0x00, part.as_bytes())); // continuation, not final
                    bytes.extend(frame_of(0x8a, b"alive")); // pong
                }
                bytes
            }
            // Random bytes.
            _ => (0..fastrand::usize(1..4096)).map(|_| fastrand::u8(..)).collect(),
        };
        let _ = tcp.write_all(&payload).await;
        if matches!(kind, 2 | 3 | 7) {
            held.push(tcp); // never read
            if held.len() > 40 {
                held.remove(0);
            }
        } else {
            // Read whatever comes back for a moment, then let go.
            let mut buf = [0u8; 4096];
            let _ = timeout(Duration::from_millis(100), tcp.read(&mut buf)).await;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// What an honest client saw: seqs in order of arrival, and resets.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    resets: usize,
}

/// Follows the stream from `start` over `transport` with `pushwire-client`,
/// reconnecting from its own position, until it holds seq `until`.
async fn follow_honestly(transport: Transport, addr: SocketAddr, until: u64, start: String) -> Seen {
    let target = Arc::new(Target::resolve(&format!("http://{addr}"), None, 1).await.unwrap());
    let mut seen = Seen::default();
    Follow::new(transport, target, &["honest"])
        .cursor(&start)
        .until(until)
        .poll_interval(Duration::from_millis(200))
        .long_poll_timeout(Duration::from_secs(5))
        .idle(PATIENCE)
        .run(&mut |event: Event<'_>| match event {
            Event::Message { seq, .. } => seen.seqs.push(seq),
            Event::Reset { .. } => seen.resets += 1,
            _ => {}
        })
        .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_attack_honest_clients_lose_nothing_and_memory_stays_bounded() {
    let server = Server::start(&[
        "--request-timeout",
        "2s",
        "--write-timeout",
        "3s",
        "--max-connections-per-ip",
        "400",
        "--publish-rate",
        "50",
        "--hub-max-channels",
        "2000",
        "--hub-max-bytes",
        "16777216",
        "--history-age",
        "120s",
        "--poll-max-bytes",
        "262144",
        // A quiet moment of an honest stream still carries a heartbeat well within PATIENCE.
        "--sse-heartbeat",
        "2s",
    ])
    .await;
    let addr = server.addr;
    let http = reqwest::Client::new();
    let total = (SOAK.as_secs_f64() * RATE) as u64;
    // The channel exists before anyone follows it, so every client starts at 0.
    let first = publish_once(&http, &server, 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    let start = format!("honest:0:{epoch}");

    let mut honest = Vec::new();
    for i in 0..50 {
        honest.push(tokio::spawn(follow_honestly(Transport::TCP[i % 4], addr, total, start.clone())));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let mut attackers: Vec<_> =
        (0..3 * ATTACKS).map(|i| tokio::spawn(attack(i % ATTACKS, addr, stop.clone(), attempts.clone()))).collect();
    attackers
        .extend((0..crate::http2::KINDS).map(|i| {
            tokio::spawn(crate::http2::attack(i % crate::http2::KINDS, addr, stop.clone(), attempts.clone()))
        }));

    // The honest publisher: RATE a second, retrying 503s with its idempotency key.
    let began = Instant::now();
    for seq in 2..=total {
        tokio::time::sleep_until(began + Duration::from_secs_f64(seq as f64 / RATE)).await;
        let answer = publish_once(&http, &server, seq).await;
        assert_eq!(answer["seq"], seq, "publishes keep their order");
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }

    for (i, client) in honest.into_iter().enumerate() {
        let seen = timeout(Duration::from_secs(60), client).await.expect("an honest client caught up").unwrap();
        assert_eq!(seen.resets, 0, "client {i} lost nothing");
        assert_eq!(seen.seqs, (1..=total).collect::<Vec<_>>(), "client {i}: every seq once, in order");
    }
    let stats: Value = http.get(server.url("/api/stats")).send().await.unwrap().json().await.unwrap();
    let peak = server.peak_rss_kb();
    eprintln!(
        "hostile soak: {} attack attempts, peak RSS {} KiB, hub {} channels / {} bytes",
        attempts.load(Ordering::Relaxed),
        peak,
        stats["hub_channels"],
        stats["hub_retained_bytes"]
    );
    assert!(attempts.load(Ordering::Relaxed) > 500, "the attack really ran");
    assert!(stats["hub_channels"].as_u64() <= Some(2000));
    assert!(stats["hub_retained_bytes"].as_u64() <= Some(16 * 1024 * 1024));
    assert!(peak < MAX_RSS_KB, "peak RSS {peak} KiB over the {MAX_RSS_KB} KiB bound");
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server is alive and answering");
}

/// Publishes honest message `seq`, retrying (with the same idempotency key) until it is stored.
async fn publish_once(http: &reqwest::Client, server: &Server, seq: u64) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = http
            .post(server.url("/channels/honest/messages"))
            .header("idempotency-key", format!("honest-{seq}"))
            .json(&json!({"n": seq}))
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == 201
        {
            return response.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "publish {seq} never got through");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Random bytes where a client can put them: query strings, Last-Event-ID,
/// Authorization, publish bodies, WebSocket frames. Every answer is an
/// API.md status with a JSON error (or success), and the server lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_gets_api_errors_and_harms_nothing() {
    let app = spawn_app_with(HubKind::Memory, |c| c.auth_secret = Some("fuzz".into())).await;
    let open = spawn_app(HubKind::Memory).await;
    fastrand::seed(7);
    let junk = |max: usize| -> String {
        (0..fastrand::usize(0..max))
            .map(|_| {
                let pool = b"abc,:%&=?#+-_.09\\\"{}[] \t\x7f";
                if fastrand::bool() {
                    pool[fastrand::usize(..pool.len())] as char
                } else {
                    fastrand::char('\u{1}'..'\u{2fff}')
                }
            })
            .collect()
    };
    let known =
        ["bad_channel", "bad_cursor", "bad_json", "bad_request", "unauthorized", "forbidden", "not_found", "too_large"];
    for round in 0..150 {
        let target = if round % 2 == 0 { &open } else { &app };
        let path = ["/poll", "/long-poll", "/sse", "/ws"][round % 4];
        let query: String = percent_encoding::utf8_percent_encode(&junk(200), percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%3D", "=")
            .replace("%26", "&");
        let mut request = target.http.get(target.url(&format!("{path}?{query}&timeout=0")));
        if fastrand::bool() {
            request = request.header("last-event-id", junk(60).replace(['\r', '\n'], ""));
        }
        if fastrand::bool() {
            request = request.header("authorization", format!("Bearer {}", junk(80).replace(['\r', '\n'], "")));
        }
        let Ok(response) = request.send().await else { continue }; // a header reqwest refuses to send
        let status = response.status().as_u16();
        if path == "/sse" && status == 200 {
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("{path}?{query}: {status} {body}"));
            assert!(
                known.contains(&code) || (path == "/ws" && code == "upgrade_required"),
                "{code} for {path}?{query}"
            );
        }
    }
    // Random publish bodies and WebSocket frames on the open server.
    for _ in 0..100 {
        let body = junk(300);
        let response = open
            .http
            .post(open.url("/channels/fz/messages"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(matches!(response.status().as_u16(), 201 | 400), "{body:?}");
    }
    let mut ws = open.ws("?channels=fz").await;
    ws.handshake(1).await;
    for _ in 0..200 {
        ws.stream.send(WsMessage::text(junk(300))).await.unwrap();
    }
    ws.send(json!({"type": "ping", "ref": "alive"})).await;
    loop {
        let frame = ws.json().await;
        if frame["type"] == "pong" {
            assert_eq!(frame["ref"], "alive");
            break;
        }
        assert!(matches!(frame["type"].as_str(), Some("error" | "message" | "ack" | "pong" | "subscribed")), "{frame}");
    }
    assert_eq!(open.get("/healthz").await.0, 200);
    assert_eq!(app.get("/healthz").await.0, 200);
}
