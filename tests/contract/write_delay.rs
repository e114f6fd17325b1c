//! `--write-delay`: a message is held until it has waited that long since its
//! publish, and what is published meanwhile goes out with it, in one write
//! (WebSocket), one chunk (SSE) or one answer (long poll). Each test publishes
//! a burst well inside the delay and looks at how it arrived; the delay's
//! lower bound is the time asserted (a slow machine cannot meet it early).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::*;
use crate::server::count_frames;

/// Long enough that five publishes over loopback always fit in it.
const DELAY: Duration = Duration::from_secs(1);
const BURST: u64 = 5;

async fn app() -> TestApp {
    spawn_app_with(HubKind::Memory, |c| c.write_delay = DELAY).await
}

#[tokio::test]
async fn a_websocket_burst_goes_out_in_one_write() {
    let app = app().await;
    let (mut tcp, _) = app.raw_upgrade("/ws?channels=burst").await;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // The welcome and the subscribed frame are answers, not deliveries: not held.
    while count_frames(&received) < 2 {
        let n = timeout(PATIENCE, tcp.read(&mut buf)).await.expect("no handshake frames").unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&buf[..n]);
    }
    let first = Instant::now();
    app.publish_many("burst", BURST).await;
    // One write of a few hundred bytes reaches a loopback reader whole: the
    // first read after the delay holds every frame of the burst.
    let n = timeout(PATIENCE, tcp.read(&mut buf)).await.expect("no delivery").unwrap();
    assert!(first.elapsed() >= DELAY, "delivered after {:?}, before the delay", first.elapsed());
    let frames: Vec<Value> = text_frames(&buf[..n]).iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    assert_eq!(seqs(&frames), (1..=BURST).collect::<Vec<_>>(), "{frames:?}");
}

#[tokio::test]
async fn an_sse_burst_goes_out_in_one_chunk() {
    let app = app().await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let request =
        format!("GET /sse?channels=burst HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n", app.addr);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut stream = Chunked::default();
    let preamble = stream.next(&mut tcp).await;
    assert!(preamble.contains("event: subscribed"), "{preamble}");
    let first = Instant::now();
    app.publish_many("burst", BURST).await;
    let chunk = stream.next(&mut tcp).await;
    assert!(first.elapsed() >= DELAY, "delivered after {:?}, before the delay", first.elapsed());
    let data: Vec<Value> =
        chunk.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(seqs(&data), (1..=BURST).collect::<Vec<_>>(), "{chunk}");
}

#[tokio::test]
async fn a_held_long_poll_answers_the_whole_burst() {
    let app = app().await;
    let held = held_poll(&app, "channels=burst").await;
    let first = Instant::now();
    app.publish_many("burst", BURST).await;
    assert_whole_burst(held, first).await;
}

#[tokio::test]
async fn a_poll_that_finds_a_fresh_message_holds_it_for_what_follows() {
    // The delay counts from the publish: a message found waiting is held until
    // it is that old, and what is published meanwhile joins it.
    let app = app().await;
    let first = Instant::now();
    app.publish("fresh", serde_json::json!({"i": 1})).await;
    let held = held_poll(&app, "channels=fresh&cursor=fresh:0").await;
    for i in 2..=BURST {
        app.publish("fresh", serde_json::json!({ "i": i })).await;
    }
    assert_whole_burst(held, first).await;
}

#[tokio::test]
async fn a_poll_that_may_not_wait_is_not_held() {
    let app = app().await;
    app.publish_many("now", 2).await;
    let asked = Instant::now();
    let (status, answer) = app.get("/long-poll?channels=now&cursor=now:0&timeout=0").await;
    assert_eq!(status, 200);
    assert_eq!(seqs(answer["messages"].as_array().unwrap()), [1, 2]);
    assert!(asked.elapsed() < DELAY, "held {:?} with timeout=0", asked.elapsed());
}

/// A long poll with `query`, once the server holds it.
async fn held_poll(app: &TestApp, query: &str) -> tokio::task::JoinHandle<Value> {
    let url = app.url(&format!("/long-poll?{query}&timeout=30"));
    let http = app.http.clone();
    let held = tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    app.wait_stats("the poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    held
}

/// The poll's answer holds seqs 1..=BURST, and came no sooner than the
/// delay after the burst's first publish at `first`.
async fn assert_whole_burst(held: tokio::task::JoinHandle<Value>, first: Instant) {
    let answer = timeout(PATIENCE, held).await.expect("not answered").unwrap();
    assert!(first.elapsed() >= DELAY, "answered after {:?}, before the delay", first.elapsed());
    assert_eq!(seqs(answer["messages"].as_array().unwrap()), (1..=BURST).collect::<Vec<_>>());
}

/// The payloads of the complete unmasked text frames in `bytes`.
fn text_frames(bytes: &[u8]) -> Vec<String> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(bytes[at], 0x81, "a final text frame");
        frames.push(String::from_utf8(bytes[at + header..at + header + len].to_vec()).unwrap());
        at += header + len;
    }
    assert_eq!(at, bytes.len(), "a frame cut short");
    frames
}

/// Reads an HTTP/1.1 chunked response off a raw socket, a chunk at a time.
#[derive(Default)]
struct Chunked {
    read: Vec<u8>,
    head_done: bool,
}

impl Chunked {
    async fn next(&mut self, tcp: &mut TcpStream) -> String {
        loop {
            if !self.head_done
                && let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let head = String::from_utf8_lossy(&self.read[..end]).to_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                self.read.drain(..end + 4);
                self.head_done = true;
            }
            if self.head_done
                && let Some(line) = self.read.windows(2).position(|w| w == b"\r\n")
            {
                let size = usize::from_str_radix(std::str::from_utf8(&self.read[..line]).unwrap(), 16).unwrap();
                if self.read.len() >= line + 2 + size + 2 {
                    let chunk = String::from_utf8(self.read[line + 2..line + 2 + size].to_vec()).unwrap();
                    self.read.drain(..line + 2 + size + 2);
                    return chunk;
                }
            }
            let mut buf = [0u8; 8192];
            let n = timeout(PATIENCE, tcp.read(&mut buf)).await.expect("no chunk").unwrap();
            assert!(n > 0, "the stream ended");
            self.read.extend_from_slice(&buf[..n]);
        }
    }
}
