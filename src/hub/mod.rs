//! The channel hub: where messages get their sequence numbers, where history
//! is kept, and where live messages come from.
//!
//! # Contract (every implementation is held to it by `tests/contract/hub_contract.rs`)
//! - **Atomic publish.** `publish` assigns the channel's next `seq` (starting at
//!   1, growing by exactly 1), stamps `ts`, appends the message to the
//!   channel's history and makes it live, as one step: no two publishes get
//!   the same seq, none is skipped, and a message is never live before it is
//!   in history. Every server instance sharing the hub sees the same seqs.
//! - **History.** Bounded per channel by count and by age. `history(after)`
//!   returns the retained messages with `seq > after`, oldest first, together
//!   with the channel's epoch, head and oldest retained seq, read at one
//!   instant.
//! - **Epoch.** Changes whenever the hub loses a channel's sequence (memory
//!   hub restarted or the channel forgotten, Redis flushed or its keys
//!   expired): a channel that starts again never reuses an epoch it had.
//!   Seqs are only comparable within an epoch. A channel has its epoch from
//!   its first subscribe or publish, so a subscriber's position names the
//!   epoch the channel's first message will carry; a channel never
//!   subscribed or published reads at seq 0 in an epoch its first publish
//!   may not keep. A position in another epoch, seq 0 included, is never
//!   carried into this one (API.md v1.2: the client gets `epoch_changed`).
//! - **Idempotency.** A publish with a key the channel saw within
//!   [`IDEMPOTENCY_WINDOW`] publishes nothing and answers as the first one.
//! - **Bounded.** The memory hub forgets a channel with no subscriber and no
//!   retained message; Redis keys expire with the history age.
//! - **Live delivery.** Once `subscribe` resolves, every message published
//!   afterwards on that channel is offered to the subscriber, per channel in
//!   seq order, through the process's one [`Fanout`]. Delivery is at most
//!   once and may have gaps (a slow subscriber, a lost hub connection);
//!   transports detect gaps by seq and fill them from history.
//! - **Cost.** A channel with no local subscriber costs no live traffic.
//!
//! The hub knows nothing of HTTP or of transports.

mod counted;
mod fanout;
pub mod memory;
pub mod redis;
mod subscriber;
#[cfg(test)]
pub(crate) mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::value::RawValue;

pub use counted::{Counted, HubCounts};
pub use fanout::Fanout;
pub use memory::MemoryHub;
pub use redis::{RedisHub, RedisOptions};
pub use subscriber::{Inbox, Subscriber};

use crate::message::{ChannelName, Epoch, IdempotencyKey, Message};

/// A boxed future, so that `dyn Hub` can be shared by every transport.
pub type HubFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HubError>> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    /// The hub's backing store cannot be reached; try again later.
    #[error("hub unavailable: {0}")]
    Unavailable(String),
    /// The hub holds all it may (a new channel past `--hub-max-channels`).
    #[error("hub full: {0}")]
    Full(String),
    /// A publish whose outcome is unknown (it timed out on its way): it may
    /// have been stored. A retry with the same idempotency key is safe.
    #[error("publish outcome unknown: {0}")]
    Uncertain(String),
}

impl HubError {
    /// The `kind` label of each variant in `/metrics`, in the order of [`HubError::kind_index`].
    pub const ALL_KINDS: [&'static str; 3] = ["unavailable", "full", "uncertain"];

    pub fn kind_index(&self) -> usize {
        match self {
            HubError::Unavailable(_) => 0,
            HubError::Full(_) => 1,
            HubError::Uncertain(_) => 2,
        }
    }
}

/// A channel's state and the retained messages after some position.
#[derive(Debug, Clone)]
pub struct History {
    pub epoch: Epoch,
    /// The last seq assigned in this epoch (0: never published).
    pub head: u64,
    /// The oldest retained seq; `head + 1` when nothing is retained.
    pub oldest: u64,
    pub messages: Vec<Arc<Message>>,
}

/// Retention limits of a channel's history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub size: usize,
    pub max_age: std::time::Duration,
}

/// How long a publish's idempotency key is remembered (API.md v1.1).
pub const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// A channel hub. Shared as `Arc<dyn Hub>`; see the module docs for the contract.
pub trait Hub: Send + Sync + 'static {
    /// Publishes `data` (valid JSON) on `channel`; returns the stored message.
    /// With an idempotency key that this channel saw within
    /// [`IDEMPOTENCY_WINDOW`], nothing is published: the answer is the first
    /// publish's seq, ts and epoch (with this call's data), checked and
    /// recorded atomically with the publish.
    fn publish(
        &self,
        channel: ChannelName,
        data: Box<RawValue>,
        key: Option<IdempotencyKey>,
    ) -> HubFuture<'_, Arc<Message>>;

    /// At most `limit` retained messages with `seq > after`, and the channel's
    /// position. `limit == 0` reads the position alone.
    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History>;

    /// Starts live delivery of `channel` to `subscriber`; resolves once it is
    /// in effect, so that a history read made afterwards leaves no gap.
    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()>;

    /// Stops live delivery of `channel` to the subscriber with this id.
    fn unsubscribe(&self, channel: &ChannelName, subscriber: u64);

    /// Whether the hub can serve publishes and history reads now.
    fn is_ready(&self) -> bool;

    /// A short name for logs and `/api/stats`: `memory` or `redis`.
    fn kind(&self) -> &'static str;

    /// The hub's state, for `/api/stats` and `/metrics`.
    fn gauges(&self) -> HubGauges;
}

/// What a hub reports of its state. Fields a hub has no use for stay 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubGauges {
    /// Channels this process holds (memory hub) or has local subscribers for.
    pub channels: usize,
    /// Bytes of history (and idempotency keys) held in this process; 0 when
    /// they live elsewhere.
    pub retained_bytes: usize,
    /// Times the hub's backing store came back after being unreachable.
    pub reconnects: u64,
    /// Channels this process is subscribed to on the backing store's pub/sub.
    pub pubsub_channels: usize,
    /// Times the live link's canary did not come back, so the link was replaced.
    pub canary_failures: u64,
}
