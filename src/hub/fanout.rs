//! Local fan-out: one registry per process of which connection wants which
//! channel. A hub hands each live message to [`Fanout::deliver`] once; the
//! fan-out offers the same `Arc<Message>` to every local subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{Notify, mpsc};

use crate::message::{ChannelName, Message};

/// One connection's live inbox: a bounded queue. A subscriber whose queue is
/// full when a message arrives is marked lagged; its session then disconnects
/// it, and it resumes from its cursor, instead of the server buffering without
/// bound.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Message>>,
    lagged: AtomicBool,
    /// Set by [`Subscriber::poke`]: live delivery may have missed messages.
    stale: AtomicBool,
    /// Wakes the session on lag or poke.
    wake: Notify,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Subscriber {
    pub fn new(capacity: usize) -> (Arc<Subscriber>, mpsc::Receiver<Arc<Message>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let subscriber =
            Subscriber { id, tx, lagged: AtomicBool::new(false), stale: AtomicBool::new(false), wake: Notify::new() };
        (Arc::new(subscriber), rx)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Offers a message without waiting. Returns false when it was dropped.
    pub fn offer(&self, message: &Arc<Message>) -> bool {
        match self.tx.try_send(message.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.lagged.swap(true, Ordering::Relaxed) {
                    self.wake.notify_one();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Resolves once a message had to be dropped for this subscriber.
    pub async fn lagged(&self) {
        while !self.is_lagged() {
            self.wake.notified().await;
        }
    }

    /// Tells the subscriber that live delivery may have missed messages (the
    /// hub lost its feed for a while): it should re-read its position.
    pub fn poke(&self) {
        self.stale.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Whether a poke came since the last call.
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::Relaxed)
    }

    /// Resolves on the next lag or poke (at once if one is pending).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// Which local subscribers want which channel. Shallow to share behind `Arc`.
#[derive(Debug, Default)]
pub struct Fanout {
    channels: RwLock<HashMap<ChannelName, HashMap<u64, Arc<Subscriber>>>>,
}

impl Fanout {
    /// Registers a subscriber; returns true when it is the channel's first.
    pub fn add(&self, channel: &ChannelName, subscriber: Arc<Subscriber>) -> bool {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        let subscribers = channels.entry(channel.clone()).or_default();
        subscribers.insert(subscriber.id, subscriber);
        subscribers.len() == 1
    }

    /// Unregisters a subscriber; returns true when the channel has none left.
    pub fn remove(&self, channel: &ChannelName, subscriber: u64) -> bool {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        let Some(subscribers) = channels.get_mut(channel) else { return false };
        if subscribers.remove(&subscriber).is_none() {
            return false;
        }
        let empty = subscribers.is_empty();
        if empty {
            channels.remove(channel);
        }
        empty
    }

    /// Offers a message to every local subscriber of its channel; returns how
    /// many took it.
    pub fn deliver(&self, message: &Arc<Message>) -> usize {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        channels
            .get(&message.channel)
            .map_or(0, |subscribers| subscribers.values().filter(|s| s.offer(message)).count())
    }

    /// Pokes every local subscriber of every channel (see [`Subscriber::poke`]).
    pub fn poke_all(&self) {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        for subscriber in channels.values().flat_map(HashMap::values) {
            subscriber.poke();
        }
    }

    pub fn has_subscribers(&self, channel: &ChannelName) -> bool {
        self.channels.read().unwrap_or_else(|e| e.into_inner()).contains_key(channel)
    }

    /// Channels with at least one local subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Epoch;
    use serde_json::value::RawValue;

    fn message(seq: u64) -> Arc<Message> {
        let data = RawValue::from_string("1".into()).unwrap();
        Arc::new(Message::new("c".parse().unwrap(), seq, 0, Epoch::random(), &data))
    }

    #[test]
    fn delivers_to_each_subscriber_of_the_channel() {
        let fanout = Fanout::default();
        let c: ChannelName = "c".parse().unwrap();
        let (a, mut a_rx) = Subscriber::new(4);
        let (b, mut b_rx) = Subscriber::new(4);
        assert!(fanout.add(&c, a.clone()));
        assert!(!fanout.add(&c, b.clone()));
        assert_eq!(fanout.deliver(&message(1)), 2);
        assert_eq!(a_rx.try_recv().unwrap().seq, 1);
        assert_eq!(b_rx.try_recv().unwrap().seq, 1);
        assert!(!fanout.remove(&c, a.id()));
        assert!(fanout.remove(&c, b.id()));
        assert_eq!(fanout.deliver(&message(2)), 0);
        assert_eq!(fanout.channel_count(), 0);
    }

    #[test]
    fn a_full_queue_marks_the_subscriber_lagged() {
        let fanout = Fanout::default();
        let c: ChannelName = "c".parse().unwrap();
        let (s, _rx) = Subscriber::new(2);
        fanout.add(&c, s.clone());
        assert_eq!(fanout.deliver(&message(1)), 1);
        assert_eq!(fanout.deliver(&message(2)), 1);
        assert!(!s.is_lagged());
        assert_eq!(fanout.deliver(&message(3)), 0);
        assert!(s.is_lagged());
    }
}
