//! A hub for unit tests of what sits on top of a hub: a memory hub whose
//! history reads can fail or stall and whose live delivery can be lost, as
//! with a hub whose link to its store broke.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::value::RawValue;

use super::{Fanout, History, HistoryLimits, Hub, HubError, HubFuture, HubGauges, MemoryHub, Subscriber};
use crate::message::{ChannelName, IdempotencyKey, Message};

/// Switches for the faults a [`FaultyHub`] injects.
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_reads: AtomicBool,
    pub stall_reads: AtomicBool,
    pub drop_live: AtomicBool,
}

/// A [`MemoryHub`] with [`Faults`], which also records its history reads.
pub struct FaultyHub {
    pub store: Arc<MemoryHub>,
    pub faults: Arc<Faults>,
    /// `(limit asked, bytes of messages returned)` of every history read.
    pub reads: std::sync::Mutex<Vec<(usize, usize)>>,
}

impl Default for FaultyHub {
    fn default() -> Self {
        FaultyHub { store: MemoryHub::new(HistoryLimits::default()), faults: Arc::default(), reads: Default::default() }
    }
}

impl FaultyHub {
    pub fn fanout(&self) -> &Fanout {
        self.store.fanout()
    }
}

impl Hub for FaultyHub {
    fn publish(
        &self,
        channel: ChannelName,
        data: Box<RawValue>,
        key: Option<IdempotencyKey>,
    ) -> HubFuture<'_, Arc<Message>> {
        if self.faults.drop_live.load(Ordering::Relaxed) {
            let message = self.store.publish_unannounced(channel, &data);
            return Box::pin(async move { message });
        }
        self.store.publish(channel, data, key)
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        Box::pin(async move {
            if self.faults.stall_reads.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            if self.faults.fail_reads.load(Ordering::Relaxed) {
                return Err(HubError::Unavailable("injected".into()));
            }
            let history = self.store.history(channel, after, limit).await?;
            let bytes = history.messages.iter().map(|m| m.json().len()).sum();
            self.reads.lock().unwrap_or_else(|e| e.into_inner()).push((limit, bytes));
            Ok(history)
        })
    }

    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()> {
        self.store.subscribe(channel, subscriber)
    }

    fn unsubscribe(&self, channel: &ChannelName, subscriber: u64) {
        self.store.unsubscribe(channel, subscriber)
    }

    fn is_ready(&self) -> bool {
        self.store.is_ready()
    }

    fn kind(&self) -> &'static str {
        "faulty"
    }

    fn gauges(&self) -> HubGauges {
        self.store.gauges()
    }
}
