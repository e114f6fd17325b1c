//! pushwire on Redis Cluster (3 primaries, 1 replica each): several
//! instances serve one stream over every transport, for channels on every
//! shard; and a primary killed mid-stream loses no acknowledged message
//! silently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire::hub::HistoryLimits;
use serde_json::{Value, json};

use crate::common::follow::*;
use crate::common::*;

fn limits() -> HistoryLimits {
    HistoryLimits { size: 1000, max_age: Duration::from_secs(600) }
}

/// Two instances on `urls` under one prefix, with a canary every `canary`.
async fn two_instances(urls: &str, canary: Duration) -> (TestApp, TestApp) {
    let prefix = fresh_prefix();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let hub = cluster_hub(urls, &prefix, limits(), |o| o.canary_interval = canary).await;
        apps.push(spawn_app_on(hub, |c| c.sse_heartbeat = Duration::from_secs(1)).await);
    }
    let b = apps.pop().unwrap();
    (apps.pop().unwrap(), b)
}

/// Two instances on the shared cluster, and a channel `{stem}N` on each shard.
async fn on_the_shared_cluster(stem: &'static str) -> (TestApp, TestApp, Vec<String>) {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let channels = tokio::task::spawn_blocking(move || shared_cluster().channel_per_shard(stem)).await.unwrap();
    let (a, b) = two_instances(&cluster.urls(), Duration::from_secs(5)).await;
    (a, b, channels)
}

/// `(seq, ts)` of each message, per channel, in the order received.
fn by_channel<'a>(messages: impl IntoIterator<Item = &'a Value>) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for m in messages {
        assert_eq!(m["type"], "message", "{m}");
        out.entry(m["channel"].as_str().unwrap().to_string())
            .or_default()
            .push((m["seq"].as_u64().unwrap(), m["ts"].as_u64().unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_on_one_instance_reaches_every_transport_on_another_for_every_shard() {
    let (a, b, channels) = on_the_shared_cluster("x").await;
    let list = channels.join(",");
    let from_zero = channels.iter().map(|c| format!("{c}:0")).collect::<Vec<_>>().join(",");
    let mut ws = b.ws(&format!("?channels={list}")).await;
    ws.handshake(3).await;
    let mut sse = b.sse(&format!("?channels={list}")).await;
    for _ in 0..3 {
        sse.expect("subscribed").await;
    }
    let url = b.url(&format!("/long-poll?channels={list}&cursor={from_zero}&timeout=30"));
    let http = b.http.clone();
    let held = tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    b.wait_stats("the long poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;

    let mut published = Vec::new();
    for i in 1..=5 {
        for channel in &channels {
            let answer = a.publish(channel, json!({"i": i})).await;
            published.push(json!({"type": "message", "channel": channel, "seq": answer["seq"], "ts": answer["ts"]}));
        }
    }
    let expected = by_channel(&published);
    assert!(expected.values().all(|m| m.iter().map(|(seq, _)| *seq).eq(1..=5)), "{expected:?}");

    let over_ws = ws.messages(15).await;
    let over_sse: Vec<Value> = sse.messages(15).await.iter().map(SseEvent::json).collect();
    let (_, polled) = b.get(&format!("/poll?channels={list}&cursor={from_zero}")).await;
    let over_poll = polled["messages"].as_array().unwrap().clone();
    let long = tokio::time::timeout(PATIENCE, held).await.unwrap().unwrap();
    let over_long_poll = b.long_poll_on(&list, long, 15).await;
    for (name, got) in [("ws", &over_ws), ("sse", &over_sse), ("poll", &over_poll), ("long-poll", &over_long_poll)] {
        assert_eq!(by_channel(got), expected, "{name}: every message of every shard, in order, once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_instances_make_gap_free_sequences_on_every_shard() {
    let (a, b, channels) = on_the_shared_cluster("c").await;
    let list = channels.join(",");
    let mut on_a = a.ws(&format!("?channels={list}")).await;
    on_a.handshake(3).await;
    let mut on_b = b.ws(&format!("?channels={list}")).await;
    on_b.handshake(3).await;
    const EACH: usize = 20;
    let mut publishers = Vec::new();
    for app in [&a, &b] {
        for p in 0..2 {
            for channel in &channels {
                let (url, http) = (app.url(&format!("/channels/{channel}/messages")), app.http.clone());
                publishers.push(tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EACH {
                        let answer: Value =
                            http.post(&url).json(&json!({"p": p, "i": i})).send().await.unwrap().json().await.unwrap();
                        seqs.push(answer["seq"].as_u64().unwrap());
                    }
                    seqs
                }));
            }
        }
    }
    let mut per_channel: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (k, publisher) in publishers.into_iter().enumerate() {
        per_channel.entry(k % channels.len()).or_default().extend(publisher.await.unwrap());
    }
    let total = 4 * EACH as u64;
    for seqs in per_channel.values_mut() {
        seqs.sort_unstable();
        assert_eq!(*seqs, (1..=total).collect::<Vec<_>>(), "no duplicate, no skipped seq");
    }
    let n = channels.len() * total as usize;
    let seen_a = by_channel(&on_a.messages(n).await);
    let seen_b = by_channel(&on_b.messages(n).await);
    for channel in &channels {
        assert!(seen_a[channel].iter().map(|(seq, _)| *seq).eq(1..=total), "{channel} on A in order");
    }
    assert_eq!(seen_a, seen_b, "the same order, the same messages, on both instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_stream_loses_no_acknowledged_message_silently() {
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start).await.unwrap();
    // Two channels on each shard (the node queries are short, blocking ones).
    let mut channels = cluster.channel_per_shard("f");
    channels.extend(cluster.channel_per_shard("g"));
    let victim = cluster.primary_port(&channels[0]);
    let on_victim: Vec<String> = channels.iter().filter(|c| cluster.primary_port(c) == victim).cloned().collect();
    let (a, b) = two_instances(&cluster.urls(), Duration::from_millis(300)).await;

    let followers: Vec<(Transport, Arc<Follower>)> =
        [Transport::WebSocket, Transport::Sse].map(|t| (t, Arc::new(Follower::default()))).into();
    let tasks: Vec<_> = followers
        .iter()
        .map(|(t, me)| tokio::spawn(follow(*t, b.url(""), [127, 0, 0, 1].into(), channels.clone(), me.clone())))
        .collect();
    wait_started(followers.iter().map(|(_, me)| (me, channels.len()))).await;

    // A publisher on A, retrying each message with its key until acknowledged.
    const TOTAL: u64 = 180;
    let (mut published, publisher) = publish_steadily(a.url(""), channels.clone(), TOTAL, "m");
    published.wait_for(|&n| n >= TOTAL / 3).await.unwrap();
    let killed_at = Instant::now();
    cluster.primary_of(&channels[0]).kill();
    let acked = tokio::time::timeout(PATIENCE * 6, publisher).await.expect("the publisher finished").unwrap();

    // Recovery: the first acknowledgement on the failed shard after the kill.
    let recovered = acked
        .iter()
        .find(|(at, a)| *at > killed_at && on_victim.contains(&a.channel))
        .map(|(at, _)| *at - killed_at)
        .expect("the failed shard took publishes again");
    let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();

    // Every follower catches up with the last acknowledged message of every channel.
    wait_caught_up(followers.iter().map(|(_, me)| (me, channels.as_slice())), &acked).await;
    for task in tasks {
        task.abort();
    }
    let mut resets = 0;
    for (transport, me) in &followers {
        resets += assert_nothing_lost_silently(&format!("{transport:?}"), me, &channels, &acked).1;
        let log = me.log.lock().unwrap().clone();
        for channel in channels.iter().filter(|c| !on_victim.contains(c)) {
            let v = replay(&log, channel, &acked);
            assert!(v.resets.is_empty(), "{transport:?}: {channel} was not on the failed shard: {v:?}");
        }
    }
    eprintln!(
        "failover: {TOTAL} publishes acknowledged, the failed shard took publishes again {} ms after the kill; \
         {resets} resets over 2 clients x {} channels ({} on the failed shard)",
        recovered.as_millis(),
        channels.len(),
        on_victim.len()
    );
}
