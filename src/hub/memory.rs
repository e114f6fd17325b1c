//! The embedded hub: history in process memory, one epoch per process (a
//! restart loses every sequence, so every channel gets a new epoch).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;

use super::{Fanout, History, HistoryLimits, Hub, HubFuture, Subscriber};
use crate::message::{ChannelName, Epoch, Message, now_micros};

/// In-memory hub. Publishes on one channel are serialised by that channel's
/// lock, which is also held while the message is fanned out, so that local
/// subscribers receive each channel in seq order.
pub struct MemoryHub {
    epoch: Epoch,
    limits: HistoryLimits,
    channels: Mutex<HashMap<ChannelName, Arc<Mutex<Log>>>>,
    fanout: Fanout,
}

#[derive(Default)]
struct Log {
    head: u64,
    history: VecDeque<Arc<Message>>,
}

impl Log {
    fn trim(&mut self, limits: &HistoryLimits, now: u64) {
        let max_age = u64::try_from(limits.max_age.as_micros()).unwrap_or(u64::MAX);
        while self.history.len() > limits.size
            || self.history.front().is_some_and(|m| now.saturating_sub(m.ts) > max_age)
        {
            self.history.pop_front();
        }
    }

    fn oldest(&self) -> u64 {
        self.history.front().map_or(self.head + 1, |m| m.seq)
    }
}

impl MemoryHub {
    pub fn new(limits: HistoryLimits) -> MemoryHub {
        MemoryHub { epoch: Epoch::random(), limits, channels: Mutex::default(), fanout: Fanout::default() }
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    fn log(&self, channel: &ChannelName) -> Option<Arc<Mutex<Log>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).get(channel).cloned()
    }

    #[cfg(test)]
    pub(crate) fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    fn publish_now(&self, channel: ChannelName, data: &RawValue) -> Arc<Message> {
        self.append(channel, data, true)
    }

    /// Stores a message without making it live, as if live delivery lost it.
    #[cfg(test)]
    pub(crate) fn publish_unannounced(&self, channel: ChannelName, data: &RawValue) -> Arc<Message> {
        self.append(channel, data, false)
    }

    fn append(&self, channel: ChannelName, data: &RawValue, live: bool) -> Arc<Message> {
        let log = self.channels.lock().unwrap_or_else(|e| e.into_inner()).entry(channel.clone()).or_default().clone();
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        let ts = now_micros();
        log.head += 1;
        let message = Arc::new(Message::new(channel, log.head, ts, self.epoch.clone(), data));
        log.history.push_back(message.clone());
        log.trim(&self.limits, ts);
        if live {
            self.fanout.deliver(&message);
        }
        message
    }

    fn history_now(&self, channel: &ChannelName, after: u64, limit: usize) -> History {
        let Some(log) = self.log(channel) else {
            return History { epoch: self.epoch.clone(), head: 0, oldest: 1, messages: Vec::new() };
        };
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        log.trim(&self.limits, now_micros());
        let oldest = log.oldest();
        // Retained seqs are contiguous, so the first one after `after` is at a known index.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        let messages = log.history.iter().skip(skip).take(limit).cloned().collect();
        History { epoch: self.epoch.clone(), head: log.head, oldest, messages }
    }
}

impl Hub for MemoryHub {
    fn publish(&self, channel: ChannelName, data: Box<RawValue>) -> HubFuture<'_, Arc<Message>> {
        let message = self.publish_now(channel, &data);
        Box::pin(async move { Ok(message) })
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        let history = self.history_now(&channel, after, limit);
        Box::pin(async move { Ok(history) })
    }

    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()> {
        self.fanout.add(&channel, subscriber);
        Box::pin(async { Ok(()) })
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

    #[test]
    fn trims_by_size_and_reads_after_a_position() {
        let hub = MemoryHub::new(HistoryLimits { size: 3, max_age: Duration::from_secs(60) });
        let c: ChannelName = "c".parse().unwrap();
        for n in 1..=5 {
            assert_eq!(hub.publish_now(c.clone(), &data(n)).seq, n);
        }
        let h = hub.history_now(&c, 0, 10);
        assert_eq!((h.head, h.oldest), (5, 3));
        assert_eq!(h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(hub.history_now(&c, 3, 10).messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(hub.history_now(&c, 3, 1).messages.len(), 1);
        assert!(hub.history_now(&c, 5, 10).messages.is_empty());
        assert!(hub.history_now(&c, 9, 10).messages.is_empty());
        let quiet = hub.history_now(&"quiet".parse().unwrap(), 0, 10);
        assert_eq!((quiet.head, quiet.oldest, quiet.epoch), (0, 1, hub.epoch().clone()));
    }

    #[test]
    fn trims_by_age() {
        let hub = MemoryHub::new(HistoryLimits { size: 10, max_age: Duration::ZERO });
        let c: ChannelName = "c".parse().unwrap();
        hub.publish_now(c.clone(), &data(1));
        // ts is in microseconds; wait until the clock has moved past it.
        let start = now_micros();
        while now_micros() == start {
            std::hint::spin_loop();
        }
        let h = hub.history_now(&c, 0, 10);
        assert_eq!((h.head, h.oldest, h.messages.len()), (1, 2, 0));
    }

    #[test]
    fn concurrent_publishers_get_distinct_gap_free_seqs() {
        let hub = Arc::new(MemoryHub::new(HistoryLimits { size: 10_000, max_age: Duration::from_secs(60) }));
        let c: ChannelName = "c".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (hub, c) = (hub.clone(), c.clone());
                std::thread::spawn(move || {
                    (0..500).map(|n| hub.publish_now(c.clone(), &data(n)).seq).collect::<Vec<_>>()
                })
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
            hub.publish_now(c.clone(), &data(n));
        }
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok()).map(|m| m.seq).collect();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
    }
}
