//! API.md v1.2 "Compression", on the raw socket where it matters: what the
//! server answers an offer with, RSV1, the stripped tail, frames that inflate
//! with a fresh inflater each (no context taken over), compressed client
//! frames and the deflate bomb; gzip on the HTTP transports, flushed per
//! event; and the counting of bytes before and after.

use std::io::Write;

use tokio::io::AsyncWriteExt;

use serde_json::{Value, json};

use crate::common::wsraw::{self, BINARY, RawWs, TEXT};
use crate::common::{HubKind, TestApp, counter, spawn_app, spawn_app_with};

/// What browsers offer.
const CHROMIUM_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";

/// A notification of about 1 KB that compresses well, as most do.
fn repetitive(i: u64) -> Value {
    let items: Vec<Value> = (0..12)
        .map(|k| json!({"id": k, "kind": "order.updated", "status": "shipped", "warehouse": "north-east-2"}))
        .collect();
    json!({"i": i, "items": items})
}

/// The JSON a client without compression gets for the `n` messages after
/// `cursor` (a short poll: the same objects every transport delivers).
async fn plain_messages(app: &TestApp, channel: &str) -> Vec<Value> {
    let (status, answer) = app.get(&format!("/poll?channels={channel}&cursor={channel}:0")).await;
    assert_eq!(status, 200);
    answer["messages"].as_array().unwrap().clone()
}

/// Reads data frames until `n` messages; every frame is checked against the
/// rules on the way.
async fn messages(ws: &mut RawWs, n: usize, min_size: usize) -> Vec<(wsraw::Frame, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = ws.data().await;
        assert_eq!(frame.opcode, TEXT, "{frame:?}");
        let text = if frame.rsv1 {
            assert!(!frame.payload.ends_with(&[0, 0, 0xff, 0xff]), "RFC 7692 strips the sync flush's 4-byte tail");
            wsraw::inflate(&frame.payload)
        } else {
            frame.payload.clone()
        };
        assert_eq!(frame.rsv1, text.len() >= min_size, "RSV1 iff the payload is at least the minimum size");
        let value: Value = serde_json::from_slice(&text).unwrap();
        if value["type"] == "message" {
            out.push((frame, value));
        }
    }
    out
}

#[tokio::test]
async fn a_browser_offer_gets_deflate_without_context_and_each_frame_inflates_alone() {
    let app = spawn_app(HubKind::Memory).await;
    let mut ws = RawWs::connect(app.addr, "/ws?channels=z", &[CHROMIUM_OFFER]).await;
    assert!(ws.head.starts_with("HTTP/1.1 101"), "{}", ws.head);
    let extensions = ws.header("sec-websocket-extensions").expect("an answer to the offer");
    assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
    assert!(extensions.contains("server_no_context_takeover"), "{extensions}");
    // The welcome and subscribed frames are small: uncompressed.
    let welcome = ws.data().await;
    assert!(!welcome.rsv1);
    assert_eq!(serde_json::from_slice::<Value>(&welcome.payload).unwrap()["type"], "welcome");
    let subscribed = ws.data().await;
    assert!(!subscribed.rsv1);

    for i in 1..=3 {
        app.publish("z", repetitive(i)).await;
    }
    app.publish("z", json!({"small": true})).await;
    let received = messages(&mut ws, 4, 256).await;
    let plain = plain_messages(&app, "z").await;
    let got: Vec<Value> = received.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(got, plain, "the same objects as an uncompressed client gets");
    let (first, _) = &received[0];
    let raw_len = serde_json::to_vec(&plain[0]).unwrap().len();
    assert!(first.rsv1);
    assert!(first.payload.len() * 2 <= raw_len, "{} compressed bytes for {raw_len} of JSON", first.payload.len());
    assert!(!received[3].0.rsv1, "a small message goes uncompressed");
    // Compressed once: two messages with the same JSON but their seq give the
    // same bytes on every connection; here, a second connection gets the
    // first message's frame byte for byte.
    let mut other = RawWs::connect(app.addr, "/ws?channels=z&cursor=z:0", &[CHROMIUM_OFFER]).await;
    let again = messages(&mut other, 1, 256).await;
    assert_eq!(again[0].0.payload, first.payload, "the same compressed bytes for every connection");
}

#[tokio::test]
async fn offers_that_cannot_be_honoured_and_switches_off_give_v1_1_frames() {
    let app = spawn_app(HubKind::Memory).await;
    app.publish("d", repetitive(1)).await;
    let cases = [
        ("/ws?channels=d&cursor=d:0", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10"),
        ("/ws?channels=d&cursor=d:0", "Sec-WebSocket-Extensions: permessage-deflate; bogus"),
        ("/ws?channels=d&cursor=d:0", "Sec-WebSocket-Extensions: x-webkit-deflate-frame"),
        ("/ws?channels=d&cursor=d:0&compression=off", CHROMIUM_OFFER),
        ("/ws?channels=d&cursor=d:0", "X-Nothing: offered"),
    ];
    for (path, offer) in cases {
        let mut ws = RawWs::connect(app.addr, path, &[offer]).await;
        assert!(ws.head.starts_with("HTTP/1.1 101"), "{}", ws.head);
        assert_eq!(ws.header("sec-websocket-extensions"), None, "{path} {offer}");
        let got = messages(&mut ws, 1, usize::MAX).await;
        assert!(!got[0].0.rsv1, "{path} {offer}");
    }
    // The next offer is considered when the first cannot be honoured.
    let two = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9, permessage-deflate";
    let ws = RawWs::connect(app.addr, "/ws?channels=d", &[two]).await;
    assert!(ws.header("sec-websocket-extensions").is_some_and(|e| e.contains("server_no_context_takeover")));

    let off = spawn_app_with(HubKind::Memory, |c| c.ws_compression = pushwire::config::Switch::Off).await;
    off.publish("d", repetitive(1)).await;
    let mut ws = RawWs::connect(off.addr, "/ws?channels=d&cursor=d:0", &[CHROMIUM_OFFER]).await;
    assert_eq!(ws.header("sec-websocket-extensions"), None);
    assert!(!messages(&mut ws, 1, usize::MAX).await[0].0.rsv1);
    assert_eq!(off.stats().await["compression"]["websocket"], "off");
}

#[tokio::test]
async fn compressed_client_frames_are_inflated_and_a_deflate_bomb_closes_1009() {
    let app = spawn_app_with(HubKind::Memory, |c| c.max_frame = 64 * 1024).await;
    let mut ws = RawWs::connect(app.addr, "/ws?channels=b", &[CHROMIUM_OFFER]).await;
    ws.data().await; // welcome
    ws.data().await; // subscribed
    let publish = json!({"type": "publish", "channel": "b", "data": repetitive(7), "ref": "p1"}).to_string();
    ws.send(TEXT, true, &wsraw::deflate(publish.as_bytes())).await;
    let mut acked = false;
    let mut delivered = None;
    while !acked || delivered.is_none() {
        let frame = ws.data().await;
        let text = if frame.rsv1 { wsraw::inflate(&frame.payload) } else { frame.payload };
        let value: Value = serde_json::from_slice(&text).unwrap();
        match value["type"].as_str() {
            Some("ack") => {
                assert_eq!(value["ref"], "p1");
                acked = true;
            }
            Some("message") => delivered = Some(value),
            _ => panic!("{value}"),
        }
    }
    assert_eq!(delivered.unwrap()["data"], repetitive(7));

    // 10 MiB of zeros in a few KiB, past the 64 KiB frame limit once inflated.
    let bomb = wsraw::deflate(&vec![b' '; 10 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    ws.send(TEXT, true, &bomb).await;
    assert_eq!(ws.close_code().await, Some(1009));
    // Nobody else is harmed.
    assert_eq!(app.publish("b", json!("after")).await["seq"], 2);
    assert_eq!(app.readyz().await, 200);

    // Garbage marked compressed is a protocol error.
    let mut ws = RawWs::connect(app.addr, "/ws", &[CHROMIUM_OFFER]).await;
    ws.data().await;
    ws.send(TEXT, true, &[0xff, 0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(ws.close_code().await, Some(1002));
    // RSV1 belongs on a message's first frame only: on a continuation it is one too.
    let mut ws = RawWs::connect(app.addr, "/ws", &[CHROMIUM_OFFER]).await;
    ws.data().await;
    let compressed = wsraw::deflate(br#"{"type":"ping","ref":"x"}"#);
    let mut first = wsraw::client_frame(TEXT, true, &compressed[..4]);
    first[0] &= !0x80; // not final
    ws.tcp.write_all(&first).await.unwrap();
    ws.tcp.write_all(&wsraw::client_frame(0, true, &compressed[4..])).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1002));
    // A compressed message in fragments, RSV1 on the first only, is put together and inflated.
    let mut ws = RawWs::connect(app.addr, "/ws", &[CHROMIUM_OFFER]).await;
    ws.data().await;
    ws.tcp.write_all(&first).await.unwrap();
    ws.tcp.write_all(&wsraw::client_frame(0, false, &compressed[4..])).await.unwrap();
    let pong: Value = serde_json::from_slice(&ws.data().await.payload).unwrap();
    assert_eq!((pong["type"].as_str(), pong["ref"].as_str()), (Some("pong"), Some("x")));
    // And RSV1 without a negotiated deflate is one too.
    let mut ws = RawWs::connect(app.addr, "/ws", &[]).await;
    ws.data().await;
    ws.send(BINARY, true, b"x").await;
    assert_eq!(ws.close_code().await, Some(1002));
}

/// A gzip body read as it arrives, inflated chunk by chunk.
struct Gunzip {
    response: reqwest::Response,
    decoder: flate2::write::GzDecoder<Vec<u8>>,
}

impl Gunzip {
    fn new(response: reqwest::Response) -> Gunzip {
        Gunzip { response, decoder: flate2::write::GzDecoder::new(Vec::new()) }
    }

    /// Everything inflated so far, once `until` holds of it.
    async fn until(&mut self, until: impl Fn(&str) -> bool) -> String {
        loop {
            let text = String::from_utf8(self.decoder.get_ref().clone()).unwrap();
            if until(&text) {
                return text;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a chunk within patience")
                .unwrap()
                .expect("the stream went on");
            self.decoder.write_all(&chunk).unwrap();
            self.decoder.flush().unwrap();
        }
    }
}

/// The `data:` objects of the `message` events in an SSE text.
fn sse_messages(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|event| event.lines().any(|l| l == "event: message"))
        .map(|event| serde_json::from_str(event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn sse_is_gzipped_when_accepted_and_every_event_inflates_as_it_arrives() {
    let app = spawn_app(HubKind::Memory).await;
    let mut published = 0;
    for channels in ["g", "g,other"] {
        let response = app
            .http
            .get(app.url(&format!("/sse?channels={channels}")))
            .header("accept-encoding", "gzip, deflate, br")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-encoding"], "gzip");
        assert_eq!(response.headers()["vary"], "Accept-Encoding");
        let mut stream = Gunzip::new(response);
        let opened = stream.until(|t| t.matches("event: subscribed").count() == channels.split(',').count()).await;
        assert!(opened.starts_with(": pushwire stream open"), "{opened}");
        // Each event is readable before the next is published: nothing
        // waits in a compressor.
        for k in 1..=3 {
            published += 1;
            app.publish("g", repetitive(published)).await;
            stream.until(|t| sse_messages(t).len() == k).await;
        }
        let text = stream.until(|_| true).await;
        let got = sse_messages(&text);
        let plain = plain_messages(&app, "g").await;
        assert_eq!(got, plain[plain.len() - 3..], "the same objects as the JSON a plain client gets");
        // Each event's id names the stream's channels (the cursor after it).
        let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
        assert!(ids.last().unwrap().contains(&format!("g:{published}:")), "{ids:?}");
        assert_eq!(ids.last().unwrap().split(',').count(), channels.split(',').count());
    }
}

#[tokio::test]
async fn sse_without_gzip_in_accept_encoding_is_identity_with_vary() {
    let app = spawn_app(HubKind::Memory).await;
    for (accept, path) in [
        (None, "/sse?channels=a"),
        (Some("gzip;q=0, br"), "/sse?channels=a"),
        (Some("identity"), "/sse?channels=a"),
        (Some("gzip"), "/sse?channels=a&compression=off"),
    ] {
        let mut request = app.http.get(app.url(path));
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "{accept:?} {path}");
        assert_eq!(response.headers()["vary"], "Accept-Encoding");
        let first = response.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b": pushwire stream open"), "{accept:?} {path}");
    }
}

#[tokio::test]
async fn polls_are_gzipped_when_large_enough_and_decode_to_the_same_answer() {
    let app = spawn_app(HubKind::Memory).await;
    for i in 1..=3 {
        app.publish("p", repetitive(i)).await;
    }
    for path in ["/poll?channels=p&cursor=p:0", "/long-poll?channels=p&cursor=p:0&timeout=0"] {
        let plain: Value = app.http.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        let response = app.http.get(app.url(path)).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(response.headers()["vary"], "Accept-Encoding");
        let body = response.bytes().await.unwrap();
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut inflated).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&inflated).unwrap(), plain, "{path}");
        assert!(body.len() * 2 <= inflated.len(), "{} gzipped bytes for {}", body.len(), inflated.len());
    }
    // An answer under the minimum size is sent as it is, still with Vary.
    let response = app.http.get(app.url("/poll?channels=p")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(response.headers().get("content-encoding"), None);
    assert_eq!(response.headers()["vary"], "Accept-Encoding");
    // A held long poll answered later is gzipped the same way.
    let url = app.url("/long-poll?channels=p&cursor=p:3&timeout=10");
    let held = tokio::spawn({
        let http = app.http.clone();
        async move { http.get(url).header("accept-encoding", "gzip").send().await.unwrap() }
    });
    app.wait_stats("the held poll", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    app.publish("p", repetitive(4)).await;
    let response = held.await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let body = response.bytes().await.unwrap();
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut inflated).unwrap();
    let answer: Value = serde_json::from_slice(&inflated).unwrap();
    assert_eq!(answer["messages"][0]["data"], repetitive(4));

    let off = spawn_app_with(HubKind::Memory, |c| c.http_compression = pushwire::config::Switch::Off).await;
    off.publish("p", repetitive(1)).await;
    let response =
        off.http.get(off.url("/poll?channels=p&cursor=p:0")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(response.headers().get("content-encoding"), None);
    assert_eq!(off.stats().await["compression"]["http"], "off");
}

#[tokio::test]
async fn stats_and_metrics_count_bytes_before_and_after_compression() {
    let app = spawn_app(HubKind::Memory).await;
    let stats = app.stats().await;
    assert_eq!(stats["compression"], json!({"websocket": "on", "http": "on", "min_size": 256}));
    let mut ws = RawWs::connect(app.addr, "/ws?channels=s", &[CHROMIUM_OFFER]).await;
    ws.data().await;
    ws.data().await;
    let before = app.stats().await;
    for i in 1..=5 {
        app.publish("s", repetitive(i)).await;
    }
    let got = messages(&mut ws, 5, 256).await;
    let wire: usize = got.iter().map(|(frame, _)| frame.wire_len).sum();
    let plain: usize = got.iter().map(|(_, v)| v.to_string().len() + 4).sum();
    let after = app
        .wait_stats("the frames counted", |s| {
            counter(s, "websocket", "bytes_sent") >= counter(&before, "websocket", "bytes_sent") + wire as u64
        })
        .await;
    let sent = counter(&after, "websocket", "bytes_sent") - counter(&before, "websocket", "bytes_sent");
    let uncompressed = counter(&after, "websocket", "bytes_sent_uncompressed")
        - counter(&before, "websocket", "bytes_sent_uncompressed");
    assert_eq!(sent, wire as u64, "bytes_sent is what went on the wire");
    assert_eq!(uncompressed, plain as u64, "the same frames uncompressed (a 4-byte header each at this size)");
    // Nothing compressed on the short poll: both equal.
    assert_eq!(counter(&after, "poll", "bytes_sent"), counter(&after, "poll", "bytes_sent_uncompressed"));
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("pushwire_sent_uncompressed_bytes_total{transport=\"websocket\"}"))
        .expect("the metric");
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= uncompressed as f64);
}
