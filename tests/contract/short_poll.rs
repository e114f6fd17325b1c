//! `GET /poll`: immediate answers with the same shape as long polling.

use serde_json::json;

use crate::common::*;

crate::for_each_hub!(
    answers_at_once_even_when_empty,
    delivers_messages_with_every_field,
    keeps_order_across_a_burst_in_batches,
    resumes_without_loss_or_duplicates,
    bad_input_is_refused,
);

async fn answers_at_once_even_when_empty(hub: HubKind) {
    let app = spawn_app(hub).await;
    let (status, answer) = app.get("/poll?channels=empty,other").await;
    assert_eq!(status, 200);
    assert_eq!(answer["messages"], json!([]));
    assert_eq!(answer["resets"], json!([]));
    let cursor = answer["cursor"].as_str().unwrap();
    assert!(cursor.starts_with("empty:0:") && cursor.contains(",other:0:"), "{cursor}");
    assert_eq!(app.stats().await["transports"]["poll"]["empty_polls"], 1);
}

async fn delivers_messages_with_every_field(hub: HubKind) {
    let app = spawn_app(hub).await;
    let (_, first) = app.get("/poll?channels=d").await;
    let data = json!({"k": "v", "n": 12.5});
    app.publish("d", data.clone()).await;
    let (_, answer) = app.get(&format!("/poll?channels=d&cursor={}", first["cursor"].as_str().unwrap())).await;
    assert_message(&answer["messages"][0], "d", 1, &data);
    assert_eq!(answer["messages"].as_array().unwrap().len(), 1);
}

async fn keeps_order_across_a_burst_in_batches(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.poll_max_messages = 100).await;
    app.publish_many("b", 250).await;
    let mut cursor = "b:0".to_string();
    let mut got = Vec::new();
    for expected in [100, 100, 50, 0] {
        let (_, answer) = app.get(&format!("/poll?channels=b&cursor={cursor}")).await;
        assert_eq!(answer["messages"].as_array().unwrap().len(), expected);
        got.extend(answer["messages"].as_array().unwrap().iter().cloned());
        cursor = answer["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(seqs(&got), (1..=250).collect::<Vec<_>>());
}

async fn resumes_without_loss_or_duplicates(hub: HubKind) {
    let app = spawn_app(hub).await;
    let (_, first) = app.get("/poll?channels=x,y").await;
    let mut cursor = first["cursor"].as_str().unwrap().to_string();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        app.publish_many("x", 3).await;
        app.publish_many("y", 2).await;
        let (_, answer) = app.get(&format!("/poll?channels=x,y&cursor={cursor}")).await;
        for m in answer["messages"].as_array().unwrap() {
            match m["channel"].as_str().unwrap() {
                "x" => xs.push(m["seq"].as_u64().unwrap()),
                _ => ys.push(m["seq"].as_u64().unwrap()),
            }
        }
        cursor = answer["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(xs, (1..=12).collect::<Vec<_>>());
    assert_eq!(ys, (1..=8).collect::<Vec<_>>());
}

async fn bad_input_is_refused(hub: HubKind) {
    let app = spawn_app(hub).await;
    for (query, code) in [
        ("", "bad_request"),
        ("?channels=a,,b", "bad_channel"),
        (&format!("?channels={}", "x".repeat(65)), "bad_channel"),
        ("?channels=a&cursor=a:1:b:c", "bad_cursor"),
        ("?channels=a&cursor=,", "bad_cursor"),
    ] {
        let (status, body) = app.get(&format!("/poll{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{query}: {body}");
    }
}
