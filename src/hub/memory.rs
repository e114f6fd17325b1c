//! The embedded hub: history in process memory, bounded in every dimension a
//! client could grow.
//!
//! - Per channel, history is bounded by count and age; in total, by bytes
//!   (`--hub-max-bytes`), which count the idempotency keys remembered too:
//!   past it the oldest retained message or key of all goes first, found
//!   through an index of each channel's oldest message and one of each
//!   channel's oldest key. (A key forgotten early only means a retry that
//!   late publishes again.)
//! - Channels are bounded in number (`--hub-max-channels`): publishing to one
//!   more is refused. A channel with no subscriber, no retained message and no
//!   idempotency key still remembered is forgotten by a sweep.
//! - Epochs: a channel is created, in the hub's current epoch, by its first
//!   subscribe or publish, so a subscriber is told the epoch its first message
//!   will carry; a channel not created yet reads at seq 0 in that epoch. A
//!   sweep that forgets a channel that had messages moves the hub to a fresh
//!   epoch first, so a channel forgotten and created again never reuses an
//!   epoch whose seqs a client may hold, while channels that live on keep
//!   theirs. Forgetting a channel never published changes nothing: seq 1 of
//!   its epoch is still to come.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::{Fanout, History, HistoryLimits, Hub, HubError, HubFuture, HubGauges, IDEMPOTENCY_WINDOW, Subscriber};
use crate::message::{ChannelName, Epoch, IdempotencyKey, Message, now_micros};

/// Bounds of the whole hub.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_channels: usize,
    pub max_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_channels: 100_000, max_bytes: 256 * 1024 * 1024 }
    }
}

/// Idempotency keys remembered per channel; past it the oldest is forgotten
/// early (a client retrying that slowly, that often, is not retrying).
const MAX_KEYS: usize = 10_000;

/// How often idle channels are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// In-memory hub. Publishes on one channel are serialised by that channel's
/// lock, which is also held while the message is fanned out, so that local
/// subscribers receive each channel in seq order. Locks are taken in one
/// order: the channel map, then a channel, then the index of oldest messages.
pub struct MemoryHub {
    /// The epoch new channels are created in.
    epoch: Mutex<Epoch>,
    limits: HistoryLimits,
    bounds: Bounds,
    channels: Mutex<HashMap<ChannelName, Arc<Mutex<Log>>>>,
    fanout: Fanout,
    /// `(ts, channel)` of each channel's oldest retained message.
    oldest: Mutex<BTreeSet<(u64, ChannelName)>>,
    /// `(ts, channel)` of each channel's oldest remembered idempotency key
    /// (the ts of the publish it answers).
    oldest_keys: Mutex<BTreeSet<(u64, ChannelName)>>,
    /// Bytes of retained messages (their encodings) and remembered keys
    /// ([`key_cost`]), all channels.
    bytes: AtomicUsize,
}

struct Log {
    /// The name every message of the channel carries: one shared name, which
    /// a connection compares by pointer.
    name: ChannelName,
    epoch: Epoch,
    head: u64,
    history: VecDeque<Arc<Message>>,
    /// Recent idempotency keys and what their publish answered, and their
    /// order of arrival for expiry.
    keys: HashMap<IdempotencyKey, (u64, u64)>,
    key_order: VecDeque<(Instant, IdempotencyKey)>,
    /// Set when the sweep removed this log from the map: a publish that
    /// reached it meanwhile must look the channel up again.
    forgotten: bool,
}

impl Log {
    fn new(name: ChannelName, epoch: Epoch) -> Log {
        Log {
            name,
            epoch,
            head: 0,
            history: VecDeque::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
            forgotten: false,
        }
    }

    fn oldest(&self) -> u64 {
        self.history.front().map_or(self.head + 1, |m| m.seq)
    }

    /// The ts of the publish the oldest remembered key answers.
    fn oldest_key_ts(&self) -> Option<u64> {
        self.key_order.front().and_then(|(_, key)| self.keys.get(key)).map(|&(_, ts)| ts)
    }

    fn is_idle(&self) -> bool {
        self.history.is_empty() && self.keys.is_empty()
    }
}

impl MemoryHub {
    /// A hub with the default [`Bounds`].
    pub fn new(limits: HistoryLimits) -> Arc<MemoryHub> {
        Self::bounded(limits, Bounds::default())
    }

    /// A hub; within a tokio runtime, it sweeps idle channels away while it lives.
    pub fn bounded(limits: HistoryLimits, bounds: Bounds) -> Arc<MemoryHub> {
        let hub = Arc::new(MemoryHub {
            epoch: Mutex::new(Epoch::random()),
            limits,
            bounds,
            channels: Mutex::default(),
            fanout: Fanout::default(),
            oldest: Mutex::default(),
            oldest_keys: Mutex::default(),
            bytes: AtomicUsize::new(0),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_while_alive(Arc::downgrade(&hub)));
        }
        hub
    }

    /// The epoch new channels are created in (and unknown ones read in).
    pub fn epoch(&self) -> Epoch {
        self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[cfg(test)]
    pub(crate) fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    fn map(&self) -> MutexGuard<'_, HashMap<ChannelName, Arc<Mutex<Log>>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self) -> MutexGuard<'_, BTreeSet<(u64, ChannelName)>> {
        self.oldest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_index(&self) -> MutexGuard<'_, BTreeSet<(u64, ChannelName)>> {
        self.oldest_keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's log, created if `create` and there is room.
    fn log(&self, channel: &ChannelName, create: bool) -> Result<Option<Arc<Mutex<Log>>>, HubError> {
        let mut map = self.map();
        if let Some(log) = map.get(channel) {
            return Ok(Some(log.clone()));
        }
        if !create {
            return Ok(None);
        }
        if map.len() >= self.bounds.max_channels {
            return Err(HubError::Full(format!("the hub holds {} channels, its limit", map.len())));
        }
        let log = Arc::new(Mutex::new(Log::new(channel.clone(), self.epoch())));
        map.insert(channel.clone(), log.clone());
        Ok(Some(log))
    }

    fn publish_now(
        &self,
        channel: ChannelName,
        data: &RawValue,
        key: Option<IdempotencyKey>,
        live: bool,
    ) -> Result<Arc<Message>, HubError> {
        let message = loop {
            // unwrap: `create` is true, so there is a log or an error.
            let log = self.log(&channel, true)?.unwrap();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.forgotten {
                continue; // swept away meanwhile: take the new one
            }
            let now = Instant::now();
            self.expire_keys(&channel, &mut log, now);
            if let Some(&(seq, ts)) = key.as_ref().and_then(|k| log.keys.get(k)) {
                return Ok(Arc::new(Message::new(channel, seq, ts, log.epoch.clone(), data)));
            }
            let ts = now_micros();
            log.head += 1;
            let message = Arc::new(Message::new(log.name.clone(), log.head, ts, log.epoch.clone(), data));
            if log.history.is_empty() {
                self.index().insert((ts, channel.clone()));
            }
            log.history.push_back(message.clone());
            self.bytes.fetch_add(message.json().len(), Ordering::Relaxed);
            self.trim(&channel, &mut log, ts);
            if let Some(key) = key {
                self.remember_key(&channel, &mut log, key, (message.seq, ts), now);
            }
            if live {
                self.fanout.deliver(&message);
            }
            break message;
        };
        self.trim_to_budget();
        Ok(message)
    }

    /// Trims a channel by its own limits (count and age).
    fn trim(&self, channel: &ChannelName, log: &mut Log, now: u64) {
        let max_age = u64::try_from(self.limits.max_age.as_micros()).unwrap_or(u64::MAX);
        while log.history.len() > self.limits.size
            || log.history.front().is_some_and(|m| now.saturating_sub(m.ts) > max_age)
        {
            self.pop_front(channel, log);
        }
    }

    /// Drops a channel's oldest retained message, keeping the byte count and
    /// the index of oldest messages true.
    fn pop_front(&self, channel: &ChannelName, log: &mut Log) {
        let Some(first) = log.history.pop_front() else { return };
        self.bytes.fetch_sub(first.json().len(), Ordering::Relaxed);
        let mut index = self.index();
        index.remove(&(first.ts, channel.clone()));
        if let Some(next) = log.history.front() {
            index.insert((next.ts, channel.clone()));
        }
    }

    /// Remembers a publish's idempotency key, counted in the byte budget.
    fn remember_key(
        &self,
        channel: &ChannelName,
        log: &mut Log,
        key: IdempotencyKey,
        answer: (u64, u64),
        now: Instant,
    ) {
        if log.key_order.is_empty() {
            self.key_index().insert((answer.1, channel.clone()));
        }
        self.bytes.fetch_add(key_cost(&key), Ordering::Relaxed);
        log.keys.insert(key.clone(), answer);
        log.key_order.push_back((now, key));
    }

    /// Forgets a channel's oldest key, keeping the byte count and the index
    /// of oldest keys true.
    fn forget_oldest_key(&self, channel: &ChannelName, log: &mut Log) {
        let Some(ts) = log.oldest_key_ts() else { return };
        let Some((_, key)) = log.key_order.pop_front() else { return };
        log.keys.remove(&key);
        self.bytes.fetch_sub(key_cost(&key), Ordering::Relaxed);
        let mut index = self.key_index();
        index.remove(&(ts, channel.clone()));
        if let Some(next) = log.oldest_key_ts() {
            index.insert((next, channel.clone()));
        }
    }

    /// Forgets keys past the idempotency window, or past [`MAX_KEYS`].
    fn expire_keys(&self, channel: &ChannelName, log: &mut Log, now: Instant) {
        while let Some((at, _)) = log.key_order.front() {
            if now.duration_since(*at) < IDEMPOTENCY_WINDOW && log.key_order.len() <= MAX_KEYS {
                break;
            }
            self.forget_oldest_key(channel, log);
        }
    }

    /// Trims the oldest messages and keys of all channels while over
    /// `--hub-max-bytes`, whichever is older first.
    fn trim_to_budget(&self) {
        while self.bytes.load(Ordering::Relaxed) > self.bounds.max_bytes {
            let message = self.index().first().cloned();
            let key = self.key_index().first().cloned();
            let (entry, is_key) = match (message, key) {
                (Some(m), Some(k)) if k < m => (k, true),
                (Some(m), _) => (m, false),
                (None, Some(k)) => (k, true),
                (None, None) => return,
            };
            let (ts, channel) = entry.clone();
            let Ok(Some(log)) = self.log(&channel, false) else { continue };
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            // Under the channel's lock its entries cannot move: trim if this is still the oldest.
            if is_key {
                if log.oldest_key_ts() == Some(ts) && self.key_index().first() == Some(&entry) {
                    self.forget_oldest_key(&channel, &mut log);
                }
            } else if log.history.front().is_some_and(|m| m.ts == ts) && self.index().first() == Some(&entry) {
                self.pop_front(&channel, &mut log);
            }
        }
    }

    fn history_now(&self, channel: &ChannelName, after: u64, limit: usize) -> History {
        // unwrap: without `create`, looking up cannot fail.
        let Some(log) = self.log(channel, false).unwrap() else {
            return History { epoch: self.epoch(), head: 0, oldest: 1, messages: Vec::new() };
        };
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        self.trim(channel, &mut log, now_micros());
        let oldest = log.oldest();
        // Retained seqs are contiguous, so the first one after `after` is at a known index.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        let messages = log.history.iter().skip(skip).take(limit).cloned().collect();
        History { epoch: log.epoch.clone(), head: log.head, oldest, messages }
    }

    /// Trims aged history and forgets channels left with nothing to keep.
    fn sweep(&self) {
        let now = now_micros();
        let instant = Instant::now();
        let mut map = self.map();
        let mut sequence_lost = false;
        map.retain(|channel, log| {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            self.trim(channel, &mut log, now);
            self.expire_keys(channel, &mut log, instant);
            let keep = !log.is_idle() || self.fanout.has_subscribers(channel);
            log.forgotten = !keep;
            // A channel never published loses no seq: created again in the
            // same epoch, its first message is still seq 1 of that epoch.
            sequence_lost |= !keep && log.head > 0;
            keep
        });
        if sequence_lost {
            // Still under the map's lock: no channel is created in between.
            *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = Epoch::random();
        }
    }
}

/// What remembering an idempotency key costs in the byte budget: the key and
/// its entries in the channel's map and arrival order, with the allocator's
/// share (measured: ~220 bytes of RSS per 64-byte key, 460,000 keys).
fn key_cost(key: &IdempotencyKey) -> usize {
    key.as_str().len() + 160
}

async fn sweep_while_alive(hub: Weak<MemoryHub>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.sweep();
    }
}

impl Hub for MemoryHub {
    fn publish(
        &self,
        channel: ChannelName,
        data: Box<RawValue>,
        key: Option<IdempotencyKey>,
    ) -> HubFuture<'_, Arc<Message>> {
        let result = self.publish_now(channel, &data, key, true);
        Box::pin(async move { result })
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        let history = self.history_now(&channel, after, limit);
        Box::pin(async move { Ok(history) })
    }

    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()> {
        // Created now, so that the epoch a subscriber is told stays the channel's.
        let created = self.log(&channel, true).map(|_| ());
        if created.is_ok() {
            self.fanout.add(&channel, subscriber);
        }
        Box::pin(async move { created })
    }

    fn unsubscribe(&self, channel: &ChannelName, subscriber: u64) {
        self.fanout.remove(channel, subscriber);
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn gauges(&self) -> HubGauges {
        HubGauges { channels: self.channel_count(), retained_bytes: self.retained_bytes(), ..HubGauges::default() }
    }
}

impl MemoryHub {
    /// Channels held.
    pub fn channel_count(&self) -> usize {
        self.map().len()
    }

    /// Bytes of retained messages and remembered keys, as counted against the budget.
    pub fn retained_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
impl MemoryHub {
    /// Stores a message without making it live, as if live delivery lost it.
    pub(crate) fn publish_unannounced(&self, channel: ChannelName, data: &RawValue) -> Result<Arc<Message>, HubError> {
        self.publish_now(channel, data, None, false)
    }
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits { size: 1000, max_age: Duration::from_secs(600) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u64) -> Box<RawValue> {
        RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap()
    }

    fn publish(hub: &MemoryHub, c: &ChannelName, n: u64) -> Arc<Message> {
        hub.publish_now(c.clone(), &data(n), None, true).unwrap()
    }

    #[test]
    fn trims_by_size_and_reads_after_a_position() {
        let hub = MemoryHub::new(HistoryLimits { size: 3, max_age: Duration::from_secs(60) });
        let c: ChannelName = "c".parse().unwrap();
        for n in 1..=5 {
            assert_eq!(publish(&hub, &c, n).seq, n);
        }
        let h = hub.history_now(&c, 0, 10);
        assert_eq!((h.head, h.oldest), (5, 3));
        assert_eq!(h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(hub.history_now(&c, 3, 10).messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(hub.history_now(&c, 3, 1).messages.len(), 1);
        assert!(hub.history_now(&c, 5, 10).messages.is_empty());
        assert!(hub.history_now(&c, 9, 10).messages.is_empty());
        let quiet = hub.history_now(&"quiet".parse().unwrap(), 0, 10);
        assert_eq!((quiet.head, quiet.oldest, quiet.epoch), (0, 1, hub.epoch()));
        assert_eq!(hub.retained_bytes(), h.messages.iter().map(|m| m.json().len()).sum::<usize>());
    }

    #[test]
    fn trims_by_age() {
        let hub = MemoryHub::new(HistoryLimits { size: 10, max_age: Duration::ZERO });
        let c: ChannelName = "c".parse().unwrap();
        publish(&hub, &c, 1);
        // ts is in microseconds; wait until the clock has moved past it.
        let start = now_micros();
        while now_micros() == start {
            std::hint::spin_loop();
        }
        let h = hub.history_now(&c, 0, 10);
        assert_eq!((h.head, h.oldest, h.messages.len()), (1, 2, 0));
        assert_eq!(hub.retained_bytes(), 0);
    }

    #[test]
    fn concurrent_publishers_get_distinct_gap_free_seqs() {
        let hub = MemoryHub::new(HistoryLimits { size: 10_000, max_age: Duration::from_secs(60) });
        let c: ChannelName = "c".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (hub, c) = (hub.clone(), c.clone());
                std::thread::spawn(move || (0..500).map(|n| publish(&hub, &c, n).seq).collect::<Vec<_>>())
            })
            .collect();
        let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    }

    #[test]
    fn live_delivery_is_in_seq_order() {
        let hub = MemoryHub::new(HistoryLimits::default());
        let c: ChannelName = "c".parse().unwrap();
        let (s, mut rx) = Subscriber::new(16);
        hub.fanout.add(&c, s);
        for n in 1..=10 {
            publish(&hub, &c, n);
        }
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok()).map(|m| m.seq).collect();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn the_oldest_messages_of_all_channels_go_first_past_the_byte_budget() {
        // Every message below encodes to the same length (same-width ts).
        let one = Message::new("a".parse().unwrap(), 1, now_micros(), Epoch::random(), &data(1)).json().len();
        let hub = MemoryHub::bounded(HistoryLimits::default(), Bounds { max_channels: 10, max_bytes: one * 3 });
        let (a, b): (ChannelName, ChannelName) = ("a".parse().unwrap(), "b".parse().unwrap());
        publish(&hub, &a, 1);
        publish(&hub, &b, 1);
        publish(&hub, &a, 1);
        publish(&hub, &b, 1); // over budget: a's first message goes
        assert_eq!(hub.history_now(&a, 0, 10).messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(hub.history_now(&b, 0, 10).messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(hub.retained_bytes(), one * 3);
    }

    #[test]
    fn channels_are_bounded_and_idle_ones_forgotten_into_a_new_epoch() {
        let hub = MemoryHub::bounded(
            HistoryLimits { size: 10, max_age: Duration::ZERO },
            Bounds { max_channels: 2, ..Bounds::default() },
        );
        let (a, b, c): (ChannelName, ChannelName, ChannelName) =
            ("a".parse().unwrap(), "b".parse().unwrap(), "c".parse().unwrap());
        let first = publish(&hub, &a, 1);
        publish(&hub, &b, 1);
        assert!(matches!(hub.publish_now(c.clone(), &data(1), None, true), Err(HubError::Full(_))));
        let (s, _rx) = Subscriber::new(4);
        hub.fanout.add(&b, s); // b has a subscriber: kept
        let start = now_micros();
        while now_micros() == start {
            std::hint::spin_loop();
        }
        hub.sweep();
        assert_eq!(hub.channel_count(), 1, "a aged out and had no subscriber");
        let again = publish(&hub, &a, 2);
        assert_eq!(again.seq, 1, "a starts over");
        assert_ne!(again.epoch, first.epoch, "in a new epoch");
        assert_eq!(hub.history_now(&b, 0, 0).epoch, first.epoch, "b lived on in its epoch");
    }

    #[test]
    fn idempotency_keys_count_in_the_byte_budget_and_the_oldest_go_first() {
        let key = |n: u64| -> IdempotencyKey { format!("{n:064}").parse().unwrap() };
        let budget = key_cost(&key(0)) * 10;
        // No history kept: the keys are all the hub holds.
        let hub = MemoryHub::bounded(
            HistoryLimits { size: 0, max_age: Duration::from_secs(60) },
            Bounds { max_channels: 10, max_bytes: budget },
        );
        let (a, b): (ChannelName, ChannelName) = ("a".parse().unwrap(), "b".parse().unwrap());
        for n in 0..100 {
            let channel = if n % 2 == 0 { &a } else { &b };
            hub.publish_now(channel.clone(), &data(n), Some(key(n)), true).unwrap();
            assert!(hub.retained_bytes() <= budget, "{} bytes held after {n} keys", hub.retained_bytes());
        }
        assert_eq!(hub.retained_bytes(), budget, "ten keys remembered");
        let newest = hub.publish_now(b.clone(), &data(0), Some(key(99)), true).unwrap();
        assert_eq!(newest.seq, 50, "the newest key still answers its first publish");
        let oldest = hub.publish_now(a.clone(), &data(0), Some(key(0)), true).unwrap();
        assert_eq!(oldest.seq, 51, "the oldest key was forgotten, so it publishes again");
    }

    #[test]
    fn forgetting_a_channel_never_published_keeps_the_epoch() {
        let hub = MemoryHub::new(HistoryLimits::default());
        let c: ChannelName = "c".parse().unwrap();
        let before = hub.epoch();
        let (s, rx) = Subscriber::new(4);
        let id = s.id();
        hub.fanout.add(&c, s);
        hub.log(&c, true).unwrap();
        hub.fanout.remove(&c, id);
        drop(rx);
        hub.sweep();
        assert_eq!(hub.channel_count(), 0, "forgotten");
        assert_eq!(hub.epoch(), before, "no seq was lost, so no new epoch");
        assert_eq!(publish(&hub, &c, 1).epoch, before, "its first message is seq 1 of the epoch it had");
    }

    #[test]
    fn an_idempotency_key_publishes_once() {
        let hub = MemoryHub::new(HistoryLimits::default());
        let c: ChannelName = "c".parse().unwrap();
        let key: IdempotencyKey = "k-1".parse().unwrap();
        let first = hub.publish_now(c.clone(), &data(1), Some(key.clone()), true).unwrap();
        let again = hub.publish_now(c.clone(), &data(1), Some(key), true).unwrap();
        assert_eq!((again.seq, again.ts, &again.epoch), (first.seq, first.ts, &first.epoch));
        assert_eq!(hub.history_now(&c, 0, 10).head, 1, "published once");
        let other = hub.publish_now(c.clone(), &data(1), Some("k-2".parse().unwrap()), true).unwrap();
        assert_eq!(other.seq, 2);
    }
}
