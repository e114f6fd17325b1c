//! The HTTP/2 attacks of issue 20 against a pushwire binary over TLS, with
//! the server's RSS and held long polls after each: the figures of the
//! closing note, before and after pushwire served HTTP/2 itself.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example h2_attacks -- target/release/pushwire
//! ```
//!
//! Each attack gets a fresh server (its own port and certificate).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::BufRead;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

#[path = "../tests/common/h2raw.rs"]
#[allow(dead_code)]
mod h2raw;

use h2raw::{END_HEADERS, END_STREAM, HEADERS, RST_STREAM, RawH2};

struct Server {
    child: Child,
    addr: SocketAddr,
    tls: TlsConnector,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    async fn start(binary: &Path, args: &[&str]) -> Server {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("pushwire-h2-attacks-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        let mut child = Command::new(binary)
            .args(["--bind", "127.0.0.1:0", "--demo-rate", "0", "--workers", "2"])
            .arg("--tls-cert")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(dir.join("key.pem"))
            .args(args)
            .env("RUST_LOG", "warn,pushwire=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the pushwire binary");
        // Its first lines announce the address; the rest is read and dropped.
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server announces its address").unwrap();
            // (Binaries before this one said http:// with TLS on too.)
            if let Some(at) = line.find("://") {
                let rest = &line[at + 3..];
                let end = rest.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(rest.len());
                break rest[..end].parse().unwrap();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(certified.cert.der().to_vec())).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Server { child, addr, tls: TlsConnector::from(Arc::new(config)), dir }
    }

    async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        self.tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    }

    /// The body of a GET over HTTP/1.1 (and TLS).
    async fn get(&self, path: &str) -> String {
        let mut tls = self.connect_http1().await;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await;
        answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string()
    }

    /// Long polls held, from `/api/stats`.
    async fn polls_held(&self) -> u64 {
        let stats: serde_json::Value = serde_json::from_str(&self.get("/api/stats").await).unwrap_or_default();
        stats["transports"]["long_poll"]["connections_open"].as_u64().unwrap_or(0)
    }

    /// `pushwire_limit_rejections_total` of `kind` (0 where the binary has no such kind).
    async fn rejections(&self, kind: &str) -> String {
        let metrics = self.get("/metrics").await;
        let label = format!("pushwire_limit_rejections_total{{kind=\"{kind}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&label)).unwrap_or("0 (no such count)").to_string()
    }

    async fn connect_http1(&self) -> TlsStream<TcpStream> {
        let mut roots_config = (**self.tls.config()).clone();
        roots_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        TlsConnector::from(Arc::new(roots_config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    }

    fn report(&self, what: &str, started: f64) {
        println!("  {what}: RSS {:.0} MB (+{:.0} MB)", self.rss_mb(), self.rss_mb() - started);
    }
}

fn poll_block(authority: &str, channel: &str) -> Vec<u8> {
    h2raw::get(authority, &format!("/long-poll?channels={channel}&timeout=60"))
}

/// 8 connections × 50,000 long polls, then all closed at once.
async fn held_and_closed(server: &Server) {
    println!("8 connections x 50,000 long polls, then closed");
    let base = server.rss_mb();
    let authority = server.addr.to_string();
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut raw = RawH2::start(server.connect().await).await;
        let block = poll_block(&authority, "held");
        for i in 0..50_000u32 {
            if raw.send(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block).await.is_err() {
                break;
            }
        }
        conns.push(raw);
    }
    sleep(Duration::from_secs(3)).await; // for the server to take in what was sent
    println!("  held: {} polls", server.polls_held().await);
    server.report("while held", base);
    drop(conns);
    sleep(Duration::from_secs(3)).await;
    println!("  3 s after the close: {} polls held", server.polls_held().await);
    server.report("after the close", base);
}

/// 200 rounds of 100 long polls reset after 50 ms, on one connection.
async fn rapid_reset(server: &Server) {
    println!("200 rounds of 100 long polls reset after 50 ms, one connection");
    let base = server.rss_mb();
    let authority = server.addr.to_string();
    let mut raw = RawH2::start(server.connect().await).await;
    let block = poll_block(&authority, "reset");
    let mut id = 1u32;
    let mut rounds = 0;
    'rounds: for _ in 0..200 {
        let first = id;
        for _ in 0..100 {
            if raw.send(HEADERS, END_HEADERS | END_STREAM, id, &block).await.is_err() {
                break 'rounds;
            }
            id += 2;
        }
        sleep(Duration::from_millis(50)).await;
        for stream in (first..id).step_by(2) {
            if raw.send(RST_STREAM, 0, stream, &0x8u32.to_be_bytes()).await.is_err() {
                break 'rounds;
            }
        }
        rounds += 1;
    }
    // A GOAWAY sent while requests were still coming may be lost to the
    // reset of the socket it closed; the server's count says.
    let goaway = timeout(Duration::from_secs(2), raw.until(h2raw::GOAWAY)).await.ok().flatten();
    println!(
        "  {rounds} rounds completed; GOAWAY read: {}; http2_resets counted: {}",
        goaway.map_or("none".to_string(), |g| format!("error code {:#x}", g.error_code())),
        server.rejections("http2_resets").await
    );
    println!("  held after: {} polls", server.polls_held().await);
    server.report("after", base);
}

/// 1,000 streams, each repeating one 4 KiB header from the HPACK table.
async fn hpack_reuse(server: &Server) {
    println!("1,000 long polls reusing one 4 KiB HPACK-indexed header");
    let base = server.rss_mb();
    let authority = server.addr.to_string();
    let mut raw = RawH2::start(server.connect().await).await;
    let name = "x-big";
    let value = "v".repeat(4000);
    // Literal with incremental indexing (RFC 7541 6.2.1): entry 62 of the table.
    let mut first = poll_block(&authority, "hpack");
    let mut indexed = vec![0x40];
    for s in [name, value.as_str()] {
        push_len(&mut indexed, s.len());
        indexed.extend_from_slice(s.as_bytes());
    }
    first.extend(&indexed);
    let mut again = poll_block(&authority, "hpack");
    again.push(0x80 | 62);
    for i in 0..1000u32 {
        let block = if i == 0 { &first } else { &again };
        let _ = raw.send(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, block).await;
    }
    sleep(Duration::from_secs(2)).await;
    let held = server.polls_held().await;
    let grown = server.rss_mb() - base;
    println!("  held: {held} polls; +{grown:.1} MB, {:.0} KiB per held stream", grown * 1024.0 / held.max(1) as f64);
    drop(raw);
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // A 7-bit prefix integer (RFC 7541 5.1).
    if len < 127 {
        out.push(len as u8);
        return;
    }
    out.push(127);
    let mut rest = len - 127;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// 10 connections each sending 15 MiB of header block that never ends.
async fn unfinished_blocks(server: &Server) {
    println!("10 connections x 15 MiB unfinished header blocks");
    let base = server.rss_mb();
    let authority = server.addr.to_string();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let tls = server.connect().await;
        let authority = authority.clone();
        tasks.push(tokio::spawn(async move {
            let mut raw = RawH2::start(tls).await;
            let mut sent = 0usize;
            let block = h2raw::get(&authority, "/healthz");
            if raw.send(HEADERS, 0, 1, &block).await.is_err() {
                return (sent, Instant::now());
            }
            let filler = h2raw::literal("x-more", &"m".repeat(16_000));
            // Just under the 16 MiB that the h2 crate allows by default.
            while sent < 15 << 20 {
                match timeout(Duration::from_secs(5), raw.send(h2raw::CONTINUATION, 0, 1, &filler)).await {
                    Ok(Ok(())) => sent += filler.len(),
                    _ => break,
                }
            }
            // Then wait for the server to let go (or 70 s).
            let _ = timeout(Duration::from_secs(70), async { while raw.frame().await.is_some() {} }).await;
            (sent, Instant::now())
        }));
    }
    sleep(Duration::from_secs(2)).await;
    server.report("2 s in", base);
    let mut ends = Vec::new();
    for task in tasks {
        ends.push(task.await.unwrap());
    }
    let sent: usize = ends.iter().map(|(s, _)| s).sum();
    let longest = ends.iter().map(|(_, at)| at.duration_since(started)).max().unwrap();
    println!("  {:.1} MB of blocks taken in all; the last connection closed after {longest:.1?}", sent as f64 / 1e6);
    println!("  request_timeout rejections: {}", server.rejections("request_timeout").await);
    server.report("after", base);
}

#[tokio::main]
async fn main() {
    let binary = PathBuf::from(std::env::args().nth(1).unwrap_or("target/release/pushwire".into()));
    let only = std::env::args().nth(2);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("held") {
        held_and_closed(&Server::start(&binary, &[]).await).await;
    }
    if run("reset") {
        rapid_reset(&Server::start(&binary, &[]).await).await;
    }
    if run("hpack") {
        hpack_reuse(&Server::start(&binary, &[]).await).await;
    }
    if run("blocks") {
        unfinished_blocks(&Server::start(&binary, &[]).await).await;
    }
}
