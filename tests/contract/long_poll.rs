//! `GET /long-poll`: held answers, cursors, batches, timeouts (resets: `resets.rs`).

use serde_json::{Value, json};

use crate::common::*;

crate::for_each_hub!(
    holds_until_a_message_arrives,
    answers_at_once_when_messages_wait,
    times_out_empty_with_a_cursor_naming_every_channel,
    keeps_order_across_a_burst_in_batches,
    resumes_without_loss_or_duplicates,
    bad_input_is_refused,
    shutdown_answers_held_polls,
);

async fn holds_until_a_message_arrives(hub: HubKind) {
    let app = spawn_app(hub).await;
    let url = app.url("/long-poll?channels=held&timeout=30");
    let http = app.http.clone();
    let held = tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    app.wait_stats("the poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    let data = json!({"text": "now"});
    let published = app.publish("held", data.clone()).await;
    let answer = tokio::time::timeout(PATIENCE, held).await.expect("not answered").unwrap();
    assert_eq!(answer["messages"].as_array().unwrap().len(), 1);
    assert_message(&answer["messages"][0], "held", 1, &data);
    assert_eq!(answer["resets"], json!([]));
    assert_eq!(answer["cursor"], format!("held:1:{}", published["epoch"].as_str().unwrap()));
}

async fn answers_at_once_when_messages_wait(hub: HubKind) {
    let app = spawn_app(hub).await;
    app.publish_many("w", 3).await;
    // timeout=999 is clamped to 60, but messages are already there.
    let (status, answer) = app.get("/long-poll?channels=w&cursor=w:1&timeout=999").await;
    assert_eq!(status, 200);
    assert_eq!(seqs(answer["messages"].as_array().unwrap()), [2, 3]);
}

async fn times_out_empty_with_a_cursor_naming_every_channel(hub: HubKind) {
    let app = spawn_app(hub).await;
    let epoch = app.publish("a", json!(1)).await["epoch"].as_str().unwrap().to_string();
    let (status, answer) = app.get("/long-poll?channels=a,quiet&timeout=0").await;
    assert_eq!(status, 200);
    // One Redis and the memory hub have one epoch for new channels; a
    // cluster has one per channel.
    let quiet = quiet_epoch(hub, &answer, &epoch);
    assert_eq!(answer, json!({"messages": [], "resets": [], "cursor": format!("a:1:{epoch},quiet:0:{quiet}")}));
    let (_, answer) = app.get(&format!("/long-poll?channels=a,quiet&timeout=1&cursor=a:1:{epoch}")).await;
    assert_eq!(answer["messages"], json!([]));
    let quiet = quiet_epoch(hub, &answer, &epoch);
    assert_eq!(answer["cursor"], format!("a:1:{epoch},quiet:0:{quiet}"));
    let stats = app.stats().await;
    assert_eq!(stats["transports"]["long_poll"]["empty_polls"], 2);
}

async fn keeps_order_across_a_burst_in_batches(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.poll_max_messages = 50).await;
    app.publish_many("b", 120).await;
    let mut cursor = "b:0".to_string();
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while got.len() < 120 {
        let (_, answer) = app.get(&format!("/long-poll?channels=b&cursor={cursor}&timeout=5")).await;
        let messages = answer["messages"].as_array().unwrap();
        sizes.push(messages.len());
        got.extend(messages.iter().cloned());
        cursor = answer["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(seqs(&got), (1..=120).collect::<Vec<_>>());
}

async fn resumes_without_loss_or_duplicates(hub: HubKind) {
    let app = spawn_app(hub).await;
    let (_, first) = app.get("/long-poll?channels=r&timeout=0").await;
    let mut cursor = first["cursor"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    for round in 0..5u64 {
        app.publish_many("r", round + 1).await;
        let (_, answer) = app.get(&format!("/long-poll?channels=r&cursor={cursor}&timeout=5")).await;
        seen.extend(seqs(answer["messages"].as_array().unwrap()));
        cursor = answer["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(seen, (1..=15).collect::<Vec<_>>());
}

async fn bad_input_is_refused(hub: HubKind) {
    let app = spawn_app(hub).await;
    for (query, code) in [
        ("", "bad_request"),
        ("?channels=", "bad_request"),
        ("?channels=%2F", "bad_channel"),
        ("?channels=a&cursor=a:1:x:y", "bad_cursor"),
        ("?channels=a&timeout=-1", "bad_request"),
        ("?channels=a&timeout=1.5", "bad_request"),
        ("?channels=a&timeout=", "bad_request"),
        ("?channels=a&timeout=soon", "bad_request"),
    ] {
        let (status, body) = app.get(&format!("/long-poll{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{query}: {body}");
    }
}

async fn shutdown_answers_held_polls(hub: HubKind) {
    let app = spawn_app(hub).await;
    let url = app.url("/long-poll?channels=s&timeout=60");
    let http = app.http.clone();
    let held = tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    app.wait_stats("the poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    app.state.ctx.shutdown.trigger();
    let answer = tokio::time::timeout(PATIENCE, held).await.expect("held poll not answered").unwrap();
    assert_eq!(answer["messages"], json!([]));
    assert!(answer["cursor"].as_str().unwrap().starts_with("s:0:"));
}

/// The epoch an answer's cursor names for the never-published channel
/// `quiet`: the memory hub's one epoch `epoch`; on Redis every channel
/// starts in an epoch of its own.
fn quiet_epoch(hub: HubKind, answer: &serde_json::Value, epoch: &str) -> String {
    let cursor = answer["cursor"].as_str().unwrap_or_default();
    let quiet = cursor.rsplit(':').next().unwrap_or_default().to_string();
    if hub == HubKind::Memory {
        assert_eq!(quiet, epoch, "{answer}");
    }
    quiet
}
