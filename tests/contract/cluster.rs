//! pushwire on Redis Cluster (3 primaries, 1 replica each): several
//! instances serve one stream over every transport, for channels on every
//! shard; and a primary killed mid-stream loses no acknowledged message
//! silently.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pushwire::hub::HistoryLimits;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

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

/// A publish acknowledged by the server.
#[derive(Debug, Clone)]
struct Acked {
    channel: String,
    seq: u64,
    ts: u64,
    epoch: String,
}

/// A client's frames (`subscribed` of its first connection, then every
/// `message` and `reset`), as it received them, across its reconnects.
type Log = Arc<Mutex<Vec<Value>>>;

/// Follows `channels` over WebSocket for ever, reconnecting with its cursor.
async fn follow_ws(base: String, channels: Vec<String>, log: Log) {
    let mut state: HashMap<String, (String, u64)> = HashMap::new();
    loop {
        let cursor: Vec<String> = state.iter().map(|(c, (e, s))| format!("{c}:{s}:{e}")).collect();
        let url = format!("{base}/ws?channels={}&cursor={}", channels.join(","), cursor.join(","));
        let Ok((mut stream, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Some(Ok(frame)) = stream.next().await {
            let WsMessage::Text(text) = frame else { continue };
            let frame: Value = serde_json::from_str(&text).unwrap();
            record(&mut state, &log, frame);
        }
    }
}

/// Follows `channels` over SSE for ever, reconnecting with `Last-Event-ID`.
async fn follow_sse(http: reqwest::Client, base: String, channels: Vec<String>, log: Log) {
    let mut state: HashMap<String, (String, u64)> = HashMap::new();
    let mut last_id: Option<String> = None;
    loop {
        let url = format!("{base}/sse?channels={}", channels.join(","));
        let mut request = http.get(&url);
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let Ok(response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut body = response.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(bytes)) = body.next().await {
            buf.push_str(std::str::from_utf8(&bytes).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                    last_id = Some(id.to_string());
                }
                if let Some(data) = data {
                    record(&mut state, &log, serde_json::from_str(data).unwrap());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps a follower's position and logs what the verification needs.
fn record(state: &mut HashMap<String, (String, u64)>, log: &Log, frame: Value) {
    let Some(channel) = frame["channel"].as_str().map(String::from) else { return };
    match frame["type"].as_str() {
        Some("subscribed") if !state.contains_key(&channel) => {
            state.insert(channel, (frame["epoch"].as_str().unwrap().into(), frame["seq"].as_u64().unwrap()));
        }
        Some("message") => {
            state.entry(channel).or_default().1 = frame["seq"].as_u64().unwrap();
        }
        Some("reset") => {
            state.insert(channel, (frame["epoch"].as_str().unwrap().into(), frame["seq"].as_u64().unwrap()));
        }
        _ => return,
    }
    let mut log = log.lock().unwrap();
    // Only the first subscription's `subscribed` says where the client starts.
    if frame["type"] != "subscribed"
        || !log.iter().any(|f| f["type"] == "subscribed" && f["channel"] == frame["channel"])
    {
        log.push(frame);
    }
}

/// What a client's log proves about one channel.
#[derive(Debug, Default)]
struct Verdict {
    epoch: String,
    position: u64,
    delivered: Vec<(u64, u64)>,
    /// `(epoch and position before, epoch and position after)` of each reset.
    resets: Vec<((String, u64), (String, u64))>,
}

/// Replays a client's log for `channel`, asserting that messages come in
/// order with no gap and no duplicate, except across a reset.
fn replay(log: &[Value], channel: &str, acked: &[Acked]) -> Verdict {
    let mut v = Verdict::default();
    for frame in log.iter().filter(|f| f["channel"] == channel) {
        let seq = frame["seq"].as_u64().unwrap();
        match frame["type"].as_str().unwrap() {
            "subscribed" => (v.epoch, v.position) = (frame["epoch"].as_str().unwrap().into(), seq),
            "message" => {
                assert_eq!(seq, v.position + 1, "{channel}: a gap or a duplicate without a reset: {frame}");
                let ts = frame["ts"].as_u64().unwrap();
                // A position at 0 may continue into a new epoch; the message's
                // own epoch is the one its publish was acknowledged in.
                if let Some(a) = acked.iter().find(|a| a.channel == channel && a.seq == seq && a.ts == ts) {
                    v.epoch = a.epoch.clone();
                }
                v.position = seq;
                v.delivered.push((seq, ts));
            }
            "reset" => {
                let after = (frame["epoch"].as_str().unwrap().to_string(), seq);
                v.resets.push(((v.epoch.clone(), v.position), after.clone()));
                (v.epoch, v.position) = after;
            }
            other => panic!("unexpected {other}"),
        }
    }
    v
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

    let ws_log = Log::default();
    let sse_log = Log::default();
    let followers = [
        tokio::spawn(follow_ws(b.ws_url(""), channels.clone(), ws_log.clone())),
        tokio::spawn(follow_sse(b.http.clone(), b.url(""), channels.clone(), sse_log.clone())),
    ];
    for log in [&ws_log, &sse_log] {
        let deadline = Instant::now() + PATIENCE;
        while log.lock().unwrap().len() < channels.len() {
            assert!(Instant::now() < deadline, "followers never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // A publisher on A, retrying each message with its key until acknowledged.
    const TOTAL: u64 = 180;
    let (progress, mut published) = tokio::sync::watch::channel(0u64);
    let publisher = {
        let (http, a_url, channels) = (a.http.clone(), a.url(""), channels.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 1..=TOTAL {
                let channel = &channels[i as usize % channels.len()];
                let url = format!("{a_url}/channels/{channel}/messages");
                let (answer, _) = publish_until_acked(&http, &url, &format!("m{i}"), &json!({"i": i})).await;
                acked.push((
                    Instant::now(),
                    Acked {
                        channel: channel.clone(),
                        seq: answer["seq"].as_u64().unwrap(),
                        ts: answer["ts"].as_u64().unwrap(),
                        epoch: answer["epoch"].as_str().unwrap().to_string(),
                    },
                ));
                progress.send_replace(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        })
    };
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
    let last: HashMap<&str, &Acked> = acked.iter().map(|a| (a.channel.as_str(), a)).collect();

    // Every follower catches up with the last acknowledged message of every channel.
    let deadline = Instant::now() + PATIENCE * 3;
    for (name, log) in [("websocket", &ws_log), ("sse", &sse_log)] {
        loop {
            let snapshot = log.lock().unwrap().clone();
            let behind: Vec<&str> = channels
                .iter()
                .filter(|c| {
                    let v = replay(&snapshot, c, &acked);
                    (v.epoch.as_str(), v.position) != (last[c.as_str()].epoch.as_str(), last[c.as_str()].seq)
                })
                .map(String::as_str)
                .collect();
            if behind.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{name} never caught up on {behind:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for follower in followers {
        follower.abort();
    }

    let mut resets = 0;
    for (name, log) in [("websocket", &ws_log), ("sse", &sse_log)] {
        let log = log.lock().unwrap().clone();
        for channel in &channels {
            let v = replay(&log, channel, &acked);
            resets += v.resets.len();
            for a in acked.iter().filter(|a| &a.channel == channel) {
                let delivered = v.delivered.contains(&(a.seq, a.ts));
                let covered = v.resets.iter().any(|((from_epoch, from), (to_epoch, to))| {
                    (from_epoch == &a.epoch && *from < a.seq) || (to_epoch == &a.epoch && *to >= a.seq)
                });
                assert!(delivered || covered, "{name}: {a:?} neither delivered nor covered by a reset: {v:?}");
            }
            if !on_victim.contains(channel) {
                assert!(v.resets.is_empty(), "{name}: {channel} was not on the failed shard: {v:?}");
            }
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
