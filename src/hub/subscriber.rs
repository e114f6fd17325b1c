//! One connection's live inbox: a bounded queue that the fan-out offers
//! messages to and the connection's own task takes them from.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::message::Message;

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
    queue: Mutex<Queue>,
    /// Whether `queue` holds anything: a session that looks for more after
    /// each delivery finds nothing without taking the lock.
    queued: AtomicBool,
    lagged: AtomicBool,
    /// Set by [`Subscriber::poke`]: live delivery may have missed messages.
    stale: AtomicBool,
    /// A lag or poke that [`Inbox::recv_or_woken`] has not reported yet.
    signalled: AtomicBool,
    waker: AtomicWaker,
}

/// A subscriber's queued messages, oldest first. The first is kept inline,
/// so that a connection that keeps up, one message at a time, touches no
/// second allocation (a cold cache line at every delivery).
#[derive(Debug, Default)]
struct Queue {
    first: Option<Arc<Message>>,
    /// Empty whenever `first` is.
    rest: VecDeque<Arc<Message>>,
}

impl Queue {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push(&mut self, message: Arc<Message>) {
        match self.first {
            None => self.first = Some(message),
            Some(_) => self.rest.push_back(message),
        }
    }

    fn pop(&mut self) -> Option<Arc<Message>> {
        let message = self.first.take()?;
        self.first = self.rest.pop_front();
        Some(message)
    }
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
            queued: AtomicBool::new(false),
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

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next queued message. A queue a burst left empty gives its
    /// room back, so that an idle connection keeps none.
    fn pop(&self) -> Option<Arc<Message>> {
        if !self.queued.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue();
        let message = queue.pop();
        if queue.first.is_none() {
            self.queued.store(false, Ordering::Release);
            if queue.rest.capacity() > KEPT {
                queue.rest = VecDeque::new();
            }
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
        queue.push(message.clone());
        self.queued.store(true, Ordering::Release);
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

    /// Whether a poke came that [`Subscriber::take_stale`] has not taken.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Whether a poke came since the last call.
    pub fn take_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed) && self.stale.swap(false, Ordering::Relaxed)
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
            if subscriber.signalled.load(Ordering::Acquire) && subscriber.signalled.swap(false, Ordering::AcqRel) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
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
    fn a_queue_emptied_after_a_burst_gives_its_room_back() {
        let (s, mut inbox) = Subscriber::new(64);
        for seq in 1..=64 {
            assert!(s.offer(&message(seq)));
        }
        assert!(s.queue().rest.capacity() >= 63);
        let seqs: Vec<u64> = std::iter::from_fn(|| inbox.try_recv().ok()).map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
        assert_eq!(s.queue().rest.capacity(), 0, "an idle connection keeps no queue");
    }
}
