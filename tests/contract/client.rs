//! `pushwire-client`, the Rust client, against the server: it follows a
//! channel from a cursor on every TCP transport with each message's data,
//! and a cursor from another epoch is a reset it reports and tallies.

use std::sync::Arc;
use std::time::Duration;

use pushwire_client::{Event, Follow, Followed, Target, Transport};
use serde_json::{Value, json};
use tokio::time::timeout;

use crate::common::*;

/// Follows `news` over `transport` from `cursor` until it holds seq 5; the
/// messages (seq and data) and resets it reported, and what it tallied.
async fn follow_news(app: &TestApp, transport: Transport, cursor: &str) -> (Vec<(u64, Value)>, Vec<u64>, Followed) {
    let target = Arc::new(Target::resolve(&app.url(""), None, 1).await.unwrap());
    let (mut messages, mut resets) = (Vec::new(), Vec::new());
    let follow = Follow::new(transport, target, &["news"])
        .cursor(cursor)
        .keep_data()
        .until(5)
        .poll_interval(Duration::from_millis(50));
    let followed = timeout(
        PATIENCE,
        follow.run(&mut |event: Event<'_>| match event {
            Event::Message { channel: "news", seq, data, .. } => messages.push((seq, data.cloned().unwrap())),
            Event::Reset { channel: "news", seq, .. } => resets.push(seq),
            _ => {}
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{transport}: never held seq 5"));
    (messages, resets, followed)
}

#[tokio::test]
async fn the_rust_client_resumes_from_a_cursor_on_every_transport_with_the_data() {
    let app = spawn_app(HubKind::Memory).await;
    let last = app.publish_many("news", 5).await;
    let epoch = last["epoch"].as_str().unwrap();
    for transport in Transport::TCP {
        let (messages, resets, followed) = follow_news(&app, transport, &format!("news:2:{epoch}")).await;
        let expected: Vec<(u64, Value)> = (3..=5).map(|i| (i, json!({"i": i}))).collect();
        assert_eq!(messages, expected, "{transport}: what followed seq 2, once, in order");
        assert!(resets.is_empty(), "{transport}");
        let news = &followed.channels["news"];
        assert_eq!((news.resets, news.gaps, news.repeats, news.last), (0, 0, 0, 5), "{transport}");
        assert_eq!(news.judge(&[3, 4, 5]).missing, 0, "{transport}");
        assert!(followed.connected && followed.reconnects == 0, "{transport}");
    }
}

#[tokio::test]
async fn the_rust_client_reports_a_reset_for_another_epoch_and_goes_on() {
    let app = spawn_app(HubKind::Memory).await;
    app.publish_many("news", 5).await;
    for transport in Transport::TCP {
        let (messages, resets, followed) = follow_news(&app, transport, "news:2:OldEpoch1").await;
        // The reset puts it before the oldest retained message: all five follow it.
        assert_eq!(resets, [0], "{transport}");
        assert_eq!(messages.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "{transport}");
        let news = &followed.channels["news"];
        assert_eq!((news.resets, news.gaps, news.repeats), (1, 0, 0), "{transport}: nothing unexplained");
    }
}
