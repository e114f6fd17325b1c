//! What only the Redis hub does: several instances serving one stream, and
//! surviving Redis going away, on a private redis-server.

use std::time::Duration;

use pushwire::hub::HistoryLimits;
use serde_json::{Value, json};

use crate::common::*;

fn limits() -> HistoryLimits {
    HistoryLimits { size: 1000, max_age: Duration::from_secs(600) }
}

/// Two pushwire instances on one private Redis.
async fn two_instances() -> (RedisServer, TestApp, TestApp) {
    let redis = RedisServer::start().await;
    let a = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let b = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    (redis, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_on_one_instance_reaches_all_four_transports_on_another() {
    let (_redis, a, b) = two_instances().await;
    let mut ws = b.ws("?channels=x").await;
    ws.handshake(1).await;
    let mut sse = b.sse("?channels=x").await;
    sse.expect("subscribed").await;
    let url = b.url("/long-poll?channels=x&cursor=x:0&timeout=30");
    let http = b.http.clone();
    let held = tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    b.wait_stats("the long poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;

    let mut published = Vec::new();
    for i in 1..=20 {
        published.push(a.publish("x", json!({"i": i})).await);
    }
    assert_eq!(published.iter().map(|p| p["seq"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());

    let over_ws = ws.messages(20).await;
    let over_sse: Vec<Value> = sse.messages(20).await.iter().map(SseEvent::json).collect();
    let (_, polled) = b.get("/poll?channels=x&cursor=x:0").await;
    let over_poll = polled["messages"].as_array().unwrap().clone();
    let long = tokio::time::timeout(PATIENCE, held).await.unwrap().unwrap();
    let mut over_long_poll = long["messages"].as_array().unwrap().clone();
    let mut cursor = long["cursor"].as_str().unwrap().to_string();
    while over_long_poll.len() < 20 {
        let (_, more) = b.get(&format!("/long-poll?channels=x&cursor={cursor}&timeout=5")).await;
        over_long_poll.extend(more["messages"].as_array().unwrap().iter().cloned());
        cursor = more["cursor"].as_str().unwrap().to_string();
    }
    for (name, got) in [("ws", &over_ws), ("sse", &over_sse), ("poll", &over_poll), ("long-poll", &over_long_poll)] {
        for (message, answer) in got.iter().zip(&published) {
            assert_eq!(message["seq"], answer["seq"], "{name}");
            assert_eq!(message["ts"], answer["ts"], "{name}: the same message everywhere");
        }
        assert_eq!(got.len(), 20, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_instances_make_one_gap_free_sequence() {
    let (_redis, a, b) = two_instances().await;
    let mut on_a = a.ws("?channels=c").await;
    on_a.handshake(1).await;
    let mut on_b = b.ws("?channels=c").await;
    on_b.handshake(1).await;
    let publishers: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|app| (0..3).map(move |p| (app.url("/channels/c/messages"), app.http.clone(), p)))
        .map(|(url, http, p)| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let answer: Value =
                        http.post(&url).json(&json!({"p": p, "i": i})).send().await.unwrap().json().await.unwrap();
                    seqs.push(answer["seq"].as_u64().unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for publisher in publishers {
        all.extend(publisher.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=300).collect::<Vec<_>>(), "no duplicate, no skipped seq");
    let seen_a = on_a.messages(300).await;
    let seen_b = on_b.messages(300).await;
    assert_eq!(seqs(&seen_a), (1..=300).collect::<Vec<_>>());
    assert_eq!(seen_a, seen_b, "the same order, the same messages, on both instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_instance_over_every_transport() {
    let (_redis, a, b) = two_instances().await;
    let mut ws = a.ws("?channels=r").await;
    let epoch = ws.handshake(1).await[0]["epoch"].as_str().unwrap().to_string();
    a.publish_many("r", 6).await;
    assert_eq!(seqs(&ws.messages(3).await), [1, 2, 3]);
    drop(ws); // left instance A having seen 1..=3
    b.publish_many("r", 4).await; // 7..=10 while away
    let cursor = format!("r:3:{epoch}");

    let mut ws = b.ws(&format!("?channels=r&cursor={cursor}")).await;
    ws.handshake(1).await;
    assert_eq!(seqs(&ws.messages(7).await), (4..=10).collect::<Vec<_>>());
    let mut sse = Sse::open(&b.http, &b.url("/sse?channels=r"), Some(&cursor)).await;
    sse.expect("subscribed").await;
    let got: Vec<Value> = sse.messages(7).await.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&got), (4..=10).collect::<Vec<_>>());
    for path in ["/poll", "/long-poll"] {
        let (_, answer) = b.get(&format!("{path}?channels=r&cursor={cursor}&timeout=0")).await;
        assert_eq!(seqs(answer["messages"].as_array().unwrap()), (4..=10).collect::<Vec<_>>(), "{path}");
        assert_eq!(answer["resets"], json!([]), "{path}");
    }
    // Nothing more: no duplicates trail behind.
    ws.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pubsub_connection_per_instance_and_none_for_idle_channels() {
    let (redis, a, b) = two_instances().await;
    let mut clients = Vec::new();
    for (i, app) in [&a, &b].iter().enumerate() {
        for n in 0..5 {
            let mut ws = app.ws(&format!("?channels=k{n},shared,i{i}")).await;
            ws.handshake(3).await;
            clients.push(ws);
        }
    }
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let list: String =
        redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut admin).await.unwrap();
    assert_eq!(list.lines().count(), 2, "one pub/sub connection per instance:\n{list}");
    let channels: Vec<String> =
        redis::cmd("PUBSUB").arg("CHANNELS").arg("pwtest:live:*").query_async(&mut admin).await.unwrap();
    assert_eq!(channels.len(), 5 + 1 + 2, "{channels:?}");
    drop(clients);
    // Once nobody listens, the instances unsubscribe.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let channels: Vec<String> =
            redis::cmd("PUBSUB").arg("CHANNELS").arg("pwtest:live:*").query_async(&mut admin).await.unwrap();
        if channels.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still subscribed to {channels:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish_through_outage(app: &TestApp, channel: &str, i: u64) -> (u64, u32) {
    publish_retrying(&app.http, &app.url(&format!("/channels/{channel}/messages")), i).await
}

async fn readyz(app: &TestApp) -> u16 {
    app.get("/readyz").await.0
}

async fn wait_ready(app: &TestApp, status: u16) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while readyz(app).await != status {
        assert!(tokio::time::Instant::now() < deadline, "readyz never became {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_and_restarted_with_its_data_loses_nothing() {
    let mut redis = RedisServer::start_persistent().await;
    let a = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let b = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let mut ws = a.ws("?channels=o").await;
    ws.handshake(1).await;
    let mut sse = a.sse("?channels=o").await;
    sse.expect("subscribed").await;

    // A steady publisher on B that keeps trying through the outage.
    const TOTAL: u64 = 40;
    let (progress, mut published) = tokio::sync::watch::channel((0u64, 0u32));
    let publisher = {
        let (http, url) = (b.http.clone(), b.url("/channels/o/messages"));
        tokio::spawn(async move {
            let mut refused_total = 0;
            for i in 1..=TOTAL {
                let (seq, refused) = publish_retrying(&http, &url, i).await;
                assert_eq!(seq, i, "one publish, one seq, even across the outage");
                refused_total += refused;
                progress.send_replace((i, refused_total));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            refused_total
        })
    };
    published.wait_for(|(n, _)| *n >= 10).await.unwrap();
    redis.kill(true).await;
    wait_ready(&a, 503).await;
    let response = a.http.post(a.url("/channels/o/messages")).json(&json!("refused")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // Open connections stay open while Redis is away.
    ws.send(json!({"type": "ping", "ref": "alive"})).await;
    let mut before_pong = Vec::new();
    let pong = loop {
        let frame = ws.json().await;
        if frame["type"] == "pong" {
            break frame;
        }
        before_pong.push(frame);
    };
    assert_eq!(pong["ref"], "alive");
    redis.restart().await;
    wait_ready(&a, 200).await;
    let refused = tokio::time::timeout(PATIENCE * 2, publisher).await.expect("publisher finished").unwrap();
    assert!(refused > 0, "the publisher did run into the outage");

    let mut over_ws = before_pong;
    over_ws.extend(ws.messages(TOTAL as usize - over_ws.len()).await);
    assert_eq!(seqs(&over_ws), (1..=TOTAL).collect::<Vec<_>>());
    let over_sse: Vec<Value> = sse.messages(TOTAL as usize).await.iter().map(SseEvent::json).collect();
    assert_eq!(seqs(&over_sse), (1..=TOTAL).collect::<Vec<_>>());
    assert!(over_sse.iter().enumerate().all(|(k, m)| m["data"]["i"] == k as u64 + 1), "each message once, in order");
    ws.assert_quiet(Duration::from_millis(200)).await;
}

/// Publishes `{"i": i}`, retrying while the hub answers 503; returns the seq
/// and how many times it was refused.
async fn publish_retrying(http: &reqwest::Client, url: &str, i: u64) -> (u64, u32) {
    let mut refused = 0;
    loop {
        let response = http.post(url).json(&json!({"i": i})).send().await.unwrap();
        match response.status().as_u16() {
            201 => return (response.json::<Value>().await.unwrap()["seq"].as_u64().unwrap(), refused),
            503 => {
                assert!(response.headers().contains_key("retry-after"), "503 carries Retry-After");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "unavailable");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_an_instance_lost_its_pubsub_link_are_filled_in() {
    let (redis, a, b) = two_instances().await;
    let mut ws = a.ws("?channels=g").await;
    ws.handshake(1).await;
    b.publish_many("g", 3).await;
    assert_eq!(seqs(&ws.messages(3).await), [1, 2, 3]);
    // Cut every pub/sub link and keep it down (no new connections) while the
    // other instance publishes over its open command connection.
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let (killed, ()): (u64, ()) = redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(1)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "A's link (B has no subscribers, so no pub/sub link)");
    wait_ready(&a, 503).await;
    for i in 4..=8 {
        publish_through_outage(&b, "g", i).await;
    }
    ws.assert_quiet(Duration::from_millis(300)).await;
    let () = redis::cmd("CONFIG").arg("SET").arg("maxclients").arg(10_000).query_async(&mut admin).await.unwrap();
    // The quiet channel gets nothing new: the hub's resync must bring 4..=8.
    let got = ws.messages(5).await;
    assert_eq!(seqs(&got), [4, 5, 6, 7, 8]);
    ws.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_gives_an_explicit_reset() {
    let mut redis = RedisServer::start_persistent().await;
    let app = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let mut ws = app.ws("?channels=e").await;
    let old_epoch = ws.handshake(1).await[0]["epoch"].as_str().unwrap().to_string();
    app.publish_many("e", 5).await;
    assert_eq!(seqs(&ws.messages(5).await), [1, 2, 3, 4, 5]);
    redis.kill(false).await;
    wait_ready(&app, 503).await;
    redis.restart().await;
    wait_ready(&app, 200).await;
    let (seq, _) = publish_through_outage(&app, "e", 1).await;
    assert_eq!(seq, 1, "the sequence was lost with the data");
    let reset = ws.expect("reset").await;
    assert_eq!(reset["reason"], "epoch_changed");
    assert_eq!(reset["seq"], 0);
    let new_epoch = reset["epoch"].as_str().unwrap();
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(ws.expect("message").await["seq"], 1);
    // A poller holding the old cursor is told too.
    let (_, answer) = app.get(&format!("/poll?channels=e&cursor=e:5:{old_epoch}")).await;
    assert_eq!(answer["resets"][0]["reason"], "epoch_changed");
    assert_eq!(seqs(answer["messages"].as_array().unwrap()), [1]);
}
