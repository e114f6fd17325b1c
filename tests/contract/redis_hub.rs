//! What only the Redis hub does: several instances serving one stream, and
//! surviving Redis going away, on a private redis-server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pushwire::hub::{HistoryLimits, Hub, HubError};
use pushwire::message::ChannelName;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::common::follow::*;
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
    let over_long_poll = b.long_poll_on("x", long, 20).await;
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
    a.wait_ready(503).await;
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
    a.wait_ready(200).await;
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
    let (answer, refused) = publish_until_acked(http, url, &format!("retry-{i}"), &json!({"i": i})).await;
    (answer["seq"].as_u64().unwrap(), refused)
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
    // A's link, and B's once its canary subscribed it (B has no subscribers).
    assert!((1..=2).contains(&killed), "{killed} pub/sub links cut");
    a.wait_ready(503).await;
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
    app.wait_ready(503).await;
    redis.restart().await;
    app.wait_ready(200).await;
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

fn channel(name: &str) -> ChannelName {
    name.parse().unwrap()
}

fn data(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).unwrap()
}

async fn admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_on_another_instance_publishes_nothing() {
    let redis = RedisServer::start().await;
    let a = redis_hub(&redis.url(), limits()).await;
    let b = redis_hub(&redis.url(), limits()).await;
    let key = "pay-7".parse().unwrap();
    let first = a.publish(channel("i"), data(r#"{"paid":7}"#), Some(key)).await.unwrap();
    let retry = b.publish(channel("i"), data(r#"{"paid":7}"#), Some("pay-7".parse().unwrap())).await.unwrap();
    assert_eq!((retry.seq, retry.ts, &retry.epoch), (first.seq, first.ts, &first.epoch));
    assert_eq!(retry.json(), first.json(), "the same answer, byte for byte");
    let h = b.history(channel("i"), 0, 10).await.unwrap();
    assert_eq!(h.messages.iter().map(|m| (m.seq, m.data())).collect::<Vec<_>>(), [(1, r#"{"paid":7}"#)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires_and_publishing_refreshes_all_but_the_hub_epoch() {
    let redis = RedisServer::start().await;
    let hub = redis_hub(&redis.url(), limits()).await;
    for n in 0..300 {
        let key = (n % 3 == 0).then(|| format!("k{n}").parse().unwrap());
        hub.publish(channel(&format!("t{n}")), data("1"), key).await.unwrap();
    }
    hub.history(channel("never"), 0, 10).await.unwrap();
    let mut admin = admin(&redis).await;
    let age = limits().max_age.as_millis() as i64;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut admin).await.unwrap();
    let mut pttl = redis::pipe();
    for key in &keys {
        pttl.cmd("PTTL").arg(key);
    }
    let ttls: Vec<i64> = pttl.query_async(&mut admin).await.unwrap();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, &ttl) in keys.iter().zip(&ttls) {
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        let (kind, at_most) = match key.rsplit(':').next() {
            Some("meta") => ("meta", 2 * age),
            Some("frames") => ("frames", age),
            _ if key.contains(":idem:") => ("idem", 300_000),
            _ => ("epoch", age),
        };
        assert!(ttl <= at_most, "{key}: {ttl} ms");
        if kind == "meta" {
            assert!(ttl > age, "{key}: a channel's sequence outlives its history ({ttl} ms)");
        }
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(kinds, BTreeMap::from([("epoch", 1), ("frames", 300), ("idem", 100), ("meta", 300)]), "{keys:?}");
    assert!(keys.contains(&"pwtest:epoch".to_string()));

    // A publish refreshes its channel's keys, not the hub's epoch.
    let short: Vec<String> = ["pwtest:ch:t1:meta", "pwtest:ch:t1:frames", "pwtest:epoch"].map(String::from).into();
    let mut expire = redis::pipe();
    for key in &short {
        expire.cmd("PEXPIRE").arg(key).arg(5_000).ignore();
    }
    let () = expire.query_async(&mut admin).await.unwrap();
    hub.publish(channel("t1"), data("2"), None).await.unwrap();
    hub.publish(channel("new"), data("1"), None).await.unwrap();
    let mut pttl = redis::pipe();
    for key in &short {
        pttl.cmd("PTTL").arg(key);
    }
    let ttls: Vec<i64> = pttl.query_async(&mut admin).await.unwrap();
    assert!(ttls[0] > age && ttls[1] > 5_000, "refreshed: {ttls:?}");
    assert!(ttls[2] > 0 && ttls[2] <= 5_000, "the hub's epoch is not: {ttls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_keys_expired_starts_again_in_a_new_epoch() {
    let redis = RedisServer::start().await;
    let hub = redis_hub(&redis.url(), HistoryLimits { size: 10, max_age: Duration::from_millis(200) }).await;
    hub.publish(channel("x"), data("1"), None).await.unwrap();
    let before = hub.publish(channel("x"), data("2"), None).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let forgotten = loop {
        let h = hub.history(channel("x"), 0, 10).await.unwrap();
        if h.head == 0 {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "x never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(forgotten.epoch, before.epoch, "the hub's epoch expired before the channel did");
    let again = hub.publish(channel("x"), data("3"), None).await.unwrap();
    assert_eq!(again.seq, 1);
    assert_ne!(again.epoch, before.epoch, "never the epoch whose seqs clients hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_meta_was_lost_starts_in_a_new_epoch_and_resumes_are_reset() {
    let redis = RedisServer::start().await;
    let app = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let old = app.publish_many("c", 3).await["epoch"].as_str().unwrap().to_string();
    let mut admin = admin(&redis).await;
    // Lost as by eviction: the frames survive.
    let deleted: u64 = redis::cmd("DEL").arg("pwtest:ch:c:meta").query_async(&mut admin).await.unwrap();
    assert_eq!(deleted, 1);
    let cursor = format!("c:3:{old}");
    let (_, answer) = app.get(&format!("/poll?channels=c&cursor={cursor}")).await;
    assert_eq!(answer["resets"][0]["reason"], "epoch_changed", "{answer}");
    assert_eq!(answer["messages"], json!([]), "frames of a lost sequence are not served");

    let next = app.publish("c", json!("after")).await;
    assert_eq!(next["seq"], 1);
    assert_ne!(next["epoch"], old.as_str(), "a fresh epoch");
    let (_, answer) = app.get(&format!("/poll?channels=c&cursor={cursor}")).await;
    assert_eq!(answer["resets"][0]["reason"], "epoch_changed", "{answer}");
    assert_eq!(answer["resets"][0]["epoch"], next["epoch"]);
    let messages = answer["messages"].as_array().unwrap();
    assert_eq!(
        messages.iter().map(|m| (m["seq"].clone(), m["data"].clone())).collect::<Vec<_>>(),
        [(json!(1), json!("after"))]
    );
    assert_ne!(app.publish("d", json!(1)).await["epoch"], old.as_str(), "every channel starts in an epoch of its own");
}

/// Deletes every key of `channels` (meta, frames), as `DEL` or an eviction would.
async fn delete_channels(admin: &mut redis::aio::MultiplexedConnection, channels: &[String]) {
    let mut del = redis::cmd("DEL");
    for c in channels {
        del.arg(format!("pwtest:ch:{c}:meta")).arg(format!("pwtest:ch:{c}:frames"));
    }
    let _: u64 = del.query_async(admin).await.unwrap();
}

/// Followers on every transport while publishes go on and a channel's keys
/// are deleted under them, twice: each gets every acknowledged message once,
/// or a `reset` that says which it cannot have. A channel whose meta is gone
/// restarts in a fresh epoch, so a live subscriber sees another epoch and
/// reads its reset (it once took the reused seqs for duplicates and missed
/// every message after the deletion silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_deleted_mid_stream_lose_nothing_silently() {
    let redis = RedisServer::start().await;
    let app = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let channels: Vec<String> = vec!["del1".into(), "del2".into()];
    let (followers, tasks) = start_followers(&app, &channels).await;
    const TOTAL: u64 = 150;
    let (mut published, publisher) = publish_steadily(app.url(""), channels.clone(), TOTAL, "del");
    let mut admin = admin(&redis).await;
    for at in [TOTAL / 3, 2 * TOTAL / 3] {
        published.wait_for(|&n| n >= at).await.unwrap();
        delete_channels(&mut admin, &channels).await;
    }
    let acked = tokio::time::timeout(PATIENCE * 6, publisher).await.expect("the publisher finished").unwrap();
    let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
    let epochs: std::collections::HashSet<&str> = acked.iter().map(|a| a.epoch.as_str()).collect();
    assert!(epochs.len() >= 3 * channels.len() - 1, "each deletion started fresh epochs: {epochs:?}");
    wait_caught_up(followers.iter().map(|(_, me)| (me, channels.as_slice())), &acked).await;
    for task in tasks {
        task.abort();
    }
    for (transport, me) in &followers {
        let (delivered, resets) = assert_nothing_lost_silently(&format!("{transport:?}"), me, &channels, &acked);
        assert!(resets >= 2, "{transport:?}: told of the lost sequences ({delivered} delivered, {resets} resets)");
    }
}

/// The same under a Redis that evicts keys to stay within `maxmemory`
/// (`allkeys-lru`), while filler keys push the channels' keys out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_under_maxmemory_loses_nothing_silently() {
    let redis = RedisServer::start().await;
    let mut admin = admin(&redis).await;
    let used: String = redis::cmd("INFO").arg("memory").query_async(&mut admin).await.unwrap();
    let used: u64 = used
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory names used_memory");
    // A few MiB above what an empty server uses: the filler below overflows it many times.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + 4 * 1024 * 1024)
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut admin)
        .await
        .unwrap();
    let app = spawn_app_on(redis_hub(&redis.url(), limits()).await, |_| {}).await;
    let channels: Vec<String> = vec!["ev1".into(), "ev2".into()];
    let (followers, tasks) = start_followers(&app, &channels).await;
    const TOTAL: u64 = 150;
    let (published, publisher) = publish_steadily(app.url(""), channels.clone(), TOTAL, "ev");
    // Fills Redis for the first two thirds of the publishes: 64 KiB values,
    // written once. Then the fillers are the coldest keys and go first, so
    // the channels settle in their last epoch and the followers can be seen
    // catching up with it.
    let filler = tokio::spawn(async move {
        let value = vec![b'x'; 64 * 1024];
        let mut n = 0u64;
        while *published.borrow() < 2 * TOTAL / 3 {
            let () = redis::cmd("SET").arg(format!("filler:{n}")).arg(&value).query_async(&mut admin).await.unwrap();
            n += 1;
            tokio::task::yield_now().await;
        }
        n
    });
    let acked = tokio::time::timeout(PATIENCE * 6, publisher).await.expect("the publisher finished").unwrap();
    let filled = filler.await.unwrap();
    let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
    wait_caught_up(followers.iter().map(|(_, me)| (me, channels.as_slice())), &acked).await;
    for task in tasks {
        task.abort();
    }
    let epochs: std::collections::HashSet<&str> = acked.iter().map(|a| a.epoch.as_str()).collect();
    let mut resets = 0;
    for (transport, me) in &followers {
        resets += assert_nothing_lost_silently(&format!("{transport:?}"), me, &channels, &acked).1;
    }
    eprintln!(
        "eviction: {filled} filler values of 64 KiB, {} epochs over {} channels, {resets} resets over {} followers",
        epochs.len(),
        channels.len(),
        followers.len()
    );
    assert!(epochs.len() > channels.len(), "the channels' keys really were evicted: {epochs:?}");
}

/// A follower on each transport, started on `channels`.
async fn start_followers(
    app: &TestApp,
    channels: &[String],
) -> (Vec<(Transport, Arc<Follower>)>, Vec<tokio::task::JoinHandle<()>>) {
    let followers: Vec<(Transport, Arc<Follower>)> =
        Transport::TCP.iter().map(|t| (*t, Arc::new(Follower::default()))).collect();
    let tasks = followers
        .iter()
        .map(|(t, me)| tokio::spawn(follow(*t, app.url(""), [127, 0, 0, 1].into(), channels.to_vec(), me.clone())))
        .collect();
    wait_started(followers.iter().map(|(_, me)| (me, channels.len()))).await;
    (followers, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_off_by_a_stalled_redis_is_uncertain_and_its_retry_lands_once() {
    let redis = RedisServer::start().await;
    let hub = redis_hub(&redis.url(), limits()).await;
    let app = spawn_app_on(hub.clone(), |_| {}).await;
    app.publish("warm", json!(0)).await; // the script is loaded: a publish is one EVALSHA

    // Stall Redis for longer than the hub waits for an answer (2 s), and
    // make sure it sleeps before publishing into it.
    let client = redis::Client::open(redis.url()).unwrap();
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut sleeper = client.get_multiplexed_async_connection_with_config(&patient).await.unwrap();
    let mut probe = client.get_multiplexed_async_connection_with_config(&patient).await.unwrap();
    let asleep =
        tokio::spawn(async move { redis::cmd("DEBUG").arg("SLEEP").arg(4).query_async::<()>(&mut sleeper).await });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::timeout(Duration::from_millis(100), redis::cmd("PING").query_async::<()>(&mut probe))
        .await
        .is_ok()
    {
        assert!(tokio::time::Instant::now() < deadline, "redis never went to sleep");
    }

    let direct = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.publish(channel("v"), data("1"), Some("once".parse().unwrap())).await })
    };
    let publish_once = || {
        app.http.post(app.url("/channels/u/messages")).header("idempotency-key", "once").json(&json!({"pay": 1})).send()
    };
    let response = publish_once().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let direct = direct.await.unwrap();
    assert!(matches!(direct, Err(HubError::Uncertain(_))), "{direct:?}");
    tokio::time::timeout(PATIENCE, asleep).await.expect("redis woke up").unwrap().unwrap();

    // Both publishes were sent: they land once Redis wakes, and their
    // retries with the same key publish nothing more.
    for name in ["u", "v"] {
        wait_head(&hub, name, 1).await;
    }
    let response = publish_once().await.unwrap();
    assert_eq!(response.status(), 201);
    let retried: Value = response.json().await.unwrap();
    assert_eq!(retried["seq"], 1);
    let again = hub.publish(channel("v"), data("1"), Some("once".parse().unwrap())).await.unwrap();
    assert_eq!(again.seq, 1);
    let (_, answer) = app.get("/poll?channels=u,v&cursor=u:0,v:0").await;
    let mut got: Vec<(String, u64, Value)> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["channel"].as_str().unwrap().to_string(), m["seq"].as_u64().unwrap(), m["data"].clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = [("u".to_string(), 1, json!({"pay": 1})), ("v".to_string(), 1, json!(1))];
    assert_eq!(got, expected, "each exactly once: {answer}");
    let ts_of = |name: &str| {
        answer["messages"].as_array().unwrap().iter().find(|m| m["channel"] == name).unwrap()["ts"].clone()
    };
    assert_eq!((&retried["ts"], again.ts), (&ts_of("u"), ts_of("v").as_u64().unwrap()), "answered as stored");
}

/// Waits until the channel's head is `head`.
async fn wait_head(hub: &Arc<dyn Hub>, name: &str, head: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(h) = hub.history(channel(name), 0, 0).await
            && h.head == head
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never reached seq {head}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
