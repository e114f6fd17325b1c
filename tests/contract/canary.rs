//! The canary on the live link: a pub/sub connection that goes silent, with
//! nothing closed, is noticed, replaced, and what it missed is refilled.

use std::time::Duration;

use pushwire::hub::{HistoryLimits, RedisHub, RedisOptions};

use crate::common::relay::Relay;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_pubsub_link_is_noticed_replaced_and_refilled() {
    let redis = RedisServer::start().await;
    let relay = Relay::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let limits = HistoryLimits { size: 1000, max_age: Duration::from_secs(600) };
    // A reaches Redis through the relay, with a short canary interval.
    let mut options = RedisOptions::single(&relay.url(), "pwtest", limits);
    options.canary_interval = Duration::from_millis(300);
    let a = spawn_app_on(RedisHub::connect_with(options).await.unwrap(), |_| {}).await;
    let b = spawn_app_on(redis_hub(&redis.url(), limits).await, |_| {}).await;
    let mut ws = a.ws("?channels=h").await;
    ws.handshake(1).await;
    b.publish_many("h", 3).await;
    assert_eq!(seqs(&ws.messages(3).await), [1, 2, 3]);
    assert_eq!(a.metric("pushwire_hub_canary_failures_total").await, 0.0);

    relay.blackhole();
    for i in 4..=8 {
        b.publish("h", serde_json::json!({"i": i})).await;
    }
    a.wait_ready(503).await;
    assert!(a.metric("pushwire_hub_canary_failures_total").await >= 1.0, "counted in /metrics");
    assert!(relay.dead_links() >= 1, "the link went silent, not closed");
    ws.assert_quiet(Duration::from_millis(300)).await;

    relay.heal();
    a.wait_ready(200).await;
    assert_eq!(seqs(&ws.messages(5).await), [4, 5, 6, 7, 8], "refilled from history");
    b.publish("h", serde_json::json!({"i": 9})).await;
    assert_eq!(seqs(&ws.messages(1).await), [9], "and live again on the new link");
    ws.assert_quiet(Duration::from_millis(200)).await;
}
