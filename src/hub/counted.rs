//! A hub that counts what goes through it: publishes (and their failures by
//! kind) and history reads, whichever hub is behind and whoever calls it
//! (HTTP and WebSocket publishes, the demo publisher, every subscription).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;

use super::{History, Hub, HubError, HubFuture, HubGauges, Subscriber};
use crate::message::{ChannelName, IdempotencyKey, Message};

/// What a [`Counted`] hub has seen. Read by `/metrics`.
#[derive(Debug, Default)]
pub struct HubCounts {
    /// Publishes attempted, failed ones included.
    pub publishes: AtomicU64,
    /// Failed publishes, per [`HubError::ALL_KINDS`].
    pub publish_errors: [AtomicU64; HubError::ALL_KINDS.len()],
    pub history_reads: AtomicU64,
}

/// `inner`, counting into `counts`. Shared as `Arc<dyn Hub>` like any hub.
pub struct Counted {
    inner: Arc<dyn Hub>,
    counts: Arc<HubCounts>,
}

impl Counted {
    pub fn new(inner: Arc<dyn Hub>, counts: Arc<HubCounts>) -> Counted {
        Counted { inner, counts }
    }
}

impl Hub for Counted {
    fn publish(
        &self,
        channel: ChannelName,
        data: Box<RawValue>,
        key: Option<IdempotencyKey>,
    ) -> HubFuture<'_, Arc<Message>> {
        self.counts.publishes.fetch_add(1, Ordering::Relaxed);
        let publish = self.inner.publish(channel, data, key);
        Box::pin(async move {
            let result = publish.await;
            if let Err(e) = &result {
                self.counts.publish_errors[e.kind_index()].fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        self.counts.history_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.history(channel, after, limit)
    }

    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()> {
        self.inner.subscribe(channel, subscriber)
    }

    fn unsubscribe(&self, channel: &ChannelName, subscriber: u64) {
        self.inner.unsubscribe(channel, subscriber)
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn gauges(&self) -> HubGauges {
        self.inner.gauges()
    }
}
