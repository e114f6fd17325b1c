//! Clients that follow channels for as long as a chaos test runs, over any
//! transport, reconnecting and resuming from their own position the way a
//! real client does; and the check that what they received holds every
//! acknowledged message exactly once and in order, or a reset covering it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushwire_client::{Event, Follow, Target};
use serde_json::{Value, json};

/// A publish the server acknowledged (201).
#[derive(Debug, Clone)]
pub struct Acked {
    pub channel: String,
    pub seq: u64,
    pub ts: u64,
    pub epoch: String,
}

impl Acked {
    pub fn from_answer(channel: &str, answer: &Value) -> Acked {
        Acked {
            channel: channel.to_string(),
            seq: answer["seq"].as_u64().unwrap(),
            ts: answer["ts"].as_u64().unwrap(),
            epoch: answer["epoch"].as_str().unwrap().to_string(),
        }
    }
}

/// Which transport a follower uses: the client library's (`pushwire-client`).
pub use pushwire_client::Transport;

/// A follower's frames (the `subscribed` of its first connection, then every
/// `message` and `reset`, as received), and its reconnects.
#[derive(Default)]
pub struct Follower {
    pub log: Mutex<Vec<Value>>,
    pub reconnects: std::sync::atomic::AtomicUsize,
}

/// Follows `channels` at `base` (`http://host:port`) from local address
/// `from`, for ever: run it as a task and abort it when done. The following
/// (resume from the follower's own position, reconnects) is `pushwire-client`'s;
/// this logs what it reports, as the frames the check replays.
pub async fn follow(transport: Transport, base: String, from: IpAddr, channels: Vec<String>, me: Arc<Follower>) {
    let target = Arc::new(Target::resolve(&base, None, 1).await.unwrap().from_source(from));
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    let log = |frame: Value| me.log.lock().unwrap().push(frame);
    Follow::new(transport, target, &channels)
        .poll_interval(Duration::from_millis(200))
        .long_poll_timeout(Duration::from_secs(5))
        .idle(Duration::from_secs(5))
        .run(&mut |event: Event<'_>| match event {
            Event::Subscribed { channel, seq, epoch } => {
                log(json!({"type": "subscribed", "channel": channel, "seq": seq, "epoch": epoch}))
            }
            Event::Message { channel, seq, ts, .. } => {
                log(json!({"type": "message", "channel": channel, "seq": seq, "ts": ts}))
            }
            Event::Reset { channel, seq, epoch } => {
                log(json!({"type": "reset", "channel": channel, "seq": seq, "epoch": epoch}))
            }
            Event::Lost(_) => {
                me.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        })
        .await;
}

/// What a follower's log proves about one channel.
#[derive(Debug, Default)]
pub struct Verdict {
    pub epoch: String,
    pub position: u64,
    pub delivered: Vec<(u64, u64)>,
    /// `(epoch and position before, epoch and position after)` of each reset.
    pub resets: Vec<((String, u64), (String, u64))>,
    /// The stretch of time each reset stands for: after the `ts` of the last
    /// message delivered before it (0: none), before that of the first one
    /// delivered after it (`None`: none yet). Whatever was published then,
    /// in whichever epoch, the reset told the client it may lack.
    pub gaps: Vec<(u64, Option<u64>)>,
}

/// Replays a log for `channel`, asserting that messages come in order with
/// no gap and no duplicate, except across a reset.
pub fn replay(log: &[Value], channel: &str, acked: &[Acked]) -> Verdict {
    let mut v = Verdict::default();
    for frame in log.iter().filter(|f| f["channel"] == channel) {
        let seq = frame["seq"].as_u64().unwrap();
        match frame["type"].as_str().unwrap() {
            "subscribed" => (v.epoch, v.position) = (frame["epoch"].as_str().unwrap().into(), seq),
            "message" => {
                assert_eq!(seq, v.position + 1, "{channel}: a gap or a duplicate without a reset: {frame}");
                let ts = frame["ts"].as_u64().unwrap();
                // Never into another epoch without a reset, not even from 0.
                if let Some(a) = acked.iter().find(|a| a.channel == channel && a.seq == seq && a.ts == ts) {
                    assert_eq!(a.epoch, v.epoch, "{channel}: crossed into another epoch without a reset: {frame}");
                }
                v.position = seq;
                v.delivered.push((seq, ts));
                for gap in v.gaps.iter_mut().rev().take_while(|(_, after)| after.is_none()) {
                    gap.1 = Some(ts);
                }
            }
            "reset" => {
                let after = (frame["epoch"].as_str().unwrap().to_string(), seq);
                v.resets.push(((v.epoch.clone(), v.position), after.clone()));
                v.gaps.push((v.delivered.last().map_or(0, |&(_, ts)| ts), None));
                (v.epoch, v.position) = after;
            }
            other => panic!("unexpected {other}"),
        }
    }
    v
}

/// Whether the follower is at the last acknowledged message of each channel.
pub fn caught_up(me: &Follower, channels: &[String], acked: &[Acked]) -> bool {
    let log = me.log.lock().unwrap().clone();
    channels.iter().all(|c| {
        let Some(last) = acked.iter().rev().find(|a| &a.channel == c) else { return true };
        let v = replay(&log, c, acked);
        (v.epoch.as_str(), v.position) == (last.epoch.as_str(), last.seq)
    })
}

/// Asserts that every acknowledged message of `channels` reached the
/// follower exactly once and in order, or that a reset told it what was
/// missing. Returns the `(messages delivered, resets)` it counted.
pub fn assert_nothing_lost_silently(name: &str, me: &Follower, channels: &[String], acked: &[Acked]) -> (usize, usize) {
    let log = me.log.lock().unwrap().clone();
    let (mut delivered, mut resets) = (0, 0);
    for channel in channels {
        let v = replay(&log, channel, acked);
        for a in acked.iter().filter(|a| &a.channel == channel) {
            let got = v.delivered.contains(&(a.seq, a.ts));
            let covered = v.gaps.iter().any(|&(before, after)| a.ts > before && after.is_none_or(|t| a.ts < t));
            assert!(got || covered, "{name}: {a:?} neither delivered nor covered by a reset: {v:?}");
        }
        delivered += v.delivered.len();
        resets += v.resets.len();
    }
    (delivered, resets)
}

/// Publishes `total` messages `{"i": i}` round-robin on `channels` at `base`,
/// each with the key `{key}-{i}` and retried until acknowledged, 10 ms
/// apart. The watch counts the acknowledged ones; the task answers each
/// acknowledgement and when it came.
pub fn publish_steadily(
    base: String,
    channels: Vec<String>,
    total: u64,
    key: &'static str,
) -> (tokio::sync::watch::Receiver<u64>, tokio::task::JoinHandle<Vec<(std::time::Instant, Acked)>>) {
    let (progress, published) = tokio::sync::watch::channel(0u64);
    let http = reqwest::Client::new();
    let task = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 1..=total {
            let channel = &channels[i as usize % channels.len()];
            let url = format!("{base}/channels/{channel}/messages");
            let data = serde_json::json!({"i": i});
            let (answer, _) = super::publish_until_acked(&http, &url, &format!("{key}-{i}"), &data).await;
            acked.push((std::time::Instant::now(), Acked::from_answer(channel, &answer)));
            progress.send_replace(i);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    });
    (published, task)
}

/// Waits until every follower logged where it starts on each of its channels.
pub async fn wait_started<'a>(followers: impl IntoIterator<Item = (&'a Arc<Follower>, usize)>) {
    let deadline = tokio::time::Instant::now() + super::PATIENCE * 3;
    for (me, channels) in followers {
        while me.log.lock().unwrap().len() < channels {
            assert!(tokio::time::Instant::now() < deadline, "a follower never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until every follower is at the last acknowledged message of its channels.
pub async fn wait_caught_up<'a>(
    followers: impl IntoIterator<Item = (&'a Arc<Follower>, &'a [String])>,
    acked: &[Acked],
) {
    let deadline = tokio::time::Instant::now() + super::PATIENCE * 6;
    for (me, channels) in followers {
        while !caught_up(me, channels, acked) {
            if tokio::time::Instant::now() >= deadline {
                let log = me.log.lock().unwrap().clone();
                let at: Vec<_> = channels.iter().map(|c| (c, replay(&log, c, acked))).collect();
                let last: Vec<_> = channels.iter().map(|c| acked.iter().rev().find(|a| &a.channel == c)).collect();
                panic!("a follower never caught up on {channels:?}: at {at:?}, last acknowledged {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
