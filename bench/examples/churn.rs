//! WebSocket connection churn: how many handshakes a server completes per
//! second, and whether its memory comes back after waves of connects and
//! drops.
//!
//! ```sh
//! target/release/pushwire --workers 1 --demo-rate 0 --bind 127.0.0.1:8092 &
//! cargo run --release --example churn -- http://127.0.0.1:8092 $! [CONNECTIONS] [CYCLES]
//! ```
//!
//! Each cycle opens CONNECTIONS (default 10,000) WebSockets to `/ws?channels=churn`
//! from 256 concurrent tasks, each waiting for the `welcome` and `subscribed`
//! frames (a handshake that completed, and a subscription that took), holds
//! them all, then drops them all and waits until the server counts them closed
//! (and then a few seconds more, for the server to give memory back).
//! It prints the handshake rate, the server's CPU time per handshake, and its
//! RSS after each cycle, read from `/proc/PID`. Raw sockets and a hand-written
//! upgrade keep the client's own cost small.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pushwire_bench::Probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CONCURRENCY: usize = 256;
/// How long after a wave of closes the server's RSS is read.
const SETTLE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: churn URL SERVER_PID [CONNECTIONS] [CYCLES]";
    let url = args.get(1).expect(usage).trim_start_matches("http://").trim_end_matches('/').to_string();
    let pid: u32 = args.get(2).expect(usage).parse().expect(usage);
    let connections: usize = args.get(3).map_or(10_000, |n| n.parse().expect(usage));
    let cycles: usize = args.get(4).map_or(10, |n| n.parse().expect(usage));
    let server = Probe::pid(pid).expect("the server's pid");
    let cpu_seconds = || server.cpu_seconds().expect("the server's CPU time");
    let rss_kib = || server.rss_bytes().expect("the server's RSS") / 1024;
    let rss_start = rss_kib();
    println!("server pid {pid}: RSS {:.1} MiB before", rss_start as f64 / 1024.0);
    let mut settled_after = Vec::with_capacity(cycles);
    for cycle in 1..=cycles {
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..CONCURRENCY {
            let url = url.clone();
            let share = connections / CONCURRENCY + usize::from(task < connections % CONCURRENCY);
            tasks.push(tokio::spawn(async move {
                let mut held = Vec::with_capacity(share);
                for _ in 0..share {
                    held.push(connect(&url, cycle).await);
                }
                held
            }));
        }
        let mut held = Vec::with_capacity(connections);
        for task in tasks {
            held.extend(task.await.expect("a connecting task"));
        }
        let elapsed = started.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        let rss_held = rss_kib();
        drop(held);
        wait_closed(&url).await;
        // The server trims its heap within a few seconds of a wave of closes.
        tokio::time::sleep(SETTLE).await;
        let settled = rss_kib();
        settled_after.push(settled);
        println!(
            "cycle {cycle:2}: {connections} handshakes in {:.2} s = {:.0}/s; server CPU {:.2} s = {:.0} µs each \
             ({:.0} per CPU-second); RSS {:.1} MiB held, {:.1} MiB {} s after the drop",
            elapsed.as_secs_f64(),
            connections as f64 / elapsed.as_secs_f64(),
            cpu,
            cpu * 1e6 / connections as f64,
            connections as f64 / cpu,
            rss_held as f64 / 1024.0,
            settled as f64 / 1024.0,
            SETTLE.as_secs(),
        );
    }
    if let (Some(first), Some(last)) = (settled_after.first(), settled_after.last()) {
        println!(
            "RSS {:.1} MiB before, {:.1} MiB after the first cycle's drop, {:.1} MiB after the last ({:+.1}% on the first)",
            rss_start as f64 / 1024.0,
            *first as f64 / 1024.0,
            *last as f64 / 1024.0,
            (*last as f64 / *first as f64 - 1.0) * 100.0
        );
    }
}

/// One WebSocket, open and subscribed. Each cycle connects from its own
/// loopback address, so that the previous cycles' closed connections (in
/// TIME_WAIT on this side) do not use up the ephemeral ports.
async fn connect(host: &str, cycle: usize) -> TcpStream {
    let server: SocketAddr = host.parse().expect("URL as http://IP:PORT");
    let socket = TcpSocket::new_v4().expect("a socket");
    let source = Ipv4Addr::new(127, 0, 1, 1 + (cycle % 250) as u8);
    socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source address");
    let mut socket = socket.connect(server).await.expect("connect");
    let request = format!(
        "GET /ws?channels=churn HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("send the upgrade");
    // The 101, then the welcome and subscribed frames.
    let mut seen = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = socket.read(&mut buf).await.expect("read the handshake");
        assert!(n > 0, "the server closed during the handshake: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        if !seen.starts_with(b"HTTP/1.1 101") && seen.len() >= 12 {
            panic!("upgrade refused: {}", String::from_utf8_lossy(&seen));
        }
        if seen.windows(10).any(|w| w == b"subscribed") {
            return socket;
        }
    }
}

/// Waits until the server counts no WebSocket open.
async fn wait_closed(host: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut socket = TcpStream::connect(host).await.expect("connect for stats");
        let request = format!("GET /api/stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("ask for stats");
        let mut body = String::new();
        socket.read_to_string(&mut body).await.expect("read stats");
        let json = body.split_once("\r\n\r\n").map_or("", |(_, json)| json);
        let stats: serde_json::Value = serde_json::from_str(json).expect("stats JSON");
        if stats["transports"]["websocket"]["connections_open"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "connections still open after 60 s: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
