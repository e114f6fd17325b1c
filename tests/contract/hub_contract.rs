//! The `Hub` contract (see `src/hub/mod.rs`), held against every hub.

use std::sync::Arc;
use std::time::Duration;

use pushwire::hub::{HistoryLimits, Hub, Subscriber};
use pushwire::message::{ChannelName, IdempotencyKey};
use serde_json::value::RawValue;

use crate::common::*;

crate::for_each_hub!(
    seqs_start_at_one_and_grow_by_one_under_concurrency,
    history_reads_after_a_position_with_limits,
    history_is_bounded_by_size,
    a_channel_never_published_is_at_zero,
    live_delivery_is_in_order_and_stops_on_unsubscribe,
    data_is_kept_unchanged,
    history_is_bounded_by_age,
    a_hub_that_lost_the_sequence_starts_a_new_epoch,
    an_idempotency_key_publishes_once_per_channel,
);

fn channel(name: &str) -> ChannelName {
    name.parse().unwrap()
}

fn data(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).unwrap()
}

/// A hub, and what backs it (kept alive as long as the hub is used).
async fn hub(kind: HubKind, size: usize) -> (Arc<dyn Hub>, Backing) {
    make_hub(kind, HistoryLimits { size, max_age: Duration::from_secs(600) }).await
}

async fn seqs_start_at_one_and_grow_by_one_under_concurrency(kind: HubKind) {
    let (hub, _redis) = hub(kind, 10_000).await;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..100 {
                    seqs.push(hub.publish(channel("c"), data(&format!("[{t},{i}]")), None).await.unwrap().seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "each publisher sees increasing seqs");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    let history = hub.history(channel("c"), 0, 1000).await.unwrap();
    assert_eq!(history.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=400).collect::<Vec<_>>());
}

async fn history_reads_after_a_position_with_limits(kind: HubKind) {
    let (hub, _redis) = hub(kind, 100).await;
    for i in 1..=10 {
        hub.publish(channel("h"), data(&i.to_string()), None).await.unwrap();
    }
    let h = hub.history(channel("h"), 4, 3).await.unwrap();
    assert_eq!((h.head, h.oldest), (10, 1));
    assert_eq!(h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6, 7]);
    assert!(hub.history(channel("h"), 10, 5).await.unwrap().messages.is_empty());
    let position = hub.history(channel("h"), u64::MAX, 0).await.unwrap();
    assert_eq!((position.head, position.messages.len()), (10, 0));
    assert_eq!(position.epoch, h.epoch, "the epoch is stable while the hub keeps the sequence");
}

async fn history_is_bounded_by_size(kind: HubKind) {
    let (hub, _redis) = hub(kind, 4).await;
    for i in 1..=9 {
        hub.publish(channel("b"), data(&i.to_string()), None).await.unwrap();
    }
    let h = hub.history(channel("b"), 0, 100).await.unwrap();
    assert_eq!((h.head, h.oldest), (9, 6));
    assert_eq!(h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [6, 7, 8, 9]);
}

async fn a_channel_never_published_is_at_zero(kind: HubKind) {
    let (hub, _redis) = hub(kind, 10).await;
    let h = hub.history(channel("never"), 0, 10).await.unwrap();
    assert_eq!((h.head, h.oldest, h.messages.len()), (0, 1, 0));
    assert!(!h.epoch.as_str().is_empty());
}

async fn live_delivery_is_in_order_and_stops_on_unsubscribe(kind: HubKind) {
    let (hub, _redis) = hub(kind, 1000).await;
    let (subscriber, mut rx) = Subscriber::new(1000);
    hub.subscribe(channel("live"), subscriber.clone()).await.unwrap();
    for i in 1..=50 {
        hub.publish(channel("live"), data(&i.to_string()), None).await.unwrap();
    }
    hub.publish(channel("other"), data("0"), None).await.unwrap();
    for seq in 1..=50 {
        let m = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("live message");
        assert_eq!((m.channel.as_str(), m.seq), ("live", seq));
    }
    hub.unsubscribe(&channel("live"), subscriber.id());
    hub.publish(channel("live"), data("51"), None).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv()).await.is_err(), "nothing after unsubscribe");
}

async fn data_is_kept_unchanged(kind: HubKind) {
    let (hub, _redis) = hub(kind, 10).await;
    let text = r#"{"z":1,"a":[true,null,"é\"\n"],"n":12345678901234567890,"f":1.50}"#;
    let m = hub.publish(channel("d"), data(text), None).await.unwrap();
    assert_eq!(m.data(), text, "key order, number text and escapes are kept");
    let read = hub.history(channel("d"), 0, 1).await.unwrap();
    assert_eq!(read.messages[0].data(), text);
}

async fn history_is_bounded_by_age(kind: HubKind) {
    let max_age = Duration::from_millis(300);
    let (hub, _redis) = make_hub(kind, HistoryLimits { size: 1000, max_age }).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // While publishing goes on, the oldest messages age out and newer ones stay.
    let mut head = 0;
    let h = loop {
        head = hub.publish(channel("a"), data(&head.to_string()), None).await.unwrap().seq;
        let h = hub.history(channel("a"), 0, 1000).await.unwrap();
        if h.oldest > 1 && !h.messages.is_empty() {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing aged out of 1..={head}");
        tokio::time::sleep(max_age / 10).await;
    };
    assert_eq!(h.head, head);
    assert_eq!(h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), (h.oldest..=head).collect::<Vec<_>>());
    // Once publishing stops, everything ages out, and the sequence stays.
    let h = loop {
        let h = hub.history(channel("a"), 0, 1000).await.unwrap();
        if h.messages.is_empty() {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} messages never aged out", h.messages.len());
        tokio::time::sleep(max_age / 10).await;
    };
    assert_eq!((h.head, h.oldest), (head, head + 1));
    assert_eq!(hub.publish(channel("a"), data("0"), None).await.unwrap().seq, head + 1);
}

async fn a_hub_that_lost_the_sequence_starts_a_new_epoch(kind: HubKind) {
    let (before, redis) = hub(kind, 10).await;
    for i in 1..=3 {
        before.publish(channel("e"), data(&i.to_string()), None).await.unwrap();
    }
    let old = before.history(channel("e"), 0, 10).await.unwrap().epoch;
    // Memory: a new hub (a restart). Redis: the same hub on a flushed
    // server. Cluster: the same hub, with the channel's keys gone (the
    // cluster is shared, so only this hub's keys go).
    let hub = match &redis {
        Backing::Memory => hub(kind, 10).await.0,
        Backing::Redis(server) => {
            let mut admin =
                ::redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
            let () = ::redis::cmd("FLUSHALL").query_async(&mut admin).await.unwrap();
            before
        }
        Backing::Cluster { prefix } => {
            let client = ::redis::cluster::ClusterClient::new(shared_cluster().urls().split(',')).unwrap();
            let mut admin = client.get_async_connection().await.unwrap();
            let keys = ["meta", "frames"].map(|key| format!("{prefix}:ch:{{e}}:{key}"));
            let deleted: u64 = ::redis::cmd("DEL").arg(&keys).query_async(&mut admin).await.unwrap();
            assert_eq!(deleted, 2, "the channel's keys are named as the hub names them");
            before
        }
    };
    let lost = hub.history(channel("e"), 0, 10).await.unwrap();
    assert_ne!(lost.epoch, old);
    assert_eq!((lost.head, lost.oldest, lost.messages.len()), (0, 1, 0));
    let m = hub.publish(channel("e"), data("1"), None).await.unwrap();
    assert_eq!(m.seq, 1, "the sequence restarts");
    assert_ne!(m.epoch, old, "in a new epoch");
    let h = hub.history(channel("e"), 0, 10).await.unwrap();
    assert_eq!((&h.epoch, h.head), (&m.epoch, 1));
    assert_eq!(h.messages.iter().map(|m| (m.seq, m.data())).collect::<Vec<_>>(), [(1, "1")]);
}

async fn an_idempotency_key_publishes_once_per_channel(kind: HubKind) {
    let (hub, _redis) = hub(kind, 10).await;
    let (subscriber, mut rx) = Subscriber::new(16);
    hub.subscribe(channel("i"), subscriber).await.unwrap();
    let key: IdempotencyKey = "order-1:a".parse().unwrap();
    let first = hub.publish(channel("i"), data(r#"{"n":1}"#), Some(key.clone())).await.unwrap();
    let again = hub.publish(channel("i"), data(r#"{"n":1}"#), Some(key.clone())).await.unwrap();
    assert_eq!((again.seq, again.ts, &again.epoch), (first.seq, first.ts, &first.epoch), "answered as the first");
    assert_eq!(again.data(), r#"{"n":1}"#);
    let h = hub.history(channel("i"), 0, 10).await.unwrap();
    assert_eq!((h.head, h.messages.len()), (1, 1), "published once");

    let other = hub.publish(channel("i"), data("2"), Some("order-2".parse().unwrap())).await.unwrap();
    assert_eq!(other.seq, 2, "another key publishes");
    for seq in [1, 2] {
        let m = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("live message");
        assert_eq!(m.seq, seq, "the repeat was not live either");
    }

    // Keys are per channel: the same key elsewhere is a first publish there.
    let elsewhere = hub.publish(channel("j"), data("1"), Some(key)).await.unwrap();
    assert_eq!(elsewhere.seq, 1);
    assert_eq!(hub.history(channel("j"), 0, 10).await.unwrap().head, 1);
    assert_eq!(hub.history(channel("i"), 0, 10).await.unwrap().head, 2, "and leaves this one alone");
}
