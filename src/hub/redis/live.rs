//! The live link: one pub/sub connection per instance (sharded pub/sub on a
//! cluster), subscribed to exactly the channels with local subscribers,
//! whose frames go to the [`Fanout`]. The canary that proves the link still
//! delivers is `canary.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::canary::CanaryState;
use super::connection::{RedisConnection, Target, unavailable};
use super::storage::{self, Keys};
use crate::hub::{Fanout, HubError};
use crate::message::{ChannelName, Message};

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
    current: Mutex<RedisConnection>,
}

impl Link {
    pub(super) async fn open(target: Target, pushes: mpsc::UnboundedSender<Push>) -> redis::RedisResult<Link> {
        let first = target.open(Some(tagged(&pushes, 0))).await?;
        Ok(Link { target, pushes, generation: AtomicU64::new(0), current: Mutex::new(first) })
    }

    pub(super) fn connection(&self) -> RedisConnection {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens a fresh connection to take over; it sends its pushes as the
    /// next generation, which [`Link::install`] makes current.
    async fn open_next(&self) -> redis::RedisResult<(u64, RedisConnection)> {
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let connection = self.target.open(Some(tagged(&self.pushes, generation))).await?;
        Ok((generation, connection))
    }

    fn install(&self, generation: u64, connection: RedisConnection) {
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
