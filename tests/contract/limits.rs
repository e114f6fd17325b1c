//! Limits of API.md v1.1 that keep one client from exhausting the server:
//! each test is an attack that used to hold resources forever, now refused
//! or closed, while honest clients keep every message.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::common::*;

crate::for_each_hub!(poll_answers_are_paged_by_bytes_and_lose_nothing,);

/// Reads until the server closes the connection; returns what came.
async fn read_to_close(tcp: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.unwrap_or_else(|_| panic!("{what}")) {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one whole request and reads its (small) answer, keeping the connection.
async fn exchange(tcp: &mut TcpStream, request: &str) -> String {
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 8192];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Short distinct channel names: `i` in base 36.
fn base36(mut i: usize) -> String {
    let mut name = String::new();
    loop {
        name.insert(0, char::from_digit((i % 36) as u32, 36).unwrap());
        i /= 36;
        if i == 0 {
            return name;
        }
    }
}

/// `n` admitted connections (each proven so by an answer), holding their places.
async fn hold(app: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        assert!(exchange(&mut tcp, &get(app, "/healthz")).await.starts_with("HTTP/1.1 200"));
        held.push(tcp);
    }
    held
}

fn get(app: &TestApp, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_second_request_is_closed() {
    let app = spawn_app_with(HubKind::Memory, |c| c.request_timeout = Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    assert!(exchange(&mut tcp, &get(&app, "/healthz")).await.starts_with("HTTP/1.1 200"));
    // Ten bytes of a second head, then silence.
    tcp.write_all(b"GET /healt").await.unwrap();
    let rest = read_to_close(&mut tcp, "the stalled request was not closed").await;
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&rest));
    // The server still answers others.
    assert_eq!(app.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_closed() {
    let app = spawn_app_with(HubKind::Memory, |c| c.request_timeout = Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /channels/c/messages HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[",
        app.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let answer =
        String::from_utf8_lossy(&read_to_close(&mut tcp, "the stalled body was not closed").await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Nothing was published.
    let (_, poll) = app.get("/poll?channels=c&cursor=c:0").await;
    assert_eq!(poll["messages"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_an_upgrade_gets_503_before_101() {
    let app = spawn_app_with(HubKind::Memory, |c| c.max_connections = Some(3)).await;
    let mut held = hold(&app, 3).await;
    let (mut tcp, _) = app.raw_upgrade("/ws?channels=a").await;
    let answer =
        String::from_utf8_lossy(&read_to_close(&mut tcp, "the refused connection stayed open").await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains(r#""code":"overloaded""#), "{answer}");
    // A place freed is a place taken again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        if exchange(&mut tcp, &get(&app, "/healthz")).await.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed place never came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_per_address_cap_a_client_gets_429() {
    let app = spawn_app_with(HubKind::Memory, |c| c.max_connections_per_ip = 2).await;
    let _held = hold(&app, 2).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(get(&app, "/healthz").as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut tcp, "refused connection stayed open").await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains(r#""code":"rate_limited""#), "{answer}");
}

async fn poll_answers_are_paged_by_bytes_and_lose_nothing(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.poll_max_bytes = 1000).await;
    let pad = "x".repeat(300);
    for i in 1..=20 {
        app.publish("big", json!({"i": i, "pad": pad})).await;
    }
    app.publish("big", json!({"i": 21, "pad": "y".repeat(2000)})).await; // alone over the limit
    let mut cursor = "big:0".to_string();
    let mut seen = Vec::new();
    for path in ["/poll", "/long-poll"] {
        seen.clear();
        cursor = "big:0".to_string();
        loop {
            let (status, answer) = app.get(&format!("{path}?channels=big&timeout=0&cursor={cursor}")).await;
            assert_eq!(status, 200);
            let messages = answer["messages"].as_array().unwrap();
            if messages.is_empty() {
                break;
            }
            let bytes: usize = messages.iter().map(|m| m.to_string().len()).sum();
            assert!(messages.len() == 1 || bytes <= 1000, "{path}: {} messages, {bytes} bytes", messages.len());
            seen.extend(seqs(messages));
            cursor = answer["cursor"].as_str().unwrap().to_string();
        }
        assert_eq!(seen, (1..=21).collect::<Vec<_>>(), "{path}: every seq once, in order");
    }
    assert!(cursor.starts_with("big:21:"), "{cursor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_channel_lists_are_refused() {
    let app = spawn_app(HubKind::Memory).await;
    // About 11 KB of query, within a head's 16 KiB: 3,000 names of up to three characters.
    let names: Vec<String> = (0..3_000).map(base36).collect();
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let request =
        format!("GET /poll?channels={} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", names.join(","), app.addr);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut tcp, "no answer to the long list").await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains(r#""code":"bad_request""#) && answer.contains("at most 64"), "{answer}");
    let mut ws = app.ws("").await;
    ws.expect("welcome").await;
    // Just under the 128 KiB frame limit.
    let many: Vec<String> = (0..21_500).map(base36).collect();
    ws.send(json!({"type": "subscribe", "channels": many, "ref": "big"})).await;
    let error = ws.expect("error").await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("bad_request"), Some("big")), "{error}");
    // The socket stays usable.
    ws.send(json!({"type": "ping", "ref": "after"})).await;
    assert_eq!(ws.expect("pong").await["ref"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_refs_are_refused_without_being_echoed() {
    let app = spawn_app(HubKind::Memory).await;
    let mut ws = app.ws("").await;
    ws.expect("welcome").await;
    ws.send(json!({"type": "ping", "ref": "r".repeat(129)})).await;
    let error = ws.expect("error").await;
    assert_eq!(error["code"], "bad_request");
    assert!(error.get("ref").is_none(), "the long ref is not echoed: {error}");
    ws.send(json!({"type": "ping", "ref": "r".repeat(128)})).await;
    assert_eq!(ws.expect("pong").await["ref"].as_str().unwrap().len(), 128);
    ws.send(json!({"type": "ping", "ref": {"an": "object"}})).await;
    assert!(ws.expect("error").await.get("ref").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_closes_with_1007() {
    let app = spawn_app(HubKind::Memory).await;
    let mut ws = app.ws("").await;
    ws.expect("welcome").await;
    let frame = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
    ws.stream.send(WsMessage::Frame(frame)).await.unwrap();
    match ws.next().await {
        Err(WsEnd::Closed(code, _)) => assert_eq!(code, Some(1007)),
        other => panic!("expected a 1007 close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_past_the_rate_get_429_over_http_and_websocket() {
    let app = spawn_app_with(HubKind::Memory, |c| c.publish_rate = 2.0).await;
    let url = app.url("/channels/r/messages");
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = app.http.post(&url).json(&json!({"i": i})).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..4], &[201; 4], "a burst of twice the rate: {statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    let mut ws = app.ws("").await;
    ws.expect("welcome").await;
    ws.send(json!({"type": "publish", "channel": "r", "data": 1, "ref": "p"})).await;
    let error = ws.expect("error").await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("rate_limited"), Some("p")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_websocket_is_closed_while_a_healthy_one_keeps_everything() {
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.write_timeout = Duration::from_millis(500);
        c.ws_ping_interval = Duration::from_millis(200);
        c.ws_pong_timeout = Duration::from_millis(500);
        c.queue_size = 100_000; // so that only the write timeout (or the pong) can cut it
        c.history_size = 10_000;
    })
    .await;
    let mut healthy = app.ws("?channels=s").await;
    healthy.handshake(1).await;
    // A client that upgrades, subscribes, and never reads.
    let (_stuck, _) = app.raw_upgrade("/ws?channels=s").await;
    app.wait_stats("two websockets", |s| s["transports"]["websocket"]["connections_open"] == 2).await;
    let total = 3000u64;
    // The healthy subscriber reads as it goes, as healthy clients do.
    let reader = tokio::spawn(async move { seqs(&healthy.messages(total as usize).await) });
    let pad = "p".repeat(8000);
    for i in 1..=total {
        app.publish("s", json!({"i": i, "pad": pad})).await;
    }
    app.wait_stats("the stuck socket to be closed", |s| s["transports"]["websocket"]["connections_open"] == 1).await;
    assert_eq!(reader.await.unwrap(), (1..=total).collect::<Vec<_>>(), "the healthy subscriber lost nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_hub_forgets_channels_once_their_history_ages_out() {
    // Long enough that all 500 publishes land before the first expires, on a busy machine too.
    let app = spawn_app_with(HubKind::Memory, |c| c.history_age = Duration::from_secs(3)).await;
    let mut ws = app.ws("?channels=kept").await;
    ws.handshake(1).await;
    for i in 0..500 {
        app.publish(&format!("gone{i}"), json!(i)).await;
    }
    app.publish("kept", json!("x")).await;
    let stats = app.stats().await;
    assert!(stats["hub_channels"].as_u64() >= Some(501), "{stats}");
    assert!(stats["hub_retained_bytes"].as_u64() > Some(0), "{stats}");
    let stats = app
        .wait_stats("the idle channels to be forgotten", |s| s["hub_channels"] == 1 && s["hub_retained_bytes"] == 0)
        .await;
    assert_eq!(stats["hub_channels"], 1, "the channel with a subscriber stays");
    // A forgotten channel comes back at seq 1, and an old cursor is told so.
    let (_, first) = app.get("/poll?channels=gone7&cursor=gone7:0").await;
    let old_epoch = first["cursor"].as_str().unwrap().rsplit(':').next().unwrap().to_string();
    let again = app.publish("gone7", json!("again")).await;
    assert_eq!(again["seq"], 1);
    let (_, answer) = app.get(&format!("/poll?channels=gone7&cursor=gone7:1:{}", "stale1")).await;
    assert_eq!(answer["resets"][0]["reason"], "epoch_changed", "{answer}");
    // At 0 nothing was missed: no reset, just the message.
    let (_, answer) = app.get(&format!("/poll?channels=gone7&cursor=gone7:0:{old_epoch}")).await;
    assert_eq!(
        (answer["resets"].as_array().unwrap().len(), seqs(answer["messages"].as_array().unwrap())),
        (0, vec![1])
    );
    assert_eq!(ws.expect("message").await["seq"], 1, "the kept channel still delivers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_hub_holds_a_bounded_number_of_channels_and_bytes() {
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.hub_max_channels = 100;
        c.hub_max_bytes = 10_000; // about half of what is published below
    })
    .await;
    for i in 0..100 {
        app.publish(&format!("c{i}"), json!({"pad": "x".repeat(100)})).await;
    }
    let response = app.http.post(app.url("/channels/one-more/messages")).json(&json!(1)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "overloaded");
    assert_eq!(app.publish("c0", json!(2)).await["seq"], 2, "existing channels still take publishes");
    let stats = app.stats().await;
    assert!(stats["hub_retained_bytes"].as_u64() <= Some(10_000), "{stats}");
    // The oldest messages went first: c0's first is gone, so resuming it from 0 says so.
    let (_, answer) = app.get("/poll?channels=c0&cursor=c0:0").await;
    assert_eq!(answer["resets"][0]["reason"], "history_trimmed", "{answer}");
}
