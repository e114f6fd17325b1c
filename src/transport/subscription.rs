//! `Subscription`: one connection's view of its channels. It turns a cursor
//! into an exact catch-up (history after the cursor, or an explicit `reset`),
//! then follows the live queue, dropping duplicates and filling gaps from
//! history by seq. Every transport delivers what it yields, in order. The
//! judgements themselves are [`super::position`]'s; this is the async shell
//! around them: registration, the queue, history reads.
//!
//! Cancellation: `next` and `next_ready` are used inside `select!`. Taking a
//! live message off the queue and judging it is synchronous; history is read
//! only for channels marked `behind`, and a channel's state changes only after
//! a read completed, so a cancelled or failed read is simply done again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::position::{ChannelPosition, Live, Verdict};
use crate::hub::{History, Hub, HubError, Inbox, Subscriber};
use crate::message::{ChannelName, Cursor, Epoch, Message, Position, Reset};

/// What a subscription yields, in delivery order per channel.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Arc<Message>),
    Reset(Reset),
}

impl Event {
    /// When a message was published (its `ts`); a reset has no such time.
    pub fn published_us(&self) -> Option<u64> {
        match self {
            Event::Message(message) => Some(message.ts),
            Event::Reset(_) => None,
        }
    }
}

/// Why a subscription stopped yielding events.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    /// The connection's queue overflowed: it could not keep up.
    #[error("too slow to keep up")]
    Lagged,
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// A channel as `subscribe` found it: the `subscribed` frame's content.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub channel: ChannelName,
    pub epoch: Epoch,
    /// The channel's head when the subscription was made.
    pub head: u64,
}

#[derive(Debug)]
struct Channel {
    name: ChannelName,
    /// The position of the last event handed to the transport.
    delivered: ChannelPosition,
    /// The position of the last event put in `pending` (or delivered).
    queued: ChannelPosition,
    /// History must be read after `queued` before live messages can follow.
    behind: bool,
}

/// A connection's channels and their positions. Dropping it ends live delivery.
pub struct Subscription {
    hub: Arc<dyn Hub>,
    /// `None` for a one-shot read (short polling): nothing live is registered.
    live: Option<(Arc<Subscriber>, Inbox)>,
    channels: Vec<Channel>,
    /// A channel registered with the hub but not yet in `channels` (its
    /// subscribe is under way); dropped with the rest if the subscribe is.
    registering: Option<ChannelName>,
    pending: VecDeque<Event>,
    reads: Reads,
}

/// What [`Subscription::next_in_line`] found.
enum InLine {
    Event(Event),
    /// Nothing is ready: nothing pending or behind, and the queue is empty.
    Nothing,
    /// Anything else: the general path decides.
    Unsure,
}

/// How much history one subscription reads and holds at a time, so that a
/// catch-up over large messages or many channels stays bounded: one page of
/// one channel per read, and reads at subscribe time only while what is
/// already pending is under `budget` bytes (the others read their position
/// only, and catch up page by page later).
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// Messages per history read.
    pub page: usize,
    /// Bytes of pending messages past which subscribing reads no page.
    pub budget: usize,
}

/// How long to wait before retrying a failed history read while live.
const RETRY: Duration = Duration::from_millis(500);

impl Subscription {
    /// A subscription with a live queue of `capacity` messages.
    pub fn live(hub: Arc<dyn Hub>, capacity: usize, reads: Reads) -> Subscription {
        Self::new(hub, Some(Subscriber::new(capacity)), reads)
    }

    /// A subscription that only reads history (no live delivery).
    pub fn once(hub: Arc<dyn Hub>, reads: Reads) -> Subscription {
        Self::new(hub, None, reads)
    }

    fn new(hub: Arc<dyn Hub>, live: Option<(Arc<Subscriber>, Inbox)>, reads: Reads) -> Self {
        let reads = Reads { page: reads.page.max(1), ..reads };
        Subscription { hub, live, channels: Vec::new(), registering: None, pending: VecDeque::new(), reads }
    }

    /// The live subscriber, whose `lagged()` signals a queue overflow.
    pub fn subscriber(&self) -> Option<&Arc<Subscriber>> {
        self.live.as_ref().map(|(subscriber, _)| subscriber)
    }

    pub fn channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.channels.iter().map(|c| &c.name)
    }

    pub fn is_subscribed(&self, channel: &ChannelName) -> bool {
        self.channels.iter().any(|c| &c.name == channel)
    }

    /// Subscribes `channels` (those not subscribed yet), resuming each from its
    /// entry in `cursor` or, without one, from the channel's head. Live
    /// delivery starts before history is read, so nothing falls in between.
    /// All or nothing: on error, none of the new channels stays subscribed.
    pub async fn subscribe(&mut self, channels: &[ChannelName], cursor: &Cursor) -> Result<Vec<Subscribed>, HubError> {
        let mut subscribed = Vec::with_capacity(channels.len());
        for name in channels {
            if self.is_subscribed(name) {
                continue;
            }
            match self.start(name, cursor.get(name)).await {
                Ok(s) => subscribed.push(s),
                Err(e) => {
                    let added: Vec<ChannelName> = subscribed.into_iter().map(|s| s.channel).collect();
                    self.unsubscribe(&added);
                    return Err(e);
                }
            }
        }
        Ok(subscribed)
    }

    async fn start(&mut self, name: &ChannelName, from: Option<&Position>) -> Result<Subscribed, HubError> {
        if let Some((subscriber, _)) = &self.live {
            self.registering = Some(name.clone());
            self.hub.subscribe(name.clone(), subscriber.clone()).await.inspect_err(|_| self.registering = None)?;
        }
        let result = match from {
            // One read gives the position and, within budget, the catch-up's first page.
            Some(from) => self.resume(name, from).await,
            None => self.hub.history(name.clone(), u64::MAX, 0).await.map(|h| {
                let at = ChannelPosition::new(Some(h.epoch.clone()), h.head);
                self.channels.push(Channel { name: name.clone(), delivered: at.clone(), queued: at, behind: false });
                Subscribed { channel: name.clone(), epoch: h.epoch, head: h.head }
            }),
        };
        self.registering = None;
        if result.is_err()
            && let Some((subscriber, _)) = &self.live
        {
            self.hub.unsubscribe(name, subscriber.id());
        }
        result
    }

    async fn resume(&mut self, name: &ChannelName, from: &Position) -> Result<Subscribed, HubError> {
        let at = ChannelPosition::new(from.epoch.clone(), from.seq);
        let limit = if self.pending_bytes() < self.reads.budget { self.reads.page } else { 0 };
        let history = self.hub.history(name.clone(), from.seq, limit).await?;
        let subscribed = Subscribed { channel: name.clone(), epoch: history.epoch.clone(), head: history.head };
        self.channels.push(Channel { name: name.clone(), delivered: at.clone(), queued: at, behind: false });
        self.apply(self.channels.len() - 1, history);
        Ok(subscribed)
    }

    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|event| if let Event::Message(m) = event { m.json().len() } else { 0 }).sum()
    }

    /// Stops delivering `channels`, dropping their undelivered events.
    pub fn unsubscribe(&mut self, channels: &[ChannelName]) {
        for name in channels {
            if let Some((subscriber, _)) = &self.live {
                self.hub.unsubscribe(name, subscriber.id());
            }
        }
        self.channels.retain(|c| !channels.contains(&c.name));
        self.pending.retain(|event| !channels.contains(event_channel(event)));
    }

    /// The position after everything delivered so far, naming every channel.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(
            self.channels
                .iter()
                .map(|c| Position { channel: c.name.clone(), seq: c.delivered.seq, epoch: c.delivered.epoch.clone() })
                .collect(),
        )
    }

    /// The next event that is ready now, without waiting for a live one.
    pub async fn next_ready(&mut self) -> Result<Option<Event>, Ended> {
        match self.next_in_line() {
            InLine::Event(event) => return Ok(Some(event)),
            InLine::Nothing => return Ok(None),
            InLine::Unsure => {}
        }
        if self.peek_ready().await?.is_none() {
            return Ok(None);
        }
        Ok(self.take_ready())
    }

    /// The usual case of a live connection, judged without the pending
    /// queue or a history read: nothing waits, and the next live message (if
    /// any) is the next in line of its channel.
    fn next_in_line(&mut self) -> InLine {
        let Some((subscriber, inbox)) = self.live.as_mut() else { return InLine::Unsure };
        let clear = self.pending.is_empty() && !subscriber.is_lagged() && !subscriber.is_stale();
        if !clear || self.channels.iter().any(|c| c.behind) {
            return InLine::Unsure;
        }
        match inbox.try_recv() {
            Ok(message) => self.take_in_line(message),
            Err(_) => InLine::Nothing,
        }
    }

    /// Hands out a live message at once when it is the next in line and
    /// nothing is pending; else it is judged as usual and left to `peek_ready`.
    fn take_in_line(&mut self, message: Arc<Message>) -> InLine {
        let Some(index) = self.in_line(&message) else { return InLine::Unsure };
        self.channels[index].delivered.advance(&message.epoch, message.seq);
        InLine::Event(Event::Message(message))
    }

    /// Takes the event [`Subscription::peek_ready`] showed.
    pub fn take_ready(&mut self) -> Option<Event> {
        self.pop()
    }

    /// The next event that is ready now, left in place: a poll answer looks
    /// at a message's size before it takes it.
    pub async fn peek_ready(&mut self) -> Result<Option<&Event>, Ended> {
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.front());
            }
            if let Some((subscriber, _)) = &self.live {
                if subscriber.is_lagged() {
                    return Err(Ended::Lagged);
                }
                if subscriber.take_stale() {
                    self.channels.iter_mut().for_each(|c| c.behind = true);
                }
            }
            if let Some(index) = self.channels.iter().position(|c| c.behind) {
                self.catch_up(index).await?;
                continue;
            }
            let Some((_, rx)) = &mut self.live else { return Ok(None) };
            match rx.try_recv() {
                Ok(message) => self.accept(message),
                Err(_) => return Ok(None),
            }
        }
    }

    /// The next event, waiting for a live one if need be. History reads that
    /// fail while live are retried, so that a hub outage does not end the
    /// connection.
    pub async fn next(&mut self) -> Result<Event, Ended> {
        loop {
            match self.next_ready().await {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(Ended::Hub(e)) if self.live.is_some() => {
                    tracing::debug!(error = %e, "history read failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let Some((_, inbox)) = &mut self.live else {
                return std::future::pending().await;
            };
            // `None`: a lag or a poke, which the next round of `next_ready` acts on.
            // Nothing is pending here (`next_ready` found nothing ready).
            if let Some(message) = inbox.recv_or_woken().await
                && let InLine::Event(event) = self.take_in_line(message)
            {
                return Ok(event);
            }
        }
    }

    fn pop(&mut self) -> Option<Event> {
        let event = self.pending.pop_front()?;
        let (name, epoch, seq) = match &event {
            Event::Message(m) => (&m.channel, &m.epoch, m.seq),
            Event::Reset(r) => (&r.channel, &r.epoch, r.seq),
        };
        if let Some(channel) = self.channels.iter_mut().find(|c| &c.name == name) {
            channel.delivered.advance(epoch, seq);
        }
        Some(event)
    }

    /// Takes a live message: the next in line is queued, an old one dropped,
    /// and one after a gap (or from another epoch) marks the channel behind,
    /// so that history is read before anything more of it is delivered.
    fn accept(&mut self, message: Arc<Message>) {
        if self.in_line(&message).is_some() {
            self.pending.push_back(Event::Message(message));
        }
    }

    /// Judges a live message as [`Subscription::accept`] says; when it is the
    /// next in line, it is counted queued and its channel's index returned.
    fn in_line(&mut self, message: &Message) -> Option<usize> {
        // None: unsubscribed meanwhile.
        let index = self.channels.iter().position(|c| c.name == message.channel)?;
        let channel = &mut self.channels[index];
        // The hub's own name from now on: the next compare goes by pointer.
        if !channel.name.shares(&message.channel) {
            channel.name = message.channel.clone();
        }
        if channel.behind {
            return None; // history will bring it
        }
        match channel.queued.on_live(message) {
            Live::Queue => {
                channel.queued.seq = message.seq;
                Some(index)
            }
            Live::Duplicate => None,
            Live::Behind => {
                channel.behind = true;
                None
            }
        }
    }

    /// Reads the next page of history after the channel's queued position.
    async fn catch_up(&mut self, index: usize) -> Result<(), HubError> {
        let name = self.channels[index].name.clone();
        let history = self.hub.history(name, self.channels[index].queued.seq, self.reads.page).await?;
        self.apply(index, history);
        Ok(())
    }

    /// Queues what a history read after the channel's queued position found,
    /// with a `reset` first when that position cannot be continued. What is
    /// not read yet (a page's worth was, or the read was made from a position
    /// the reset moved away from) leaves the channel behind, for `catch_up`.
    fn apply(&mut self, index: usize, history: History) {
        let channel = &mut self.channels[index];
        let verdict = channel.queued.on_history(&history);
        let mut messages = history.messages;
        match verdict {
            Verdict::Reset { reason, to, reread } => {
                let (name, epoch) = (channel.name.clone(), history.epoch.clone());
                self.pending.push_back(Event::Reset(Reset { channel: name, epoch: epoch.clone(), seq: to, reason }));
                channel.queued = ChannelPosition::new(Some(epoch), to);
                if reread {
                    messages.clear();
                }
            }
            Verdict::Continues => {
                // A cursor entry without epoch means the current one.
                channel.queued.epoch = Some(history.epoch.clone());
                if channel.delivered.epoch.is_none() {
                    channel.delivered.epoch = Some(history.epoch.clone());
                }
            }
        }
        for message in messages {
            if message.seq > channel.queued.seq {
                channel.queued.seq = message.seq;
                self.pending.push_back(Event::Message(message));
            }
        }
        channel.behind = channel.queued.seq < history.head;
    }
}

fn event_channel(event: &Event) -> &ChannelName {
    match event {
        Event::Message(m) => &m.channel,
        Event::Reset(r) => &r.channel,
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((subscriber, _)) = &self.live {
            for name in self.channels.iter().map(|c| &c.name).chain(&self.registering) {
                self.hub.unsubscribe(name, subscriber.id());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The resume logic against a hub that can fail or stall history reads
    //! and lose live messages, as a hub with a broken link would.
    use std::sync::atomic::Ordering;

    use serde_json::value::RawValue;

    use super::*;
    use crate::hub::testing::{Faults, FaultyHub};

    fn setup() -> (Arc<FaultyHub>, Arc<Faults>) {
        let hub = Arc::new(FaultyHub::default());
        let faults = hub.faults.clone();
        (hub, faults)
    }

    fn c() -> ChannelName {
        "c".parse().unwrap()
    }

    async fn publish(hub: &FaultyHub, n: u64) {
        hub.publish(c(), RawValue::from_string(n.to_string()).unwrap(), None).await.unwrap();
    }

    async fn next_seq(subscription: &mut Subscription) -> u64 {
        match tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.expect("an event").unwrap() {
            Event::Message(m) => m.seq,
            Event::Reset(r) => panic!("unexpected {r:?}"),
        }
    }

    #[tokio::test]
    async fn a_gap_is_filled_after_a_failed_history_read() {
        let (hub, faults) = setup();
        let mut s = Subscription::live(hub.clone(), 16, Reads { page: 100, budget: 1 << 20 });
        s.subscribe(&[c()], &Cursor::default()).await.unwrap();
        publish(&hub, 1).await;
        assert_eq!(next_seq(&mut s).await, 1);
        faults.drop_live.store(true, Ordering::Relaxed);
        publish(&hub, 2).await;
        faults.drop_live.store(false, Ordering::Relaxed);
        faults.fail_reads.store(true, Ordering::Relaxed);
        publish(&hub, 3).await; // reveals the gap; the read fails
        assert!(matches!(s.next_ready().await, Err(Ended::Hub(_))));
        faults.fail_reads.store(false, Ordering::Relaxed);
        assert_eq!(next_seq(&mut s).await, 2);
        assert_eq!(next_seq(&mut s).await, 3);
        assert_eq!(s.cursor().to_string(), format!("c:3:{}", hub.store.epoch()));
    }

    #[tokio::test]
    async fn a_gap_is_filled_after_a_cancelled_read() {
        let (hub, faults) = setup();
        let mut s = Subscription::live(hub.clone(), 16, Reads { page: 100, budget: 1 << 20 });
        s.subscribe(&[c()], &Cursor::default()).await.unwrap();
        faults.drop_live.store(true, Ordering::Relaxed);
        publish(&hub, 1).await;
        faults.drop_live.store(false, Ordering::Relaxed);
        faults.stall_reads.store(true, Ordering::Relaxed);
        publish(&hub, 2).await;
        // As a select! would: the read is cancelled by another branch.
        assert!(tokio::time::timeout(Duration::from_millis(20), s.next()).await.is_err());
        faults.stall_reads.store(false, Ordering::Relaxed);
        assert_eq!(next_seq(&mut s).await, 1);
        assert_eq!(next_seq(&mut s).await, 2);
    }

    #[tokio::test]
    async fn a_failed_subscribe_leaves_nothing_behind() {
        let (hub, faults) = setup();
        let mut s = Subscription::live(hub.clone(), 16, Reads { page: 100, budget: 1 << 20 });
        faults.fail_reads.store(true, Ordering::Relaxed);
        let both = [c(), "d".parse().unwrap()];
        assert!(s.subscribe(&both, &Cursor::default()).await.is_err());
        assert!(!s.is_subscribed(&c()));
        assert_eq!(hub.fanout().channel_count(), 0, "no live registration left");
        faults.fail_reads.store(false, Ordering::Relaxed);
        assert_eq!(s.subscribe(&both, &Cursor::default()).await.unwrap().len(), 2);
        publish(&hub, 1).await;
        assert_eq!(next_seq(&mut s).await, 1);
    }

    #[tokio::test]
    async fn a_poke_makes_a_quiet_channel_catch_up() {
        let (hub, faults) = setup();
        let mut s = Subscription::live(hub.clone(), 16, Reads { page: 100, budget: 1 << 20 });
        s.subscribe(&[c()], &Cursor::default()).await.unwrap();
        faults.drop_live.store(true, Ordering::Relaxed);
        publish(&hub, 1).await;
        publish(&hub, 2).await;
        assert!(tokio::time::timeout(Duration::from_millis(20), s.next()).await.is_err(), "nothing live came");
        hub.fanout().poke_all();
        assert_eq!(next_seq(&mut s).await, 1);
        assert_eq!(next_seq(&mut s).await, 2);
    }

    #[tokio::test]
    async fn catching_up_many_channels_of_large_messages_reads_a_bounded_amount_at_a_time() {
        let (hub, _) = setup();
        let names: Vec<ChannelName> = (0..8).map(|i| format!("big{i}").parse().unwrap()).collect();
        let big = format!("\"{}\"", "x".repeat(60_000));
        for name in &names {
            for _ in 0..30 {
                hub.publish(name.clone(), RawValue::from_string(big.clone()).unwrap(), None).await.unwrap();
            }
        }
        let reads = Reads { page: 10, budget: 100_000 };
        let mut s = Subscription::once(hub.clone(), reads);
        let cursor: Cursor = names.iter().map(|n| format!("{n}:0")).collect::<Vec<_>>().join(",").parse().unwrap();
        s.subscribe(&names, &cursor).await.unwrap();
        let at_subscribe = hub.reads.lock().unwrap().clone();
        let read_pages = at_subscribe.iter().filter(|(limit, _)| *limit > 0).count();
        assert!(read_pages <= 2, "pages are read at subscribe only within the budget: {at_subscribe:?}");
        let mut delivered = 0;
        while let Ok(Some(_)) = s.next_ready().await {
            delivered += 1;
            let held: usize = s.pending_bytes();
            assert!(held <= 10 * 60_100 + 100_000, "never more than a page beyond the budget held: {held}");
        }
        assert_eq!(delivered, 8 * 30, "and still everything, page by page");
        assert!(hub.reads.lock().unwrap().iter().all(|(limit, _)| *limit <= 10), "no read asks for more than a page");
    }

    #[tokio::test]
    async fn a_dropped_subscribe_unregisters() {
        let (hub, faults) = setup();
        let mut s = Subscription::live(hub.clone(), 16, Reads { page: 100, budget: 1 << 20 });
        faults.stall_reads.store(true, Ordering::Relaxed);
        let cursor: Cursor = "c:0".parse().unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), s.subscribe(&[c()], &cursor)).await.is_err());
        assert_eq!(hub.fanout().channel_count(), 1, "registered while the read was under way");
        drop(s);
        assert_eq!(hub.fanout().channel_count(), 0);
    }
}
