//! The Redis hub: several pushwire instances share one stream.
//!
//! # Keys
//! Per channel, `{prefix}:ch:{name}:meta` is a hash of `epoch` and `head`
//! (the last seq assigned), and `{prefix}:ch:{name}:frames` a list of the
//! retained messages, oldest first, seqs contiguous, which expires with the
//! age limit (refreshed on publish). `{prefix}:epoch` is the epoch a channel
//! gets at its first publish; it vanishes with a flush, so a flushed Redis
//! gives every channel a new epoch and clients an explicit `reset`. A
//! message goes live on `{prefix}:live:{name}`.
//!
//! # Frames
//! A message is stored and published as one frame, `epoch seq ts json`: a
//! header of three space-ended fields (`[A-Za-z0-9]+`, decimal, decimal)
//! followed by the message's JSON as every transport sends it. The history
//! list and the live channel carry the same bytes, so one decoder
//! (`storage::decode`) reads both, and the age trim in Lua reads `ts` with
//! a pattern anchored at the start of the header, never looking at the JSON.
//! The header keeps the order the live payload had before frames were also
//! stored, so instances of the previous version still exchange live messages
//! with this one; the list was named `:log` when it held bare JSON, and its
//! new name keeps this version from reading entries of the old format.
//!
//! # Guarantees
//! - A publish is one Lua script (`publish.lua`): next seq, append, trim by
//!   size and by age, `PUBLISH`, all atomic in Redis. Its reply is the frame
//!   it stored, decoded like any other, so a message is encoded once.
//! - A history read is one script (`history.lua`): position and frames at
//!   one instant.
//! - Each instance holds one pub/sub connection, subscribed to exactly the
//!   channels it has local subscribers for, and hands each arriving message
//!   to its [`Fanout`] (`live.rs`).
//! - While Redis is unreachable the hub is not ready: publishes and history
//!   reads fail (503), open connections stay open. When Redis answers again
//!   the hub pokes every local subscriber, which re-reads its position and
//!   fills its gap from history (or gets a `reset` if the sequence was lost).

mod live;
mod storage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{Fanout, History, HistoryLimits, Hub, HubError, HubFuture, Subscriber};
use crate::message::{ChannelName, IdempotencyKey, Message};
use live::Interest;
use storage::{Keys, Storage};

/// Redis-backed hub. Shared as `Arc<dyn Hub>`; its background tasks hold
/// their own handles and stop when the runtime that created them stops.
pub struct RedisHub {
    storage: Storage,
    fanout: Arc<Fanout>,
    interest: mpsc::UnboundedSender<Interest>,
    ready: Arc<AtomicBool>,
}

fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(e.to_string())
}

impl RedisHub {
    /// Connects to Redis at `url` (RESP3 is switched on whatever the URL says).
    pub async fn connect(url: &str, prefix: &str, limits: HistoryLimits) -> Result<Arc<RedisHub>, HubError> {
        let info = url.into_connection_info().map_err(|e| HubError::Unavailable(format!("bad Redis URL: {e}")))?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(unavailable)?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_with_config(client.clone(), base.clone()).await.map_err(unavailable)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let pubsub_config = base.set_push_sender(push_tx).set_automatic_resubscription();
        let pubsub = ConnectionManager::new_with_config(client, pubsub_config).await.map_err(unavailable)?;

        let keys = Keys::new(prefix);
        let fanout = Arc::new(Fanout::default());
        let ready = Arc::new(AtomicBool::new(true));
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(RedisHub {
            storage: Storage::new(keys.clone(), limits, commands, ready.clone()),
            fanout: fanout.clone(),
            interest,
            ready: ready.clone(),
        });
        tokio::spawn(live::receive(push_rx, keys.clone(), fanout.clone(), ready));
        tokio::spawn(live::track_interest(interest_rx, hub.interest.downgrade(), pubsub.clone(), keys, fanout));
        tokio::spawn(live::watch_health(Arc::downgrade(&hub), pubsub));
        Ok(hub)
    }
}

impl Hub for RedisHub {
    fn publish(
        &self,
        channel: ChannelName,
        data: Box<RawValue>,
        _key: Option<IdempotencyKey>,
    ) -> HubFuture<'_, Arc<Message>> {
        Box::pin(async move { self.storage.publish(channel, &data).await.map(Arc::new) })
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        Box::pin(self.storage.history(channel, after, limit))
    }

    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()> {
        let id = subscriber.id();
        self.fanout.add(&channel, subscriber);
        Box::pin(async move {
            let (done, result) = oneshot::channel();
            let _ = self.interest.send(Interest::Subscribe(channel.clone(), done));
            let result = result.await.unwrap_or_else(|_| Err(unavailable("hub stopped")));
            if result.is_err() {
                self.unsubscribe(&channel, id);
            }
            result
        })
    }

    fn unsubscribe(&self, channel: &ChannelName, subscriber: u64) {
        if self.fanout.remove(channel, subscriber) {
            let _ = self.interest.send(Interest::Unsubscribe(channel.clone()));
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn channel_count(&self) -> usize {
        self.fanout.channel_count()
    }

    fn retained_bytes(&self) -> usize {
        0
    }
}
