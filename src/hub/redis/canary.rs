//! The canary: proves that the live link still delivers.
//!
//! A pub/sub link can die without a sign: a half-open TCP connection, a
//! proxy in between that lost its upstream. Nothing is sent on it, so
//! nothing fails, and live messages simply stop. Every `--redis-canary`
//! interval each instance publishes a token on its own canary channels
//! (one per shard on a cluster, so that every shard's link is covered) over
//! its command connection, the way a real message goes out, and waits for
//! them to come back over the live link, the way a real message comes in.
//! When one does not come back within the interval the link is presumed
//! dead: the hub is not ready (`/readyz` 503), the failure is counted, a
//! fresh link is opened and subscribed to every channel again, and every
//! local subscriber is poked to refill from history. The hub is ready again
//! once a canary round comes back whole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use redis::Value;
use tokio::sync::watch;

use super::connection::{RedisConnection, unavailable};
use super::storage::Keys;
use crate::hub::HubError;
use crate::message::Epoch;

/// What the canary sees arrive, and what it concluded.
pub(super) struct CanaryState {
    /// Last token that came back, per canary channel.
    seen: Mutex<HashMap<String, u64>>,
    arrivals: watch::Sender<u64>,
    /// Whether the last round came back whole (part of readiness).
    pub(super) alive: AtomicBool,
    pub(super) failures: AtomicU64,
}

impl Default for CanaryState {
    fn default() -> Self {
        CanaryState {
            seen: Mutex::default(),
            arrivals: watch::Sender::new(0),
            alive: AtomicBool::new(true),
            failures: AtomicU64::new(0),
        }
    }
}

impl CanaryState {
    pub(super) fn arrived(&self, channel: String, token: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(channel).or_default();
        *last = (*last).max(token);
        drop(seen);
        self.arrivals.send_modify(|n| *n += 1);
    }

    /// The link is presumed dead: not ready, counted once per loss, replaced.
    fn lost(&self, why: &dyn std::fmt::Display) {
        if self.alive.swap(false, Ordering::Relaxed) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%why, "redis pub/sub link lost; replacing it");
        } else {
            tracing::debug!(%why, "redis pub/sub link still lost");
        }
    }

    fn all_back(&self, channels: &[String], token: u64) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        channels.iter().all(|c| seen.get(c).is_some_and(|&t| t >= token))
    }
}

/// What the canary needs of the hub that runs it (`RedisHub`).
pub(super) trait Host: Send + Sync + 'static {
    fn canary(&self) -> &CanaryState;
    fn keys(&self) -> &Keys;
    /// A connection for commands (the canary's publishes, `CLUSTER SLOTS`).
    fn commands(&self) -> RedisConnection;
    /// Every local subscriber re-reads its position from history.
    fn poke_all(&self);
    /// Has the live link subscribe these canary channels instead of the
    /// previous ones; with `fresh`, on a new link first.
    fn link_canaries(&self, channels: Vec<String>, fresh: bool) -> impl Future<Output = Result<(), HubError>> + Send;
}

/// Sends a canary round every `interval` and relinks when one does not come
/// back (see the module doc).
pub(super) async fn canary<H: Host>(hub: Weak<H>, interval: Duration) {
    let instance = Epoch::random();
    let mut token = 0;
    let mut channels: Vec<String> = Vec::new();
    // Whether the link must be replaced before the next round.
    let mut fresh = false;
    // The first round goes at once, so that the link is watched from the start.
    let mut wait = false;
    loop {
        if wait {
            tokio::time::sleep(interval).await;
        }
        wait = true;
        let Some(hub) = hub.upgrade() else { return };
        if channels.is_empty() || fresh {
            // (Re)placed each time: the topology may have changed since.
            match subscribe_canaries(hub.as_ref(), instance.as_str(), fresh).await {
                Ok(placed) => {
                    channels = placed;
                    if fresh {
                        // The new link is subscribed: what the old one lost
                        // is refilled from history.
                        hub.poke_all();
                        fresh = false;
                    }
                }
                Err(e) => {
                    hub.canary().lost(&e);
                    fresh = true;
                    continue;
                }
            }
        }
        token += 1;
        let mut arrivals = hub.canary().arrivals.subscribe();
        let mut commands = hub.commands();
        let command = commands.publish_command();
        let mut sent = true;
        for channel in &channels {
            let publish = redis::cmd(command).arg(channel).arg(token).query_async::<()>(&mut commands).await;
            if let Err(e) = publish {
                // Redis itself is away: the health watch tells.
                tracing::debug!(error = %e, "canary not sent");
                sent = false;
            }
        }
        if !sent {
            continue;
        }
        let deadline = tokio::time::Instant::now() + interval;
        let back = loop {
            if hub.canary().all_back(&channels, token) {
                break true;
            }
            if tokio::time::timeout_at(deadline, arrivals.changed()).await.is_err() {
                break false;
            }
        };
        if back {
            if !hub.canary().alive.swap(true, Ordering::Relaxed) {
                tracing::info!("redis pub/sub link delivers again");
            }
        } else {
            hub.canary().lost(&"the canary did not come back");
            fresh = true;
            wait = false;
        }
    }
}

/// Places this instance's canary channels and subscribes the link to them
/// (a fresh link with `fresh`).
async fn subscribe_canaries(hub: &impl Host, instance: &str, fresh: bool) -> Result<Vec<String>, HubError> {
    let channels = canary_channels(hub, instance).await?;
    hub.link_canaries(channels.clone(), fresh).await?;
    Ok(channels)
}

/// This instance's canary channels: one on one Redis; on a cluster one per
/// primary, each with a hash tag that lands in a slot that primary serves.
async fn canary_channels(hub: &impl Host, instance: &str) -> Result<Vec<String>, HubError> {
    let keys = hub.keys();
    if !keys.is_cluster() {
        return Ok(vec![keys.canary(instance)]);
    }
    let slots: Value =
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut hub.commands()).await.map_err(unavailable)?;
    let mut primaries: HashMap<String, Vec<(u16, u16)>> = HashMap::new();
    for range in as_array(&slots) {
        let range = as_array(range);
        let (Some(start), Some(end), Some(node)) = (range.first(), range.get(1), range.get(2)) else { continue };
        let (Ok(start), Ok(end)) = (redis::from_redis_value_ref::<u16>(start), redis::from_redis_value_ref::<u16>(end))
        else {
            continue;
        };
        let Some(Ok(id)) = as_array(node).get(2).map(redis::from_redis_value_ref::<String>) else { continue };
        primaries.entry(id).or_default().push((start, end));
    }
    let mut channels = Vec::with_capacity(primaries.len());
    for ranges in primaries.values() {
        let tag = (0u32..100_000)
            .map(|k| format!("{instance}.{k}"))
            .find(|tag| {
                let slot = key_slot(tag);
                ranges.iter().any(|&(start, end)| (start..=end).contains(&slot))
            })
            .ok_or_else(|| unavailable("no canary tag for a shard"))?;
        channels.push(keys.canary(&tag));
    }
    if channels.is_empty() {
        return Err(unavailable("CLUSTER SLOTS named no primary"));
    }
    Ok(channels)
}

fn as_array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// The cluster slot of a hash tag: CRC16 (XMODEM) modulo 16384, as Redis computes it.
fn key_slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_are_those_redis_computes() {
        // `CLUSTER KEYSLOT foo` and `CLUSTER KEYSLOT 123456789`.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("123456789"), 0x31C3);
    }
}
