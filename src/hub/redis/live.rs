//! The live link: one pub/sub connection per instance (sharded pub/sub on a
//! cluster), subscribed to exactly the channels with local subscribers,
//! whose frames go to the [`Fanout`]; the health watch that pokes every
//! subscriber when Redis is back; and the canary that proves the link still
//! delivers.
//!
//! # The canary
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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::connection::{Connection, Target};
use super::storage::{self, Keys};
use super::{RedisHub, unavailable};
use crate::hub::{Fanout, HubError};
use crate::message::{ChannelName, Epoch, Message};

/// How often the hub checks Redis, and retries it while it is away.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// How long a channel stays subscribed in Redis after its last local subscriber left.
const UNSUBSCRIBE_GRACE: Duration = Duration::from_secs(2);

/// A push, and the generation of the link it came over.
pub(super) type Push = (u64, PushInfo);

/// The current live connection. Replaced whole when the canary finds it
/// dead; pushes of a replaced one are ignored.
pub(super) struct Link {
    target: Target,
    pushes: mpsc::UnboundedSender<Push>,
    generation: AtomicU64,
    current: Mutex<Connection>,
}

impl Link {
    pub(super) async fn open(target: Target, pushes: mpsc::UnboundedSender<Push>) -> redis::RedisResult<Link> {
        let first = target.open(Some(tagged(&pushes, 0))).await?;
        Ok(Link { target, pushes, generation: AtomicU64::new(0), current: Mutex::new(first) })
    }

    pub(super) fn connection(&self) -> Connection {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens a fresh connection to take over; it sends its pushes as the
    /// next generation, which [`Link::install`] makes current.
    async fn open_next(&self) -> redis::RedisResult<(u64, Connection)> {
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let connection = self.target.open(Some(tagged(&self.pushes, generation))).await?;
        Ok((generation, connection))
    }

    fn install(&self, generation: u64, connection: Connection) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = connection;
        self.generation.store(generation, Ordering::Relaxed);
    }

    fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Relaxed) == generation
    }
}

fn tagged(pushes: &mpsc::UnboundedSender<Push>, generation: u64) -> impl redis::aio::AsyncPushSender {
    let pushes = pushes.clone();
    move |push: PushInfo| pushes.send((generation, push))
}

/// Changes of local interest, applied in order by one task so that a
/// SUBSCRIBE and an UNSUBSCRIBE of the same channel never race.
pub(super) enum Interest {
    Subscribe(ChannelName, oneshot::Sender<Result<(), HubError>>),
    /// The last local subscriber left; unsubscribe after [`UNSUBSCRIBE_GRACE`]
    /// unless interest came back, so that pollers don't churn the link.
    Unsubscribe(ChannelName),
    UnsubscribeNow(ChannelName),
    /// Subscribes these canary channels (instead of the previous ones); with
    /// `fresh`, on a new link first, with every channel subscribed again.
    Canaries {
        channels: Vec<String>,
        fresh: bool,
        done: oneshot::Sender<Result<(), HubError>>,
    },
}

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
    fn arrived(&self, channel: String, token: u64) {
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

/// Turns pub/sub pushes of the current link into local deliveries and canary arrivals.
pub(super) async fn receive(
    mut pushes: mpsc::UnboundedReceiver<Push>,
    keys: Keys,
    fanout: Arc<Fanout>,
    ready: Arc<AtomicBool>,
    link: Weak<Link>,
    canary: Arc<CanaryState>,
) {
    while let Some((generation, push)) = pushes.recv().await {
        if !link.upgrade().is_some_and(|link| link.is_current(generation)) {
            continue;
        }
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let Some((live, payload)) = live_payload(&push.data) else { continue };
                if keys.is_canary(&live) {
                    if let Ok(token) = payload.parse() {
                        canary.arrived(live, token);
                    }
                } else if let Some(message) = decode_live(&keys, &live, payload) {
                    fanout.deliver(&Arc::new(message));
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis pub/sub connection lost");
                ready.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

fn live_payload(data: &[Value]) -> Option<(String, String)> {
    let [live, payload] = data else { return None };
    Some((redis::from_redis_value_ref(live).ok()?, redis::from_redis_value_ref(payload).ok()?))
}

/// A live push is a frame (see [`storage::decode`]) on `{prefix}:live:{name}`.
fn decode_live(keys: &Keys, live: &str, frame: String) -> Option<Message> {
    let channel: ChannelName = keys.channel_of_live(live)?.parse().ok()?;
    storage::decode(channel, frame)
}

/// Applies changes of local interest to the live link, in order.
pub(super) async fn track_interest(
    mut changes: mpsc::UnboundedReceiver<Interest>,
    // Weak: the queue must close when the hub is dropped.
    later: mpsc::WeakUnboundedSender<Interest>,
    link: Arc<Link>,
    keys: Keys,
    fanout: Arc<Fanout>,
    // The size of `subscribed`, for `/metrics`.
    held: Arc<AtomicUsize>,
) {
    let mut subscribed: HashSet<ChannelName> = HashSet::new();
    let mut canaries: Vec<String> = Vec::new();
    while let Some(change) = changes.recv().await {
        match change {
            Interest::Subscribe(channel, done) => {
                let result = if subscribed.contains(&channel) {
                    Ok(())
                } else {
                    match link.connection().subscribe(vec![keys.live(&channel)]).await {
                        Ok(()) => {
                            subscribed.insert(channel);
                            Ok(())
                        }
                        Err(e) => Err(unavailable(e)),
                    }
                };
                let _ = done.send(result);
            }
            Interest::Unsubscribe(channel) => {
                let later = later.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(UNSUBSCRIBE_GRACE).await;
                    if let Some(later) = later.upgrade() {
                        let _ = later.send(Interest::UnsubscribeNow(channel));
                    }
                });
            }
            Interest::UnsubscribeNow(channel) => {
                // Interest may have come back since this was queued.
                if !fanout.has_subscribers(&channel)
                    && subscribed.remove(&channel)
                    && let Err(e) = link.connection().unsubscribe(vec![keys.live(&channel)]).await
                {
                    tracing::debug!(error = %e, %channel, "redis unsubscribe failed");
                }
            }
            Interest::Canaries { channels, fresh, done } => {
                let result = if fresh {
                    relink(&link, &keys, &subscribed, &channels).await
                } else {
                    let gone: Vec<String> = canaries.iter().filter(|c| !channels.contains(c)).cloned().collect();
                    let mut connection = link.connection();
                    if !gone.is_empty() {
                        let _ = connection.unsubscribe(gone).await;
                    }
                    connection.subscribe(channels.clone()).await.map_err(unavailable)
                };
                if result.is_ok() {
                    canaries = channels;
                }
                let _ = done.send(result);
            }
        }
        held.store(subscribed.len(), Ordering::Relaxed);
    }
}

/// Opens a fresh link, subscribes it to the canaries and every channel, and
/// makes it current; the old one is dropped.
async fn relink(
    link: &Link,
    keys: &Keys,
    subscribed: &HashSet<ChannelName>,
    canaries: &[String],
) -> Result<(), HubError> {
    let (generation, mut connection) = link.open_next().await.map_err(unavailable)?;
    let mut all: Vec<String> = canaries.to_vec();
    all.extend(subscribed.iter().map(|channel| keys.live(channel)));
    connection.subscribe(all).await.map_err(unavailable)?;
    link.install(generation, connection);
    Ok(())
}

/// Pings Redis; flips readiness; resyncs subscribers when Redis comes back.
pub(super) async fn watch_health(hub: Weak<RedisHub>) {
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let mut live = hub.link.connection();
        let up = hub.storage.ping().await && redis::cmd("PING").query_async::<()>(&mut live).await.is_ok();
        let was = hub.ready.load(Ordering::Relaxed);
        if up && !was {
            // Whatever was published meanwhile never reached this instance:
            // every local subscriber re-reads its position from history.
            tracing::info!("redis is reachable again; subscribers catch up from history");
            hub.fanout.poke_all();
            hub.ready.store(true, Ordering::Relaxed);
            hub.reconnects.fetch_add(1, Ordering::Relaxed);
        } else if !up && was {
            tracing::warn!("redis is unreachable");
            hub.ready.store(false, Ordering::Relaxed);
        }
    }
}

/// Sends a canary round every `interval` and relinks when one does not come
/// back (see the module doc).
pub(super) async fn canary(hub: Weak<RedisHub>, interval: Duration) {
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
            match subscribe_canaries(&hub, instance.as_str(), fresh).await {
                Ok(placed) => {
                    channels = placed;
                    if fresh {
                        // The new link is subscribed: what the old one lost
                        // is refilled from history.
                        hub.fanout.poke_all();
                        fresh = false;
                    }
                }
                Err(e) => {
                    hub.canary.lost(&e);
                    fresh = true;
                    continue;
                }
            }
        }
        token += 1;
        let mut arrivals = hub.canary.arrivals.subscribe();
        let mut commands = hub.storage.commands();
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
            if hub.canary.all_back(&channels, token) {
                break true;
            }
            if tokio::time::timeout_at(deadline, arrivals.changed()).await.is_err() {
                break false;
            }
        };
        if back {
            if !hub.canary.alive.swap(true, Ordering::Relaxed) {
                tracing::info!("redis pub/sub link delivers again");
            }
        } else {
            hub.canary.lost(&"the canary did not come back");
            fresh = true;
            wait = false;
        }
    }
}

/// Places this instance's canary channels and subscribes the link to them
/// (a fresh link with `fresh`).
async fn subscribe_canaries(hub: &RedisHub, instance: &str, fresh: bool) -> Result<Vec<String>, HubError> {
    let channels = canary_channels(hub, instance).await?;
    let (done, result) = oneshot::channel();
    let _ = hub.interest.send(Interest::Canaries { channels: channels.clone(), fresh, done });
    result.await.unwrap_or_else(|_| Err(unavailable("hub stopped")))?;
    Ok(channels)
}

/// This instance's canary channels: one on one Redis; on a cluster one per
/// primary, each with a hash tag that lands in a slot that primary serves.
async fn canary_channels(hub: &RedisHub, instance: &str) -> Result<Vec<String>, HubError> {
    let keys = &hub.keys;
    if !keys.is_cluster() {
        return Ok(vec![keys.canary(instance)]);
    }
    let slots: Value =
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut hub.storage.commands()).await.map_err(unavailable)?;
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
