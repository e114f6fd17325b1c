//! Local fan-out: which connection of this process wants which channel, and
//! how a live message reaches each. A hub hands each live message to
//! [`Fanout::deliver`] once.
//!
//! Connections live on the server's workers, one thread and one
//! single-threaded runtime each. Waking a task of another thread costs that
//! thread a syscall, so the publishing thread does not offer a message to
//! every connection itself: it hands the message once to each worker with
//! subscribers of its channel (one wake per worker, none for a message that
//! finds the worker's mailbox already waiting), and a task on that worker
//! offers it to the connections living there, whose wakes are local and
//! cheap. Connections on the publishing thread are offered at once.
//!
//! Order per channel holds: a hub delivers a channel's messages one at a
//! time, a mailbox is first in, first out, and a message meant for the
//! publishing thread's own connections waits behind its mailbox when that is
//! not empty. A thread without a single-threaded runtime (a plain test, a
//! multi-threaded runtime) gets no such task: its connections are offered at
//! once, from whichever thread delivers, as they all were before.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::Poll;
use std::thread::{self, ThreadId};

use futures_util::task::AtomicWaker;
use tokio::runtime::{Handle, RuntimeFlavor};

use super::Subscriber;
use crate::message::{ChannelName, Message};

/// Which local subscribers want which channel, per worker. Shared behind `Arc`.
#[derive(Debug, Default)]
pub struct Fanout {
    /// Per channel, the workers with at least one subscriber of it.
    channels: RwLock<HashMap<ChannelName, Vec<Arc<Worker>>>>,
    /// The worker new subscribers of each thread join.
    workers: Mutex<Vec<Arc<Worker>>>,
}

/// The subscribers living on one thread, and the mailbox through which other
/// threads hand them messages.
#[derive(Debug)]
struct Worker {
    thread: ThreadId,
    subscribers: Mutex<HashMap<ChannelName, HashMap<u64, Arc<Subscriber>>>>,
    mailbox: Mutex<Vec<Arc<Message>>>,
    /// The task that empties the mailbox.
    waker: AtomicWaker,
    /// Whether that task runs; without it, messages are offered at once.
    draining: AtomicBool,
}

impl Fanout {
    /// Registers a subscriber with the worker of the calling thread, the one
    /// its connection runs on; returns true when it is the channel's first.
    pub fn add(&self, channel: &ChannelName, subscriber: Arc<Subscriber>) -> bool {
        let worker = self.worker_here();
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        let workers = channels.entry(channel.clone()).or_default();
        let first = workers.is_empty();
        let mut subscribers = worker.subscribers();
        let of_channel = subscribers.entry(channel.clone()).or_default();
        if of_channel.is_empty() {
            workers.push(worker.clone());
        }
        of_channel.insert(subscriber.id(), subscriber);
        first
    }

    /// Unregisters a subscriber (from whichever thread); returns true when
    /// the channel has none left.
    pub fn remove(&self, channel: &ChannelName, subscriber: u64) -> bool {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        let Some(workers) = channels.get_mut(channel) else { return false };
        let Some((at, emptied)) =
            workers.iter().enumerate().find_map(|(at, w)| Some((at, w.remove(channel, subscriber)?)))
        else {
            return false;
        };
        if emptied {
            workers.swap_remove(at);
        }
        let empty = workers.is_empty();
        if empty {
            channels.remove(channel);
        }
        empty
    }

    /// Hands a message to every worker with subscribers of its channel.
    pub fn deliver(&self, message: &Arc<Message>) {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let Some(workers) = channels.get(&message.channel) else { return };
        let here = thread::current().id();
        for worker in workers {
            worker.hand(message, worker.thread == here);
        }
    }

    /// Pokes every local subscriber of every channel (see [`Subscriber::poke`]).
    pub fn poke_all(&self) {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        for (channel, workers) in channels.iter() {
            for worker in workers {
                worker.subscribers().get(channel).into_iter().flat_map(HashMap::values).for_each(|s| s.poke());
            }
        }
    }

    pub fn has_subscribers(&self, channel: &ChannelName) -> bool {
        self.channels.read().unwrap_or_else(|e| e.into_inner()).contains_key(channel)
    }

    /// Channels with at least one local subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The calling thread's worker, made (with its task, on a single-threaded
    /// runtime) on the thread's first subscriber, or again when the runtime
    /// its task ran on is gone.
    fn worker_here(&self) -> Arc<Worker> {
        let thread = thread::current().id();
        let runtime = Handle::try_current().ok().filter(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let at = workers.iter().position(|w| w.thread == thread);
        if let Some(at) = at
            && (workers[at].draining.load(Ordering::Acquire) || runtime.is_none())
        {
            return workers[at].clone();
        }
        let worker = Arc::new(Worker {
            thread,
            subscribers: Mutex::default(),
            mailbox: Mutex::default(),
            waker: AtomicWaker::new(),
            draining: AtomicBool::new(runtime.is_some()),
        });
        if let Some(runtime) = runtime {
            runtime.spawn(drain(Drain(worker.clone())));
        }
        match at {
            Some(at) => workers[at] = worker.clone(),
            None => workers.push(worker.clone()),
        }
        worker
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        for worker in self.workers.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            worker.draining.store(false, Ordering::Release);
            worker.waker.wake();
        }
    }
}

impl Worker {
    fn subscribers(&self) -> MutexGuard<'_, HashMap<ChannelName, HashMap<u64, Arc<Subscriber>>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mailbox(&self) -> MutexGuard<'_, Vec<Arc<Message>>> {
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes a subscriber; `None` if it is not here, else whether the
    /// channel has no subscriber left here.
    fn remove(&self, channel: &ChannelName, subscriber: u64) -> Option<bool> {
        let mut subscribers = self.subscribers();
        let of_channel = subscribers.get_mut(channel)?;
        of_channel.remove(&subscriber)?;
        let emptied = of_channel.is_empty();
        if emptied {
            subscribers.remove(channel);
        }
        Some(emptied)
    }

    /// Puts a message in the mailbox, waking the worker's task, or, on the
    /// worker's own thread with nothing waiting before it (or without a
    /// task), offers it at once.
    fn hand(&self, message: &Arc<Message>, here: bool) {
        if self.draining.load(Ordering::Acquire) {
            let mut mailbox = self.mailbox();
            if !here || !mailbox.is_empty() {
                mailbox.push(message.clone());
                drop(mailbox);
                self.waker.wake();
                return;
            }
        }
        self.offer(std::slice::from_ref(message));
    }

    /// Offers messages, in order, to the subscribers of their channels here.
    fn offer(&self, messages: &[Arc<Message>]) {
        let subscribers = self.subscribers();
        for message in messages {
            if let Some(of_channel) = subscribers.get(&message.channel) {
                for subscriber in of_channel.values() {
                    subscriber.offer(message);
                }
            }
        }
    }
}

/// A worker's task: offers what arrives in its mailbox, a batch at a time,
/// until the fan-out is dropped (or the runtime with it).
async fn drain(task: Drain) {
    let worker = &task.0;
    let mut batch = Vec::new();
    loop {
        let open = poll_fn(|cx| {
            worker.waker.register(cx.waker());
            if !worker.draining.load(Ordering::Acquire) {
                return Poll::Ready(false);
            }
            let mut mailbox = worker.mailbox();
            if mailbox.is_empty() {
                return Poll::Pending;
            }
            std::mem::swap(&mut *mailbox, &mut batch);
            Poll::Ready(true)
        })
        .await;
        if !open {
            return;
        }
        // A copy of each message for this worker's connections: the count of
        // references every delivery takes and drops stays on this core.
        for message in &mut batch {
            *message = Arc::new(Message::clone(message));
        }
        worker.offer(&batch);
        batch.clear();
    }
}

/// The worker a [`drain`] task serves. Dropped with the task however it
/// ends (a runtime may drop it before its first poll), it marks the worker
/// undrained, so that nothing is left in a mailbox nobody empties.
struct Drain(Arc<Worker>);

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.draining.store(false, Ordering::Release);
        let left = std::mem::take(&mut *self.0.mailbox());
        self.0.offer(&left);
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

    fn c() -> ChannelName {
        "c".parse().unwrap()
    }

    #[test]
    fn delivers_to_each_subscriber_of_the_channel() {
        let fanout = Fanout::default();
        let (a, mut a_rx) = Subscriber::new(4);
        let (b, mut b_rx) = Subscriber::new(4);
        assert!(fanout.add(&c(), a.clone()));
        assert!(!fanout.add(&c(), b.clone()));
        fanout.deliver(&message(1));
        assert_eq!(a_rx.try_recv().unwrap().seq, 1);
        assert_eq!(b_rx.try_recv().unwrap().seq, 1);
        assert!(!fanout.remove(&c(), a.id()));
        assert!(fanout.remove(&c(), b.id()));
        fanout.deliver(&message(2));
        assert!(a_rx.try_recv().is_err() && b_rx.try_recv().is_err());
        assert_eq!(fanout.channel_count(), 0);
    }

    #[test]
    fn a_full_queue_marks_the_subscriber_lagged() {
        let fanout = Fanout::default();
        let (s, _rx) = Subscriber::new(2);
        fanout.add(&c(), s.clone());
        fanout.deliver(&message(1));
        fanout.deliver(&message(2));
        assert!(!s.is_lagged());
        fanout.deliver(&message(3));
        assert!(s.is_lagged());
    }

    /// A single-threaded runtime on this thread, as an actix worker has.
    fn worker_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn another_thread_hands_messages_to_the_workers_task_in_order() {
        worker_runtime().block_on(async {
            let fanout = Arc::new(Fanout::default());
            let (s, mut inbox) = Subscriber::new(16);
            fanout.add(&c(), s);
            let from = fanout.clone();
            std::thread::spawn(move || (1..=3).for_each(|seq| from.deliver(&message(seq)))).join().unwrap();
            assert!(inbox.try_recv().is_err(), "waiting in the mailbox until the worker's task runs");
            // One of this thread's own, published while the mailbox still holds those: behind them.
            fanout.deliver(&message(4));
            for seq in 1..=4 {
                assert_eq!(inbox.recv().await.seq, seq);
            }
            fanout.deliver(&message(5));
            assert_eq!(inbox.try_recv().unwrap().seq, 5, "the worker's own thread offers at once");
        });
    }

    #[test]
    fn the_workers_task_ends_with_the_fanout() {
        let runtime = worker_runtime();
        let fanout = Fanout::default();
        let worker = runtime.block_on(async {
            fanout.add(&c(), Subscriber::new(4).0);
            fanout.worker_here()
        });
        assert!(worker.draining.load(Ordering::Acquire));
        drop(fanout);
        runtime.block_on(tokio::task::yield_now());
        assert!(!worker.draining.load(Ordering::Acquire));
        assert_eq!(Arc::strong_count(&worker), 1, "the task let go of it");
    }

    #[test]
    fn a_thread_whose_runtime_ended_gets_a_new_worker() {
        let fanout = Arc::new(Fanout::default());
        let first = worker_runtime().block_on(async { fanout.worker_here() });
        assert!(!first.draining.load(Ordering::Acquire), "its task went with its runtime");
        worker_runtime().block_on(async {
            let (s, mut inbox) = Subscriber::new(4);
            fanout.add(&c(), s);
            assert!(fanout.worker_here().draining.load(Ordering::Acquire));
            let from = fanout.clone();
            std::thread::spawn(move || from.deliver(&message(1))).join().unwrap();
            assert_eq!(inbox.recv().await.seq, 1);
        });
    }
}
