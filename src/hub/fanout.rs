//! Local fan-out: one registry per process of which connection wants which
//! channel. A hub hands each live message to [`Fanout::deliver`] once; the
//! fan-out offers the same `Arc<Message>` to every local subscriber.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::message::{ChannelName, Message};

/// One connection's live inbox: a bounded queue. A subscriber whose queue is
/// full when a message arrives is marked lagged; its session then disconnects
/// it, and it resumes from its cursor, instead of the server buffering without
/// bound.
///
/// Only the connection's own task waits on it, so it carries one waker, not
/// a channel's machinery: an empty queue allocates nothing, and an offer to a
/// session that has not run since the last one wakes nobody twice.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    capacity: usize,
    queue: Mutex<VecDeque<Arc<Message>>>,
    lagged: AtomicBool,
    /// Set by [`Subscriber::poke`]: live delivery may have missed messages.
    stale: AtomicBool,
    /// A lag or poke that [`Inbox::recv_or_woken`] has not reported yet.
    signalled: AtomicBool,
    waker: AtomicWaker,
}

/// The receiving end of a [`Subscriber`]'s queue, held by its connection.
#[derive(Debug)]
pub struct Inbox {
    subscriber: Arc<Subscriber>,
}

/// Nothing is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Room an empty queue may keep (messages); past it, it is freed.
const KEPT: usize = 8;

impl Subscriber {
    pub fn new(capacity: usize) -> (Arc<Subscriber>, Inbox) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber {
            id,
            capacity: capacity.max(1),
            queue: Mutex::default(),
            lagged: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            signalled: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        (subscriber.clone(), Inbox { subscriber })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Message>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next queued message. A queue a burst left empty gives its
    /// room back, so that an idle connection keeps none.
    fn pop(&self) -> Option<Arc<Message>> {
        let mut queue = self.queue();
        let message = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEPT {
            *queue = VecDeque::new();
        }
        message
    }

    /// Offers a message without waiting. Returns false when it was dropped.
    pub fn offer(&self, message: &Arc<Message>) -> bool {
        let mut queue = self.queue();
        if queue.len() >= self.capacity {
            drop(queue);
            if !self.lagged.swap(true, Ordering::Relaxed) {
                self.signal();
            }
            return false;
        }
        queue.push_back(message.clone());
        drop(queue);
        self.waker.wake();
        true
    }

    fn signal(&self) {
        self.signalled.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Resolves once a message had to be dropped for this subscriber.
    pub async fn lagged(&self) {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.is_lagged() { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }

    /// Tells the subscriber that live delivery may have missed messages (the
    /// hub lost its feed for a while): it should re-read its position.
    pub fn poke(&self) {
        self.stale.store(true, Ordering::Relaxed);
        self.signal();
    }

    /// Whether a poke came since the last call.
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::Relaxed)
    }
}

impl Inbox {
    /// The next queued message, without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Message>, Empty> {
        self.subscriber.pop().ok_or(Empty)
    }

    /// The next message, waiting for one.
    pub async fn recv(&mut self) -> Arc<Message> {
        loop {
            if let Some(message) = self.recv_or_woken().await {
                return message;
            }
        }
    }

    /// The next queued message or, if none comes first, the next lag or poke
    /// (`None`).
    pub async fn recv_or_woken(&mut self) -> Option<Arc<Message>> {
        let subscriber = &self.subscriber;
        poll_fn(|cx| {
            subscriber.waker.register(cx.waker());
            if let Some(message) = subscriber.pop() {
                return Poll::Ready(Some(message));
            }
            if subscriber.signalled.swap(false, Ordering::AcqRel) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
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
    fn a_queue_emptied_after_a_burst_gives_its_room_back() {
        let fanout = Fanout::default();
        let c: ChannelName = "c".parse().unwrap();
        let (s, mut inbox) = Subscriber::new(64);
        fanout.add(&c, s.clone());
        for seq in 1..=64 {
            assert_eq!(fanout.deliver(&message(seq)), 1);
        }
        assert!(s.queue().capacity() >= 64);
        let seqs: Vec<u64> = std::iter::from_fn(|| inbox.try_recv().ok()).map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
        assert_eq!(s.queue().capacity(), 0, "an idle connection keeps no queue");
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
