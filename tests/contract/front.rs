//! One HTTP/1 connection, many requests: the server answers SSE streams, long
//! polls and WebSocket handshakes on its own HTTP/1 path and hands any other
//! request, with the rest of its connection, to actix-http. What a client
//! sees must not depend on which path answered: keep-alive, pipelining, heads
//! that arrive in pieces, byte counts, and a close noticed at once.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::*;

/// One HTTP/1 response read off a keep-alive connection.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// Its bytes on the wire, head included.
    wire: usize,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A raw client connection that keeps what it read past each answer.
struct Client {
    tcp: TcpStream,
    read: Vec<u8>,
}

impl Client {
    async fn connect(app: &TestApp) -> Client {
        Client { tcp: TcpStream::connect(app.addr).await.unwrap(), read: Vec::new() }
    }

    async fn send(&mut self, bytes: &str) {
        self.tcp.write_all(bytes.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self, what: &str) {
        let mut buf = [0u8; 4096];
        let n = timeout(PATIENCE, self.tcp.read(&mut buf)).await.unwrap_or_else(|_| panic!("no {what}")).unwrap();
        assert!(n > 0, "closed before {what}: {:?}", String::from_utf8_lossy(&self.read));
        self.read.extend_from_slice(&buf[..n]);
    }

    /// The next whole response, sized by its `content-length`.
    async fn answer(&mut self) -> Answer {
        let end = loop {
            if let Some(at) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill("response head").await;
        };
        let head = String::from_utf8(self.read[..end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        while self.read.len() < end + length {
            self.fill("response body").await;
        }
        let body = self.read[end..end + length].to_vec();
        self.read.drain(..end + length);
        Answer { status, head, body, wire: end + length }
    }
}

fn get(app: &TestApp, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: raw\r\n\r\n", app.addr)
}

#[tokio::test]
async fn one_connection_carries_held_answers_then_any_request_in_order() {
    let app = spawn_app(HubKind::Memory).await;
    let published = app.publish_many("ka", 2).await;
    let epoch = published["epoch"].as_str().unwrap().to_string();
    let mut client = Client::connect(&app).await;

    // A head in three pieces, split inside a header name and before the blank line.
    let first = get(&app, "/long-poll?channels=ka&cursor=ka:0&timeout=0");
    let (a, rest) = first.split_at(20);
    let (b, c) = rest.split_at(rest.len() - 3);
    for piece in [a, b, c] {
        client.send(piece).await;
        client.tcp.flush().await.unwrap();
    }
    let answer = client.answer().await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(seqs(answer.json()["messages"].as_array().unwrap()), vec![1, 2]);
    assert!(answer.head.contains("cache-control: no-store"), "{}", answer.head);

    // Then a request of another route on the same connection, and polls after it.
    client.send(&get(&app, "/healthz")).await;
    let health = client.answer().await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    app.publish("ka", json!(3)).await;
    client.send(&get(&app, &format!("/long-poll?channels=ka&cursor=ka:2:{epoch}&timeout=5"))).await;
    let answer = client.answer().await;
    assert_eq!(seqs(answer.json()["messages"].as_array().unwrap()), vec![3]);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let app = spawn_app(HubKind::Memory).await;
    app.publish_many("pipe", 3).await;
    let mut client = Client::connect(&app).await;
    let requests = [
        get(&app, "/long-poll?channels=pipe&cursor=pipe:0&timeout=0"),
        get(&app, "/long-poll?channels=pipe&cursor=pipe:2&timeout=0"),
        get(&app, "/api/time"),
        get(&app, "/poll?channels=pipe&cursor=pipe:1"),
    ];
    client.send(&requests.concat()).await;
    let answers = [client.answer().await, client.answer().await, client.answer().await, client.answer().await];
    assert_eq!(seqs(answers[0].json()["messages"].as_array().unwrap()), vec![1, 2, 3]);
    assert_eq!(seqs(answers[1].json()["messages"].as_array().unwrap()), vec![3]);
    assert!(answers[2].json()["now"].is_u64(), "{}", answers[2].head);
    assert_eq!(seqs(answers[3].json()["messages"].as_array().unwrap()), vec![2, 3]);
}

#[tokio::test]
async fn held_polls_on_one_connection_are_counted_byte_for_byte() {
    let app = spawn_app(HubKind::Memory).await;
    let before = app.stats().await;
    let mut client = Client::connect(&app).await;
    let mut sent = 0;
    let mut received = 0;
    let mut cursor = String::from("held:0");
    for n in 1..=3u64 {
        let request = get(&app, &format!("/long-poll?channels=held&cursor={cursor}&timeout=30"));
        client.send(&request).await;
        sent += request.len();
        app.wait_stats("the poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
        app.publish("held", json!({ "n": n })).await;
        let answer = client.answer().await;
        received += answer.wire;
        let json = answer.json();
        assert_eq!(seqs(json["messages"].as_array().unwrap()), vec![n]);
        cursor = json["cursor"].as_str().unwrap().to_string();
    }
    let after = app.stats().await;
    assert_eq!(
        counter(&after, "long_poll", "bytes_received") - counter(&before, "long_poll", "bytes_received"),
        sent as u64
    );
    assert_eq!(
        counter(&after, "long_poll", "bytes_sent") - counter(&before, "long_poll", "bytes_sent"),
        received as u64
    );
    assert_eq!(counter(&after, "long_poll", "requests") - counter(&before, "long_poll", "requests"), 3);
}

#[tokio::test]
async fn a_websocket_upgrade_after_other_requests_on_the_connection_still_opens() {
    let app = spawn_app(HubKind::Memory).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/long-poll?channels=up&timeout=0")).await;
    assert_eq!(client.answer().await.status, 200);
    client.send(&get(&app, "/healthz")).await;
    assert_eq!(client.answer().await.status, 200);
    // This connection is the dispatcher's now: its upgrade path takes it.
    client
        .send(&format!(
            "GET /ws?channels=up HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            app.addr
        ))
        .await;
    while !client.read.windows(4).any(|w| w == b"\r\n\r\n") {
        client.fill("the 101").await;
    }
    assert!(
        client.read.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"),
        "{:?}",
        String::from_utf8_lossy(&client.read)
    );
    while !String::from_utf8_lossy(&client.read).contains(r#""type":"welcome""#) {
        client.fill("the welcome frame").await;
    }
    app.wait_stats("the session", |s| s["transports"]["websocket"]["connections_open"] == 1).await;
}

#[tokio::test]
async fn a_plain_get_of_the_websocket_route_is_refused_and_the_connection_kept() {
    let app = spawn_app(HubKind::Memory).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/ws?channels=x")).await;
    let refused = client.answer().await;
    assert_eq!(refused.status, 426);
    assert_eq!(refused.json()["error"]["code"], "upgrade_required");
    client.send(&get(&app, "/long-poll?channels=x&timeout=0")).await;
    assert_eq!(client.answer().await.status, 200);
}

#[tokio::test]
async fn a_closed_event_stream_is_let_go_at_once() {
    let app = spawn_app(HubKind::Memory).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/sse?channels=gone")).await;
    while !String::from_utf8_lossy(&client.read).contains("event: subscribed") {
        client.fill("the stream's opening").await;
    }
    assert!(client.read.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(String::from_utf8_lossy(&client.read).contains("transfer-encoding: chunked"));
    app.wait_stats("the stream", |s| s["transports"]["sse"]["connections_open"] == 1).await;
    drop(client);
    // No message or heartbeat is due: only the close can end it.
    app.wait_stats("the stream to be let go", |s| s["transports"]["sse"]["connections_open"] == 0).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive() {
    let app = spawn_app_with(HubKind::Memory, |c| c.keep_alive = Duration::from_millis(300)).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/long-poll?channels=idle&timeout=0")).await;
    assert_eq!(client.answer().await.status, 200);
    let mut buf = [0u8; 64];
    let n = timeout(PATIENCE, client.tcp.read(&mut buf)).await.expect("the connection was kept past its keep-alive");
    assert_eq!(n.unwrap(), 0, "closed without a word");
}

#[tokio::test]
async fn a_keep_alive_connection_between_requests_closes_when_the_server_shuts_down() {
    let app = spawn_app_with(HubKind::Memory, |c| c.keep_alive = Duration::from_secs(600)).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/long-poll?channels=bye&timeout=0")).await;
    assert_eq!(client.answer().await.status, 200);
    app.state.ctx.shutdown.trigger();
    let mut buf = [0u8; 64];
    let n = timeout(PATIENCE, client.tcp.read(&mut buf)).await.expect("kept open through the shutdown");
    assert_eq!(n.unwrap(), 0, "closed without a word");
}

#[tokio::test]
async fn a_head_over_16_kib_is_refused_with_431_and_the_connection_closed() {
    // A request timeout past the test's patience: only the refusal can end the wait.
    let app = spawn_app_with(HubKind::Memory, |c| c.request_timeout = Duration::from_secs(60)).await;
    let head = |pad: usize| format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Pad: {}", app.addr, "p".repeat(pad));

    // Never finished, and past 16 KiB: refused without waiting for the rest.
    let mut client = Client::connect(&app).await;
    client.send(&head(17 * 1024)).await;
    let refused = client.answer().await;
    assert_eq!(refused.status, 431, "{}", refused.head);
    assert_eq!(refused.json()["error"]["code"], "headers_too_large");
    assert!(refused.head.contains("connection: close"), "{}", refused.head);
    let mut buf = [0u8; 64];
    let n = timeout(PATIENCE, client.tcp.read(&mut buf)).await.expect("the refused connection was kept");
    assert_eq!(n.unwrap(), 0, "closed after the answer");

    // Just within 16 KiB: answered as usual.
    let mut client = Client::connect(&app).await;
    client.send(&(head(15 * 1024) + "\r\n\r\n")).await;
    assert_eq!(client.answer().await.status, 200);

    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == r#"pushwire_limit_rejections_total{kind="headers_too_large"} 1"#),
        "counted once: {metrics}"
    );
}

#[tokio::test]
async fn an_abandoned_long_poll_is_let_go_at_once() {
    let app = spawn_app(HubKind::Memory).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/long-poll?channels=left&timeout=60")).await;
    app.wait_stats("the poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    drop(client);
    // Nothing is published and its timeout is far: only the close can end it.
    let stats =
        app.wait_stats("the poll to be let go", |s| s["transports"]["long_poll"]["connections_open"] == 0).await;
    assert_eq!(counter(&stats, "long_poll", "connections_total"), 1);
}

#[tokio::test]
async fn a_request_sent_behind_a_held_poll_is_answered_after_it() {
    let app = spawn_app(HubKind::Memory).await;
    let mut client = Client::connect(&app).await;
    client.send(&get(&app, "/long-poll?channels=behind&timeout=30")).await;
    app.wait_stats("the poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    // Read while the poll is held, and kept for after its answer.
    client.send(&get(&app, "/healthz")).await;
    app.publish("behind", json!("now")).await;
    let answer = client.answer().await;
    assert_eq!(seqs(answer.json()["messages"].as_array().unwrap()), vec![1]);
    let health = client.answer().await;
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));
}
