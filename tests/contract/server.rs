//! Around the stream: health, readiness, stats with honest byte counts,
//! Prometheus metrics and the page.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

crate::for_each_hub!(
    health_and_readiness,
    poll_bytes_are_counted_exactly_as_on_the_wire,
    websocket_bytes_include_the_handshake_and_frame_headers,
    stats_count_requests_messages_and_connections,
    metrics_are_prometheus_text,
    index_page_renders,
    static_files_come_from_the_configured_directory,
);

async fn health_and_readiness(hub: HubKind) {
    let app = spawn_app(hub).await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
}

async fn poll_bytes_are_counted_exactly_as_on_the_wire(hub: HubKind) {
    let app = spawn_app(hub).await;
    app.publish_many("bytes", 3).await;
    let before = app.stats().await;
    let request = format!(
        "GET /poll?channels=bytes&cursor=bytes:0 HTTP/1.1\r\nHost: {}\r\nUser-Agent: raw\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let response = raw_exchange(&app, &request).await;
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let after = app.stats().await;
    assert_eq!(
        counter(&after, "poll", "bytes_received") - counter(&before, "poll", "bytes_received"),
        request.len() as u64
    );
    assert_eq!(
        counter(&after, "poll", "bytes_sent") - counter(&before, "poll", "bytes_sent"),
        response.len() as u64,
        "headers included"
    );
    let body_start = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(body_start > 60, "the response headers are a real part of the count");
}

async fn websocket_bytes_include_the_handshake_and_frame_headers(hub: HubKind) {
    let app = spawn_app(hub).await;
    let before = app.stats().await;
    let (mut tcp, request) = app.raw_upgrade("/ws?channels=wire").await;
    // Read the 101, the welcome and the subscribed frame.
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while count_frames(&received) < 2 {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("no frames").unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&buf[..n]);
    }
    // One masked client frame: a ping with ref, 2-byte header + 4-byte mask.
    let payload = br#"{"type":"ping","ref":"w"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&frame).await.unwrap();
    while count_frames(&received) < 3 {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("no pong").unwrap();
        received.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    let after = app.wait_stats("the socket to close", |s| s["transports"]["websocket"]["connections_open"] == 0).await;
    assert_eq!(
        counter(&after, "websocket", "bytes_sent") - counter(&before, "websocket", "bytes_sent"),
        received.len() as u64
    );
    assert_eq!(
        counter(&after, "websocket", "bytes_received") - counter(&before, "websocket", "bytes_received"),
        (request.len() + frame.len()) as u64
    );
}

/// Complete unmasked server frames after the HTTP head (payloads < 126 bytes or 16-bit lengths).
pub(crate) fn count_frames(received: &[u8]) -> usize {
    let Some(head) = received.windows(4).position(|w| w == b"\r\n\r\n") else { return 0 };
    let (mut at, mut frames) = (head + 4, 0);
    while at + 2 <= received.len() {
        let (len, header) = match received[at + 1] & 0x7f {
            126 if at + 4 <= received.len() => (u16::from_be_bytes([received[at + 2], received[at + 3]]) as usize, 4),
            126 => break,
            n => (n as usize, 2),
        };
        if at + header + len > received.len() {
            break;
        }
        at += header + len;
        frames += 1;
    }
    frames
}

async fn stats_count_requests_messages_and_connections(hub: HubKind) {
    // A server learns that an SSE client vanished on its next write: the
    // heartbeat bounds how long that takes. A real interval, as the server's
    // clock cannot be paused; the test waits on the gauge, not on the clock.
    let app = spawn_app_with(hub, |c| c.sse_heartbeat = std::time::Duration::from_millis(100)).await;
    let mut ws = app.ws("?channels=st").await;
    ws.handshake(1).await;
    let mut sse = app.sse("?channels=st").await;
    sse.expect("subscribed").await;
    let stats = app
        .wait_stats("both streams open", |s| {
            s["transports"]["websocket"]["connections_open"] == 1 && s["transports"]["sse"]["connections_open"] == 1
        })
        .await;
    assert_eq!(stats["hub_ready"], true);
    app.publish_many("st", 5).await;
    ws.messages(5).await;
    sse.messages(5).await;
    let (_, _) = app.get("/poll?channels=st&cursor=st:0").await;
    let stats = app.stats().await;
    for transport in ["websocket", "sse", "poll"] {
        assert_eq!(counter(&stats, transport, "messages_delivered"), 5, "{transport}");
        assert!(counter(&stats, transport, "bytes_sent") > 5 * 60, "{transport}");
    }
    assert_eq!(counter(&stats, "publish", "requests"), 5);
    assert_eq!(counter(&stats, "poll", "empty_polls"), 0);
    drop(ws);
    drop(sse);
    app.wait_stats("both streams closed", |s| {
        s["transports"]["websocket"]["connections_open"] == 0 && s["transports"]["sse"]["connections_open"] == 0
    })
    .await;
}

async fn metrics_are_prometheus_text(hub: HubKind) {
    let app = spawn_app(hub).await;
    app.publish("m", json!(1)).await;
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE pushwire_sent_bytes_total counter"));
    assert!(text.contains("pushwire_requests_total{transport=\"publish\"} 1"), "{text}");
    assert!(text.contains("pushwire_hub_ready 1"));
}

async fn index_page_renders(hub: HubKind) {
    let app = spawn_app(hub).await;
    let response = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = response.text().await.unwrap();
    assert!(html.contains("<title>pushwire"), "{html}");
    for lane in ["lane-websocket", "lane-sse", "lane-long-poll", "lane-poll"] {
        assert!(html.contains(lane), "{lane}");
    }
    // Relative: the page's links hold under a path prefix (`--base-path`, or a gateway's).
    assert!(html.contains(r#"<script type="module" src="static/js/dashboard.js">"#));
    for (path, kind) in [
        ("/static/css/site.css", "text/css"),
        ("/static/css/dashboard.css", "text/css"),
        ("/static/js/dashboard.js", "javascript"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().contains(kind), "{path}");
    }
}

async fn static_files_come_from_the_configured_directory(hub: HubKind) {
    let dir = std::env::temp_dir().join(format!("pushwire-static-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "from elsewhere").unwrap();
    let static_dir = dir.clone();
    let app = spawn_app_with(hub, move |c| c.static_dir = Some(static_dir)).await;
    let response = app.http.get(app.url("/static/hello.txt")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "from elsewhere");
    let _ = std::fs::remove_dir_all(dir);
}
