//! `GET /ws`: handshake, frames, resume, limits, heartbeats (resets: `resets.rs`).

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::common::*;

crate::for_each_hub!(
    delivers_messages_with_every_field,
    keeps_order_across_a_burst,
    resumes_from_a_cursor_without_loss_or_duplicates,
    multi_channel_subscribe_and_unsubscribe_with_acks,
    publish_frame_is_acked_and_delivered_to_the_publisher,
    malformed_and_unknown_frames_get_errors_and_the_socket_survives,
    oversized_frame_closes_1009,
    app_ping_gets_pong_and_protocol_pings_are_sent,
    silent_peer_is_closed,
    bad_query_refuses_the_upgrade,
    shutdown_closes_with_1012,
    slow_consumer_is_cut_with_1013_and_resumes_without_loss,
);

async fn delivers_messages_with_every_field(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut ws = app.ws("?channels=news").await;
    let welcome = ws.expect("welcome").await;
    assert!(welcome["session"].as_str().is_some_and(|s| !s.is_empty()), "{welcome}");
    assert_eq!(welcome["heartbeat_ms"], 25_000);
    let subscribed = ws.expect("subscribed").await;
    assert_eq!(subscribed["channel"], "news");
    assert_eq!(subscribed["seq"], 0, "never published: head is 0");
    let data = json!({"text": "hello", "nested": {"a": [1, 2.5, null, true]}});
    let published = app.publish("news", data.clone()).await;
    let message = ws.expect("message").await;
    assert_message(&message, "news", 1, &data);
    assert_eq!(message["ts"], published["ts"]);
    assert_eq!(published["epoch"], subscribed["epoch"]);
}

async fn keeps_order_across_a_burst(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut ws = app.ws("?channels=burst").await;
    ws.handshake(1).await;
    app.publish_many("burst", 300).await;
    let messages = ws.messages(300).await;
    assert_eq!(seqs(&messages), (1..=300).collect::<Vec<_>>());
    assert!(messages.iter().enumerate().all(|(i, m)| m["data"]["i"] == i as u64 + 1));
}

async fn resumes_from_a_cursor_without_loss_or_duplicates(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut first = app.ws("?channels=r").await;
    let epoch = first.handshake(1).await[0]["epoch"].as_str().unwrap().to_string();
    app.publish_many("r", 10).await;
    let got = first.messages(4).await;
    assert_eq!(seqs(&got), [1, 2, 3, 4]);
    drop(first);
    app.publish_many("r", 5).await; // seqs 11..=15 while away
    let mut again = app.ws(&format!("?channels=r&cursor=r:4:{epoch}")).await;
    let subscribed = again.handshake(1).await;
    assert_eq!(subscribed[0]["seq"], 15, "subscribed carries the head");
    let rest = again.messages(11).await;
    assert_eq!(seqs(&rest), (5..=15).collect::<Vec<_>>());
    app.publish("r", json!("live")).await;
    assert_eq!(again.expect("message").await["seq"], 16, "then live, no duplicate");

    // The same over a subscribe frame, and a cursor without epoch.
    let mut third = app.ws("").await;
    third.expect("welcome").await;
    third.send(json!({"type": "subscribe", "channels": ["r"], "cursor": "r:13", "ref": "s1"})).await;
    third.expect("subscribed").await;
    assert_eq!(third.expect("ack").await["ref"], "s1");
    assert_eq!(seqs(&third.messages(3).await), [14, 15, 16]);
    third.assert_quiet(Duration::from_millis(200)).await;
}

async fn multi_channel_subscribe_and_unsubscribe_with_acks(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut ws = app.ws("?channels=a,b").await;
    let subscribed = ws.handshake(2).await;
    assert_eq!((subscribed[0]["channel"].as_str(), subscribed[1]["channel"].as_str()), (Some("a"), Some("b")));
    ws.send(json!({"type": "subscribe", "channels": ["c"], "ref": "1"})).await;
    assert_eq!(ws.expect("subscribed").await["channel"], "c");
    assert_eq!(ws.expect("ack").await, json!({"type": "ack", "ref": "1"}));
    for channel in ["a", "b", "c"] {
        app.publish(channel, json!(channel)).await;
        let m = ws.expect("message").await;
        assert_eq!((m["channel"].as_str(), m["data"].as_str()), (Some(channel), Some(channel)));
    }
    ws.send(json!({"type": "unsubscribe", "channels": ["a", "c"], "ref": 2})).await;
    assert_eq!(ws.expect("ack").await, json!({"type": "ack", "ref": 2}));
    app.publish("a", json!("gone")).await;
    app.publish("c", json!("gone")).await;
    app.publish("b", json!("still")).await;
    let m = ws.expect("message").await;
    assert_eq!(
        (m["channel"].as_str(), m["data"].as_str()),
        (Some("b"), Some("still")),
        "unsubscribed channels are silent"
    );
    // A frame without ref gets no ack, but still acts.
    ws.send(json!({"type": "subscribe", "channels": ["a"]})).await;
    assert_eq!(ws.expect("subscribed").await["seq"], 2);
    ws.assert_quiet(Duration::from_millis(200)).await;
}

async fn publish_frame_is_acked_and_delivered_to_the_publisher(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut publisher = app.ws("?channels=p").await;
    publisher.handshake(1).await;
    let mut other = app.ws("?channels=p").await;
    other.handshake(1).await;
    publisher.send(json!({"type": "publish", "channel": "p", "data": {"text": "hi"}, "ref": "3"})).await;
    let mut frames = [publisher.json().await, publisher.json().await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    let (ack, own) = (&frames[0], &frames[1]);
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_str(), ack["channel"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some("3"), Some("p"), Some(1))
    );
    assert_message(own, "p", 1, &json!({"text": "hi"}));
    assert_message(&other.expect("message").await, "p", 1, &json!({"text": "hi"}));
    // null is data like any other JSON value.
    publisher.send(json!({"type": "publish", "channel": "p", "data": null, "ref": "n"})).await;
    let mut frames = [publisher.json().await, publisher.json().await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!((frames[0]["ref"].as_str(), frames[0]["seq"].as_u64()), (Some("n"), Some(2)));
    assert_message(&frames[1], "p", 2, &json!(null));
    other.expect("message").await;
    // Publishing to a channel one is not subscribed to works too.
    publisher.send(json!({"type": "publish", "channel": "elsewhere", "data": 1, "ref": "4"})).await;
    let ack = publisher.expect("ack").await;
    assert_eq!((ack["channel"].as_str(), ack["seq"].as_u64()), (Some("elsewhere"), Some(1)));
}

async fn malformed_and_unknown_frames_get_errors_and_the_socket_survives(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut ws = app.ws("?channels=m").await;
    ws.handshake(1).await;
    let cases: [(&str, &str, Option<&str>); 9] = [
        (r#"{"type":"ping","type":"ping","ref":"dup"}"#, "bad_request", Some("dup")),
        ("{not json", "bad_json", None),
        ("[1,2,3]", "bad_request", None),
        (r#"{"type":"dance","ref":"d1"}"#, "bad_request", Some("d1")),
        (r#"{"ref":"n1"}"#, "bad_request", Some("n1")),
        (r#"{"type":"subscribe","channels":["bad name"],"ref":"c1"}"#, "bad_channel", Some("c1")),
        (r#"{"type":"subscribe","channels":["ok"],"cursor":"ok:x","ref":"k1"}"#, "bad_cursor", Some("k1")),
        (r#"{"type":"publish","channel":"m","ref":"p1"}"#, "bad_request", Some("p1")),
        (r#"{"type":"publish","channel":"no/slash","data":1,"ref":"p2"}"#, "bad_channel", Some("p2")),
    ];
    for (text, code, reference) in cases {
        ws.send_text(text).await;
        let error = ws.expect("error").await;
        assert_eq!(error["code"], code, "{text} -> {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(error.get("ref").and_then(Value::as_str), reference, "{text} -> {error}");
    }
    ws.stream.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws.expect("error").await["code"], "bad_request");
    // Still usable, and nothing was published by the bad frames.
    app.publish("m", json!("after")).await;
    assert_message(&ws.expect("message").await, "m", 1, &json!("after"));
}

async fn oversized_frame_closes_1009(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.max_frame = 4096).await;
    let mut ws = app.ws("?channels=big").await;
    ws.handshake(1).await;
    // Within the frame limit but over the publish limit: an error, not a close.
    let small_app = spawn_app_with(hub, |c| c.max_body = 100).await;
    let mut small = small_app.ws("").await;
    small.expect("welcome").await;
    small.send(json!({"type": "publish", "channel": "x", "data": "y".repeat(200), "ref": "big"})).await;
    let error = small.expect("error").await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("too_large"), Some("big")));

    ws.send(json!({"type": "publish", "channel": "big", "data": "z".repeat(5000)})).await;
    match ws.next().await {
        Err(WsEnd::Closed(Some(code), _)) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    let (_, answer) = app.get("/poll?channels=big&cursor=big:0").await;
    assert_eq!(answer["messages"], json!([]), "the oversized frame published nothing");
}

/// The ping interval is short and real: the server runs on actix's own
/// runtimes, whose clock a test cannot pause. The exact ping and pong schedule
/// is unit-tested on a paused clock in `src/transport/websocket/tests.rs`;
/// here and below it is enough that pings and the close reach a real socket.
async fn app_ping_gets_pong_and_protocol_pings_are_sent(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.ws_ping_interval = Duration::from_millis(100)).await;
    let mut ws = app.ws("").await;
    let welcome = ws.expect("welcome").await;
    assert_eq!(welcome["heartbeat_ms"], 100);
    ws.send(json!({"type": "ping", "ref": "4"})).await;
    assert_eq!(ws.expect("pong").await, json!({"type": "pong", "ref": "4"}));
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.expect("pong").await, json!({"type": "pong"}));
    // A protocol-level ping arrives by itself.
    use futures_util::StreamExt;
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.stream.next()).await.expect("no ping").unwrap().unwrap();
        if frame.is_ping() {
            break;
        }
    }
}

async fn silent_peer_is_closed(hub: HubKind) {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(hub, |c| {
        c.ws_ping_interval = Duration::from_millis(100);
        c.ws_pong_timeout = Duration::from_millis(200);
    })
    .await;
    // A raw client that completes the handshake and then never answers a ping.
    let (mut tcp, _) = app.raw_upgrade("/ws").await;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n =
            tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("the silent peer was not closed").unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains(WS_SAMPLE_ACCEPT), "accept key derived from the sample nonce");
    // Frames: 0x89 is a ping, 0x88 a close.
    assert!(received.contains(&0x89), "a ping was sent");
    assert!(received.contains(&0x88), "a close was sent before the socket was dropped");
}

async fn bad_query_refuses_the_upgrade(hub: HubKind) {
    use tokio_tungstenite::tungstenite::Error;
    let app = spawn_app(hub).await;
    for (query, code) in [
        ("?channels=a%20b", "bad_channel"),
        ("?channels=a&cursor=a:1:bad-epoch", "bad_cursor"),
        ("?channels=a,", "bad_channel"),
    ] {
        match tokio_tungstenite::connect_async(app.ws_url(&format!("/ws{query}"))).await {
            Err(Error::Http(response)) => {
                assert_eq!(response.status(), 400);
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"]["code"], code, "{query}");
            }
            other => panic!("{query}: expected a 400, got {other:?}"),
        }
    }
    let response = app.http.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["upgrade"], "websocket");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
}

async fn shutdown_closes_with_1012(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut ws = app.ws("?channels=s").await;
    ws.handshake(1).await;
    app.state.ctx.shutdown.trigger();
    match ws.next().await {
        Err(WsEnd::Closed(Some(code), _)) => assert_eq!(code, 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
}

async fn slow_consumer_is_cut_with_1013_and_resumes_without_loss(hub: HubKind) {
    let app = spawn_app_with(hub, |c| {
        c.queue_size = 8;
        c.history_size = 1000;
    })
    .await;
    let mut ws = app.ws("?channels=slow").await;
    let epoch = ws.handshake(1).await[0]["epoch"].as_str().unwrap().to_string();
    // Publish far more than the socket buffers hold while the client reads nothing.
    let pad = "p".repeat(32 * 1024);
    let total = 400u64;
    for i in 1..=total {
        app.publish("slow", json!({"i": i, "pad": pad})).await;
    }
    app.wait_stats("the slow websocket to be cut", |s| s["transports"]["websocket"]["slow_disconnects"] == 1).await;
    let (last, code) = in_order_until_closed(&mut ws).await;
    assert_eq!(code, Some(1013));
    assert!(last < total, "the cut happened before the end ({last} of {total})");
    let mut again = app.ws(&format!("?channels=slow&cursor=slow:{last}:{epoch}")).await;
    again.handshake(1).await;
    let rest = again.messages((total - last) as usize).await;
    assert_eq!(seqs(&rest), (last + 1..=total).collect::<Vec<_>>());
}

/// A text frame of a fragmented message, as `first` part or a continuation.
fn fragment(text: &str, first: bool, last: bool) -> WsMessage {
    let op = if first { Data::Text } else { Data::Continue };
    WsMessage::Frame(Frame::message(text.to_owned(), OpCode::Data(op), last))
}

/// Fragments are put together into one message; a message left unfinished is
/// not held past `--request-timeout` from its first fragment, however busy the
/// peer keeps the connection meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_fragmented_message_closes_1008() {
    let app = spawn_app_with(HubKind::Memory, |c| c.request_timeout = Duration::from_millis(300)).await;
    let mut ws = app.ws("").await;
    ws.expect("welcome").await;
    for (part, first, last) in
        [(r#"{"type":"pi"#, true, false), (r#"ng","re"#, false, false), (r#"f":"f"}"#, false, true)]
    {
        ws.stream.send(fragment(part, first, last)).await.unwrap();
    }
    assert_eq!(ws.expect("pong").await, json!({"type": "pong", "ref": "f"}), "a finished message is read whole");

    ws.stream.send(fragment(r#"{"type":"ping","ref":""#, true, false)).await.unwrap();
    ws.stream.send(fragment("x", false, false)).await.unwrap();
    ws.stream.send(WsMessage::Pong("unsolicited".into())).await.unwrap();
    match ws.next().await {
        Err(WsEnd::Closed(Some(code), reason)) => {
            assert_eq!((code, reason.as_str()), (1008, "fragmented message not finished in time"));
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
}

/// No extension is negotiated, so a frame with any reserved bit set breaks
/// the protocol: a close 1002 says so, not a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_with_a_reserved_bit_closes_1002() {
    let app = spawn_app(HubKind::Memory).await;
    for rsv in 1..=3 {
        let mut ws = app.ws("").await;
        ws.expect("welcome").await;
        let mut frame = Frame::message(r#"{"type":"ping"}"#, OpCode::Data(Data::Text), true);
        let header = frame.header_mut();
        (header.rsv1, header.rsv2, header.rsv3) = (rsv == 1, rsv == 2, rsv == 3);
        ws.stream.send(WsMessage::Frame(frame)).await.unwrap();
        match ws.next().await {
            Err(WsEnd::Closed(Some(code), _)) => assert_eq!(code, 1002, "RSV{rsv}"),
            other => panic!("RSV{rsv}: expected close 1002, got {other:?}"),
        }
    }
}

/// A client that stops reading while its queue still has room is cut by
/// `--write-timeout`: counted slow, and told so with 1013 if it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_by_the_write_timeout_with_1013() {
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.write_timeout = Duration::from_millis(300);
        c.queue_size = 10_000;
    })
    .await;
    let mut ws = app.ws("?channels=stuck").await;
    ws.handshake(1).await;
    // Far more than the socket buffers hold, while the client reads nothing.
    let pad = "p".repeat(32 * 1024);
    for i in 1..=400u64 {
        app.publish("stuck", json!({"i": i, "pad": pad})).await;
    }
    let stats = app.wait_stats("the cut", |s| s["transports"]["websocket"]["connections_open"] == 0).await;
    assert_eq!(counter(&stats, "websocket", "slow_disconnects"), 1, "{stats}");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"pushwire_connections_closed_total{transport="websocket",reason="write_timeout"} 1"#,
        r#"pushwire_limit_rejections_total{kind="write_timeout"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let (_, code) = in_order_until_closed(&mut ws).await;
    assert_eq!(code, Some(1013));
}

/// Messages in seq order from 1 until the server closes: the last seq, and the close code.
async fn in_order_until_closed(ws: &mut Ws) -> (u64, Option<u16>) {
    let mut last = 0;
    loop {
        match ws.next().await {
            Ok(m) => {
                assert_eq!(m["seq"], last + 1, "in order, no gap before the cut");
                last += 1;
            }
            Err(WsEnd::Closed(code, _)) => return (last, code),
            Err(e) => panic!("expected a close frame, got {e:?}"),
        }
    }
}
