//! The small JSON endpoints behind the dashboard: server time, a page's own
//! wire captures, dropping its connections, and the demo's settings.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

crate::for_each_hub!(
    time_is_the_server_clock_in_microseconds,
    a_tagged_page_sees_its_own_raw_bytes_exactly,
    dropping_a_page_cuts_its_connections_only,
    demo_settings_are_validated_and_applied,
);

async fn time_is_the_server_clock_in_microseconds(hub: HubKind) {
    let app = spawn_app(hub).await;
    let before = now_micros();
    let (status, body) = app.get("/api/time").await;
    assert_eq!(status, 200);
    let now = body["now"].as_u64().unwrap();
    assert!(now >= before && now <= now_micros(), "{now}");
}

async fn a_tagged_page_sees_its_own_raw_bytes_exactly(hub: HubKind) {
    let app = spawn_app(hub).await;
    app.publish_many("t", 2).await;
    let request = format!(
        "GET /poll?channels=t&cursor=t:0&client=page1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    let (status, report) = app.get("/api/inspect/page1").await;
    assert_eq!(status, 200);
    let poll = &report["transports"]["poll"];
    assert_eq!(poll["requests"], 1);
    assert_eq!(poll["bytes_received"], request.len() as u64);
    assert_eq!(poll["bytes_sent"], response.len() as u64);
    assert_eq!(poll["request"], request, "the request head, byte for byte");
    assert_eq!(poll["response"].as_str().unwrap().as_bytes(), response.as_slice(), "the whole (short) response");
    assert_eq!(report["transports"]["websocket"]["requests"], 0, "other lanes untouched");
    // Untagged traffic is not captured, and unknown pages are 404.
    let (status, body) = app.get("/api/inspect/nobody").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = app.get("/api/inspect/bad-id").await;
    assert_eq!(status, 400);
}

async fn dropping_a_page_cuts_its_connections_only(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut mine = app.ws("?channels=d&client=page2").await;
    mine.handshake(1).await;
    let mut other = app.ws("?channels=d").await;
    other.handshake(1).await;
    let mut sse = app.sse("?channels=d&client=page2").await;
    sse.expect("subscribed").await;
    let response = app.http.post(app.url("/api/inspect/page2/drop")).send().await.unwrap();
    assert_eq!(response.status(), 202);
    match mine.next().await {
        Err(WsEnd::Closed(Some(code), _)) => assert_eq!(code, 1012, "reconnect, as after a restart"),
        other => panic!("expected a close, got {other:?}"),
    }
    while sse.block().await.is_some() {}
    assert!(sse.raw.contains("dropped"), "the stream says why it ended");
    app.publish("d", json!("still here")).await;
    assert_eq!(other.expect("message").await["data"], "still here", "other clients are untouched");
}

async fn demo_settings_are_validated_and_applied(hub: HubKind) {
    let app = spawn_app(hub).await;
    let (_, demo) = app.get("/api/demo").await;
    assert_eq!(demo, json!({"channel": "demo", "rate": 0.0, "payload": 0}));
    let mut sse = app.sse("?channels=demo").await;
    sse.expect("subscribed").await;
    let set = |body: Value| app.http.post(app.url("/api/demo")).json(&body).send();
    for bad in [
        json!({"rate": -1, "payload": 0}),
        json!({"rate": 5000, "payload": 0}),
        json!({"rate": 1, "payload": 1_000_000}),
        json!({"rate": "fast"}),
    ] {
        let response = set(bad.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    let response = set(json!({"rate": 50, "payload": 100})).await.unwrap();
    assert_eq!(response.status(), 200);
    // The demo publisher starts at once with the new settings.
    let event = sse.expect("message").await.json();
    assert_eq!(event["data"]["pad"].as_str().map(str::len), Some(100));
    let response = set(json!({"rate": 0, "payload": 0})).await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["rate"], 0.0);
}
