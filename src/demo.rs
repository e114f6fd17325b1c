//! The built-in demo publisher: a small JSON notification on one channel,
//! a few times a second, so that a fresh server has a stream to look at.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::hub::Hub;
use crate::message::ChannelName;
use crate::shutdown::Shutdown;

const KINDS: [&str; 4] = ["order.created", "user.signed_in", "build.passed", "alert.cleared"];

/// Publishes until shutdown; `rate` is messages per second (must be > 0).
pub async fn run(hub: Arc<dyn Hub>, channel: ChannelName, rate: f64, padding: usize, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let pad = "x".repeat(padding);
    for n in 1u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.wait() => return,
        }
        let kind = KINDS[(n % KINDS.len() as u64) as usize];
        let text = format!(r#"{{"n":{n},"kind":"{kind}","text":"demo notification {n}","pad":"{pad}"}}"#);
        // unwrap: the text above is valid JSON (kind and pad need no escaping).
        let data = RawValue::from_string(text).unwrap();
        if let Err(e) = hub.publish(channel.clone(), data).await {
            tracing::warn!(error = %e, "demo publish failed");
        }
    }
}
