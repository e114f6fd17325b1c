//! `GET /sse`: stream framing, resume by cursor and Last-Event-ID (resets: `resets.rs`).

use std::time::Duration;

use serde_json::json;

use crate::common::*;

crate::for_each_hub!(
    opens_with_comment_retry_and_subscribed,
    delivers_messages_with_cursor_ids,
    keeps_order_across_a_burst,
    resumes_from_cursor_and_last_event_id,
    last_event_id_wins_over_cursor,
    multi_channel_ids_name_every_channel,
    heartbeat_comments_arrive,
    bad_input_is_refused,
    shutdown_ends_the_stream,
    slow_consumer_stream_ends_and_resumes_without_loss,
);

async fn opens_with_comment_retry_and_subscribed(hub: HubKind) {
    let app = spawn_app(hub).await;
    app.publish_many("o", 3).await;
    let mut sse = app.sse("?channels=o").await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    assert!(sse.headers["cache-control"].to_str().unwrap().contains("no-cache"));
    let open = sse.block().await.unwrap();
    assert!(!open.comments.is_empty(), "an opening comment: {open:?}");
    assert_eq!(open.retry, Some(2000));
    assert!(sse.raw.starts_with(':'), "the very first bytes are a comment: {:?}", sse.raw);
    let subscribed = sse.expect("subscribed").await;
    let data = subscribed.json();
    assert_eq!(
        (data["type"].as_str(), data["channel"].as_str(), data["seq"].as_u64()),
        (Some("subscribed"), Some("o"), Some(3))
    );
    let epoch = data["epoch"].as_str().unwrap();
    assert_eq!(subscribed.id.as_deref(), Some(format!("o:3:{epoch}").as_str()), "starts live at the head");
}

async fn delivers_messages_with_cursor_ids(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut sse = app.sse("?channels=news").await;
    let epoch = sse.expect("subscribed").await.json()["epoch"].as_str().unwrap().to_string();
    let data = json!({"text": "hello", "list": [1, "two"]});
    app.publish("news", data.clone()).await;
    let event = sse.expect("message").await;
    assert_message(&event.json(), "news", 1, &data);
    assert_eq!(event.id.unwrap(), format!("news:1:{epoch}"));
}

async fn keeps_order_across_a_burst(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut sse = app.sse("?channels=burst").await;
    sse.expect("subscribed").await;
    app.publish_many("burst", 300).await;
    let events = sse.messages(300).await;
    let messages: Vec<_> = events.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&messages), (1..=300).collect::<Vec<_>>());
    let epoch = app.publish("burst", json!(0)).await["epoch"].as_str().unwrap().to_string();
    assert_eq!(events[299].id.as_deref(), Some(format!("burst:300:{epoch}").as_str()));
}

async fn resumes_from_cursor_and_last_event_id(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut sse = app.sse("?channels=r").await;
    sse.expect("subscribed").await;
    app.publish_many("r", 10).await;
    let got = sse.messages(4).await;
    let last_id = got[3].id.clone().unwrap();
    drop(sse);
    app.publish_many("r", 5).await;
    // As a browser reconnects: Last-Event-ID.
    let mut again = Sse::open(&app.http, &app.url("/sse?channels=r"), Some(&last_id)).await;
    let subscribed = again.expect("subscribed").await;
    assert_eq!(subscribed.id.as_deref(), Some(last_id.as_str()), "resumes at the given position");
    let rest: Vec<_> = again.messages(11).await.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&rest), (5..=15).collect::<Vec<_>>());
    // As a script does: ?cursor=.
    let mut third = app.sse(&format!("?channels=r&cursor={last_id}")).await;
    third.expect("subscribed").await;
    let rest: Vec<_> = third.messages(11).await.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&rest), (5..=15).collect::<Vec<_>>());
    app.publish("r", json!("live")).await;
    assert_eq!(third.expect("message").await.json()["seq"], 16, "then live, no duplicate");
}

async fn last_event_id_wins_over_cursor(hub: HubKind) {
    let app = spawn_app(hub).await;
    let epoch = app.publish_many("w", 6).await["epoch"].as_str().unwrap().to_string();
    let url = app.url(&format!("/sse?channels=w&cursor=w:1:{epoch}"));
    let mut sse = Sse::open(&app.http, &url, Some(&format!("w:4:{epoch}"))).await;
    sse.expect("subscribed").await;
    let got: Vec<_> = sse.messages(2).await.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&got), [5, 6]);
}

async fn multi_channel_ids_name_every_channel(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut sse = app.sse("?channels=a,quiet").await;
    let first = sse.expect("subscribed").await;
    let epoch = first.json()["epoch"].as_str().unwrap().to_string();
    let second = sse.expect("subscribed").await.json();
    assert_eq!(second["channel"], "quiet");
    // One epoch for every new channel on the memory hub; on Redis every
    // channel starts in an epoch of its own.
    let quiet = second["epoch"].as_str().unwrap().to_string();
    if hub == HubKind::Memory {
        assert_eq!(quiet, epoch);
    }
    assert_eq!(first.id.as_deref(), Some(format!("a:0:{epoch},quiet:0:{quiet}").as_str()));
    let published = app.publish_many("a", 2).await;
    let events = sse.messages(2).await;
    let epoch = published["epoch"].as_str().unwrap();
    assert_eq!(events[1].id.as_deref(), Some(format!("a:2:{epoch},quiet:0:{quiet}").as_str()));
}

/// Only that heartbeats reach a real socket: the server runs on actix's own
/// runtimes, whose clock a test cannot pause, so this needs a short real
/// interval and waits for the comment. The exact schedule is a unit test on a
/// paused clock in `src/transport/sse.rs`.
async fn heartbeat_comments_arrive(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.sse_heartbeat = Duration::from_millis(50)).await;
    let mut sse = app.sse("?channels=h").await;
    sse.expect("subscribed").await;
    let heartbeat = sse.block().await.unwrap();
    assert!(heartbeat.data.is_none() && !heartbeat.comments.is_empty(), "{heartbeat:?}");
}

async fn bad_input_is_refused(hub: HubKind) {
    let app = spawn_app(hub).await;
    for (query, code) in [
        ("", "bad_request"),
        ("?channels=", "bad_request"),
        ("?channels=a%20b", "bad_channel"),
        ("?channels=a&cursor=a", "bad_cursor"),
        ("?channels=a&cursor=a:1:toolongepoch12345", "bad_cursor"),
    ] {
        let (status, body) = app.get(&format!("/sse{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{query}");
    }
    let response = app.http.get(app.url("/sse?channels=a")).header("last-event-id", "a:nope").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_cursor");
}

async fn shutdown_ends_the_stream(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut sse = app.sse("?channels=s").await;
    sse.expect("subscribed").await;
    app.state.ctx.shutdown.trigger();
    while sse.block().await.is_some() {}
}

async fn slow_consumer_stream_ends_and_resumes_without_loss(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.queue_size = 8).await;
    let mut sse = app.sse("?channels=slow").await;
    sse.expect("subscribed").await;
    let pad = "p".repeat(32 * 1024);
    let total = 400u64;
    for i in 1..=total {
        app.publish("slow", json!({"i": i, "pad": pad})).await;
    }
    // Now read: a gap-free prefix, then the stream ends.
    let mut last = 0;
    let mut last_id = None;
    while let Some(event) = sse.event().await {
        let m = event.json();
        assert_eq!(m["seq"], last + 1, "in order, no gap before the cut");
        last += 1;
        last_id = event.id;
    }
    assert!(last < total, "the stream was cut before the end ({last} of {total})");
    assert!(sse.raw.contains("too slow"), "the stream says why it ended");
    let mut again = Sse::open(&app.http, &app.url("/sse?channels=slow"), last_id.as_deref()).await;
    again.expect("subscribed").await;
    let rest: Vec<_> = again.messages((total - last) as usize).await.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&rest), (last + 1..=total).collect::<Vec<_>>());
}
