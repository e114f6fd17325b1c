//! The Redis hub: several pushwire instances share one stream.
//!
//! # Keys and their TTLs
//! Every key expires; none outlives what it is needed for. `A` below is the
//! history age (`--history-age`, [`HistoryLimits::max_age`]).
//! - `{prefix}:ch:{name}:meta`, a hash of `epoch` and `head` (the last seq
//!   assigned): the channel's sequence, created by its first publish or by
//!   the first history read of a subscriber. TTL 2·A, refreshed on publish,
//!   so a quiet channel keeps its sequence for one more history age after
//!   its last message could have aged out. Subscribers do not keep it: a
//!   channel silent for 2·A is forgotten (see Epochs for what they see).
//! - `{prefix}:ch:{name}:frames`, a list of the retained messages, oldest
//!   first, seqs contiguous up to `head`. TTL A, refreshed on publish: it
//!   always expires before the meta of the same channel.
//! - `{prefix}:ch:{name}:idem:{key}`, the record of a publish made with an
//!   idempotency key: `epoch seq ts`. TTL 5 minutes
//!   ([`IDEMPOTENCY_WINDOW`](super::IDEMPOTENCY_WINDOW)) from that publish,
//!   not refreshed by repeats.
//! - `{prefix}:epoch`, the hub's epoch: the one a channel without meta reads
//!   in (at seq 0) when no subscriber creates it, so that pollers of a quiet
//!   channel are not told a new epoch at every poll. TTL A, never refreshed.
//!   No channel is ever created in it.
//!
//! A message goes live on `{prefix}:live:{name}` (a pub/sub channel, no key).
//!
//! # Epochs
//! A channel's seqs mean something only with its epoch, so a channel whose
//! sequence is lost must never start again in the epoch it had, or a client
//! resuming from `c:N:E` would take new seqs for the ones it has (API.md:
//! it gets `epoch_changed` instead). A sequence is lost with its meta,
//! whatever removed it: expiry, a flush or a Redis restarted empty,
//! `maxmemory` eviction, a `DEL`, a failover (see Redis Cluster). So a
//! channel is created (meta written) only where no meta exists, and always
//! in a fresh random epoch: by the publish script, and by a subscriber's
//! history read (`history.lua` with `create`), so that the epoch a
//! subscriber is told is the one the channel's first message carries.
//! Frames found without their meta belong to the lost sequence and are
//! dropped. A live subscriber then receives a message of another epoch,
//! reads history and gets its `reset`; a client resuming from the old epoch,
//! at any seq, 0 included, gets `epoch_changed`.
//!
//! A channel no subscriber has read and nobody published reads at seq 0 in
//! the hub's epoch; its first publish starts another, so a poller at 0 is
//! told of a reset then, and misses nothing.
//!
//! # Idempotency
//! The publish script checks the record of the publish's key first: if it
//! exists, the script answers it and does nothing else (no history append,
//! no `PUBLISH`); the hub returns a message with the first publish's seq, ts
//! and epoch and this call's data. Otherwise the script publishes and
//! writes the record, in the same atomic step, so two instances retrying
//! the same key at once publish it once.
//!
//! A publish whose outcome is unknown (its answer timed out, its connection
//! broke in flight) fails with [`HubError::Uncertain`]: it may have been
//! stored, and a retry with the same key answers what it stored, if it did.
//! Only a publish that Redis answered with an error, or whose connection was
//! refused, is [`HubError::Unavailable`] (`storage::may_have_run` says why).
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
//! - A publish is one Lua script (`publish.lua`): idempotency check, next
//!   seq, append, trim by size and by age, TTLs, idempotency record,
//!   `PUBLISH`, all atomic in Redis. Its reply is the frame it stored,
//!   decoded like any other, so a message is encoded once (or, for a
//!   repeated key, the record's `epoch seq ts`).
//! - A history read is one script (`history.lua`): position and frames at
//!   one instant.
//! - Each instance holds one pub/sub connection, subscribed to exactly the
//!   channels it has local subscribers for, and hands each arriving message
//!   to its [`Fanout`] (`live.rs`).
//! - While Redis is unreachable the hub is not ready: publishes and history
//!   reads fail (503), open connections stay open. When Redis answers again
//!   the hub pokes every local subscriber, which re-reads its position and
//!   fills its gap from history (or gets a `reset` if the sequence was lost).

//!
//! # On Redis Cluster (`--redis-cluster`)
//! A script may only touch keys of one slot, so every key of a channel
//! carries its name as hash tag, in literal braces: `{prefix}:ch:{{name}}:meta`, `:frames`,
//! `:idem:{key}`, and the live channel `{prefix}:live:{{name}}`, published
//! with `SPUBLISH` and followed with `SSUBSCRIBE` (sharded pub/sub: a
//! channel's messages stay on its shard). The hub's epoch cannot be in
//! every slot: each channel has its own stand-in for it,
//! `{prefix}:ch:{{name}}:epoch`, that reads without meta answer (it lives
//! at most 10 s).
//!
//! **Failover.** Replication is asynchronous: a promoted replica may lack
//! messages its old primary acknowledged, and handing their seqs out again
//! in the same epoch would be silent loss. So a channel's meta records the
//! node that wrote it (`CLUSTER MYID`), and the first script that finds
//! the meta written by another node (a failover, or a slot migration)
//! starts the channel over in a fresh epoch, dropping its frames: clients
//! get `epoch_changed`. A node restarted with its AOF keeps its id.
//!
//! **The canary** (`canary.rs`) checks that the live link still delivers,
//! one channel per shard, and replaces the link when it does not.

mod canary;
mod connection;
mod live;
mod storage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{Fanout, History, HistoryLimits, Hub, HubError, HubFuture, HubGauges, Subscriber};
use crate::message::{ChannelName, IdempotencyKey, Message};
use canary::CanaryState;
use connection::{Target, unavailable};
use live::{Interest, Link};
use storage::{Keys, Storage};

/// How the Redis hub connects, and how it watches its live link.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// One Redis URL, or on a cluster the comma-separated seed node URLs.
    pub urls: String,
    /// Redis Cluster with sharded pub/sub instead of one Redis.
    pub cluster: bool,
    /// Prefix of every key and pub/sub channel.
    pub prefix: String,
    pub limits: HistoryLimits,
    /// How often the canary goes round the live link (see `live.rs`).
    pub canary_interval: Duration,
}

impl RedisOptions {
    /// One Redis at `url`, with the default canary interval.
    pub fn single(url: &str, prefix: &str, limits: HistoryLimits) -> RedisOptions {
        RedisOptions {
            urls: url.to_string(),
            cluster: false,
            prefix: prefix.to_string(),
            limits,
            canary_interval: DEFAULT_CANARY_INTERVAL,
        }
    }
}

/// The canary's default interval (`--redis-canary`).
pub const DEFAULT_CANARY_INTERVAL: Duration = Duration::from_secs(5);

/// Redis-backed hub. Shared as `Arc<dyn Hub>`; its background tasks hold
/// their own handles and stop when the runtime that created them stops.
pub struct RedisHub {
    keys: Keys,
    storage: Storage,
    fanout: Arc<Fanout>,
    link: Arc<Link>,
    interest: mpsc::UnboundedSender<Interest>,
    ready: Arc<AtomicBool>,
    canary: Arc<CanaryState>,
    /// Times Redis came back after being unreachable.
    reconnects: AtomicU64,
    /// Channels the pub/sub connection is subscribed to.
    pubsub_channels: Arc<AtomicUsize>,
}

impl RedisHub {
    /// Connects to one Redis at `url` (RESP3 is switched on whatever the URL says).
    pub async fn connect(url: &str, prefix: &str, limits: HistoryLimits) -> Result<Arc<RedisHub>, HubError> {
        Self::connect_with(RedisOptions::single(url, prefix, limits)).await
    }

    /// Connects to one Redis or to a cluster, as `options` say.
    pub async fn connect_with(options: RedisOptions) -> Result<Arc<RedisHub>, HubError> {
        if options.prefix.contains(['{', '}']) {
            return Err(unavailable("the Redis prefix may not hold { or }: they choose cluster slots"));
        }
        let target = Target::parse(&options.urls, options.cluster)?;
        let commands = target.open(None::<mpsc::UnboundedSender<redis::PushInfo>>).await.map_err(unavailable)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link::open(target.clone(), push_tx).await.map_err(unavailable)?);

        let keys = Keys::new(&options.prefix, target.is_cluster());
        let fanout = Arc::new(Fanout::default());
        let ready = Arc::new(AtomicBool::new(true));
        let canary = Arc::new(CanaryState::default());
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(RedisHub {
            keys: keys.clone(),
            storage: Storage::new(keys.clone(), options.limits, commands, ready.clone()),
            fanout: fanout.clone(),
            link: link.clone(),
            interest,
            ready: ready.clone(),
            canary: canary.clone(),
            reconnects: AtomicU64::new(0),
            pubsub_channels: Arc::default(),
        });
        tokio::spawn(live::receive(push_rx, keys.clone(), fanout.clone(), ready, Arc::downgrade(&link), canary));
        let held = hub.pubsub_channels.clone();
        tokio::spawn(live::track_interest(interest_rx, hub.interest.downgrade(), link, keys, fanout, held));
        tokio::spawn(watch_health(Arc::downgrade(&hub)));
        tokio::spawn(canary::canary(Arc::downgrade(&hub), options.canary_interval));
        Ok(hub)
    }
}

impl Hub for RedisHub {
    fn publish(
        &self,
        channel: ChannelName,
        data: Box<RawValue>,
        key: Option<IdempotencyKey>,
    ) -> HubFuture<'_, Arc<Message>> {
        Box::pin(async move { self.storage.publish(channel, &data, key.as_ref()).await.map(Arc::new) })
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        let create = self.fanout.has_subscribers(&channel);
        Box::pin(self.storage.history(channel, after, limit, create))
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
        self.ready.load(Ordering::Relaxed) && self.canary.alive.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        if self.keys.is_cluster() { "redis-cluster" } else { "redis" }
    }

    fn gauges(&self) -> HubGauges {
        HubGauges {
            channels: self.fanout.channel_count(),
            retained_bytes: 0,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            pubsub_channels: self.pubsub_channels.load(Ordering::Relaxed),
            canary_failures: self.canary.failures.load(Ordering::Relaxed),
        }
    }
}

/// How often the hub checks Redis, and retries it while it is away.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

impl canary::Host for RedisHub {
    fn canary(&self) -> &CanaryState {
        &self.canary
    }

    fn keys(&self) -> &Keys {
        &self.keys
    }

    fn commands(&self) -> connection::RedisConnection {
        self.storage.commands()
    }

    fn poke_all(&self) {
        self.fanout.poke_all();
    }

    async fn link_canaries(&self, channels: Vec<String>, fresh: bool) -> Result<(), HubError> {
        let (done, result) = oneshot::channel();
        let _ = self.interest.send(Interest::Canaries { channels, fresh, done });
        result.await.unwrap_or_else(|_| Err(unavailable("hub stopped")))
    }
}

/// Pings Redis; flips readiness; resyncs subscribers when Redis comes back.
async fn watch_health(hub: std::sync::Weak<RedisHub>) {
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
