//! The live link: one pub/sub connection per instance, subscribed to exactly
//! the channels with local subscribers, whose frames go to the [`Fanout`];
//! and the health watch that pokes every subscriber when Redis is back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::storage::{self, Keys};
use super::{RedisHub, unavailable};
use crate::hub::{Fanout, HubError};
use crate::message::{ChannelName, Message};

/// How often the hub checks Redis, and retries it while it is away.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// How long a channel stays subscribed in Redis after its last local subscriber left.
const UNSUBSCRIBE_GRACE: Duration = Duration::from_secs(2);

/// Changes of local interest, applied in order by one task so that a
/// SUBSCRIBE and an UNSUBSCRIBE of the same channel never race.
pub(super) enum Interest {
    Subscribe(ChannelName, oneshot::Sender<Result<(), HubError>>),
    /// The last local subscriber left; unsubscribe after [`UNSUBSCRIBE_GRACE`]
    /// unless interest came back, so that pollers don't churn the link.
    Unsubscribe(ChannelName),
    UnsubscribeNow(ChannelName),
}

/// Turns pub/sub pushes into local deliveries.
pub(super) async fn receive(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    keys: Keys,
    fanout: Arc<Fanout>,
    ready: Arc<AtomicBool>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                if let Some(message) = decode_live(&keys, &push.data) {
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

/// A live push is a frame (see [`storage::decode`]) on `{prefix}:live:{name}`.
fn decode_live(keys: &Keys, data: &[Value]) -> Option<Message> {
    let [live, frame] = data else { return None };
    let live: String = redis::from_redis_value_ref(live).ok()?;
    let channel: ChannelName = keys.channel_of_live(&live)?.parse().ok()?;
    storage::decode(channel, redis::from_redis_value_ref(frame).ok()?)
}

/// Applies changes of local interest to the one pub/sub connection, in order.
pub(super) async fn track_interest(
    mut changes: mpsc::UnboundedReceiver<Interest>,
    // Weak: the queue must close when the hub is dropped.
    later: mpsc::WeakUnboundedSender<Interest>,
    mut pubsub: ConnectionManager,
    keys: Keys,
    fanout: Arc<Fanout>,
    // The size of `subscribed`, for `/metrics`.
    held: Arc<AtomicUsize>,
) {
    let mut subscribed: HashSet<ChannelName> = HashSet::new();
    while let Some(change) = changes.recv().await {
        match change {
            Interest::Subscribe(channel, done) => {
                let result = if subscribed.contains(&channel) {
                    Ok(())
                } else {
                    match pubsub.subscribe(keys.live(&channel)).await {
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
                    && let Err(e) = pubsub.unsubscribe(keys.live(&channel)).await
                {
                    tracing::debug!(error = %e, %channel, "redis unsubscribe failed");
                }
            }
        }
        held.store(subscribed.len(), Ordering::Relaxed);
    }
}

/// Pings Redis; flips readiness; resyncs subscribers when Redis comes back.
pub(super) async fn watch_health(hub: Weak<RedisHub>, mut pubsub: ConnectionManager) {
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let up = hub.storage.ping().await && redis::cmd("PING").query_async::<()>(&mut pubsub).await.is_ok();
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
