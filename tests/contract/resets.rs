//! Resets, once for every transport: a cursor that the retained history
//! cannot continue gets one `reset` to just before the oldest retained
//! message, then every retained message in order (API.md, cursors).
//!
//! Each reason is one test that runs every [`Reader`] over the same channel:
//! 20 published, the last 5 retained, so the reset is to 15 and 16..=20 follow.

use serde_json::{Value, json};

use crate::common::*;

crate::for_each_hub!(
    a_trimmed_history_is_history_trimmed,
    another_epoch_is_epoch_changed,
    a_position_ahead_of_the_head_is_epoch_changed,
    a_new_channel_s_first_message_is_in_the_epoch_its_subscribers_were_told,
    a_position_at_0_in_another_epoch_is_epoch_changed_though_history_starts_at_1,
);

const PUBLISHED: u64 = 20;
const RETAINED: u64 = 5;

async fn a_trimmed_history_is_history_trimmed(hub: HubKind) {
    check_reset(hub, "history_trimmed", |epoch| vec![format!("t:2:{epoch}")]).await;
}

async fn another_epoch_is_epoch_changed(hub: HubKind) {
    // Positions before, within and past what the current epoch retains; at
    // 0 too (API.md v1.2): what the other epoch held after it is unknown.
    check_reset(hub, "epoch_changed", |_| {
        vec!["t:0:Other1".into(), "t:3:Other1".into(), "t:19:oldEpoch".into(), "t:500:Other1".into()]
    })
    .await;
}

/// The case the seq-0 exception once let through silently (API.md v1.2): a
/// client that subscribed to an empty channel in one epoch comes back after
/// the hub lost it, and the channel, created again, holds all its history.
async fn a_position_at_0_in_another_epoch_is_epoch_changed_though_history_starts_at_1(hub: HubKind) {
    let app = spawn_app(hub).await;
    let epoch = app.publish_many("z", 3).await["epoch"].as_str().unwrap().to_string();
    let reset = json!({"type": "reset", "channel": "z", "epoch": epoch, "seq": 0, "reason": "epoch_changed"});
    for reader in Reader::ALL {
        let got = app.read_from(reader, "z", "z:0:Gone1", 4).await;
        assert_eq!(got[0].frame, reset, "{reader:?}: told, though it misses nothing of this epoch");
        assert_eq!(seqs(got[1..].iter().map(|d| &d.frame)), [1, 2, 3], "{reader:?}");
    }
}

/// A subscriber to a channel nobody has published on is told an epoch, and
/// the first message comes in it: no `reset`, though positions at 0 no
/// longer cross epochs. On every transport that subscribes.
async fn a_new_channel_s_first_message_is_in_the_epoch_its_subscribers_were_told(hub: HubKind) {
    let app = spawn_app(hub).await;
    let mut ws = app.ws("?channels=fresh").await;
    let told = ws.handshake(1).await[0].clone();
    assert_eq!(told["seq"], 0, "{told}");
    let mut sse = app.sse("?channels=fresh").await;
    let sse_told: Value = serde_json::from_str(&sse.expect("subscribed").await.data.unwrap()).unwrap();
    assert_eq!(sse_told["epoch"], told["epoch"], "one channel, one epoch");
    let first = app.publish("fresh", json!("first")).await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["epoch"], told["epoch"], "the epoch the subscribers were told");
    assert_message(&ws.expect("message").await, "fresh", 1, &json!("first"));
    let event = sse.expect("message").await;
    assert_message(&serde_json::from_str(&event.data.unwrap()).unwrap(), "fresh", 1, &json!("first"));
    let cursor = format!("fresh:0:{}", told["epoch"].as_str().unwrap());
    for reader in Reader::ALL {
        let got = app.read_from(reader, "fresh", &cursor, 1).await;
        assert_message(&got[0].frame, "fresh", 1, &json!("first"));
    }
}

async fn a_position_ahead_of_the_head_is_epoch_changed(hub: HubKind) {
    check_reset(hub, "epoch_changed", |epoch| vec![format!("t:21:{epoch}"), format!("t:99:{epoch}")]).await;
}

/// Every reader, from each cursor, gets exactly the reset with all its fields,
/// then each retained message with all its fields, in order; and every cursor
/// a transport hands out on the way names the position after its frame.
async fn check_reset(hub: HubKind, reason: &str, cursors: impl FnOnce(&str) -> Vec<String>) {
    let app = spawn_app_with(hub, |c| c.history_size = RETAINED as usize).await;
    let epoch = app.publish_many("t", PUBLISHED).await["epoch"].as_str().unwrap().to_string();
    let reset_to = PUBLISHED - RETAINED;
    let reset = json!({"type": "reset", "channel": "t", "epoch": epoch, "seq": reset_to, "reason": reason});
    for cursor in cursors(&epoch) {
        for reader in Reader::ALL {
            let what = format!("{reader:?} from {cursor}");
            let got = app.read_from(reader, "t", &cursor, 1 + RETAINED as usize).await;
            let frames: Vec<_> = got.iter().map(|d| &d.frame).collect();
            assert_eq!(frames.len(), 1 + RETAINED as usize, "{what}: {frames:?}");
            assert_eq!(frames[0], &reset, "{what}: the reset comes first");
            assert_eq!(seqs(frames[1..].iter().copied()), (reset_to + 1..=PUBLISHED).collect::<Vec<_>>(), "{what}");
            for (message, seq) in frames[1..].iter().zip(reset_to + 1..) {
                assert_message(message, "t", seq, &json!({"i": seq}));
            }
            for (delivered, seq) in got.iter().zip(reset_to..) {
                if let Some(handed_out) = &delivered.cursor {
                    assert_eq!(handed_out, &format!("t:{seq}:{epoch}"), "{what}: the cursor after {}", delivered.frame);
                }
            }
        }
    }
}
