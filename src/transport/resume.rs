//! `Subscription`: one connection's view of its channels. It turns a cursor
//! into an exact catch-up (history after the cursor, or an explicit `reset`),
//! then follows the live queue, dropping duplicates and filling gaps from
//! history by seq. Every transport delivers what it yields, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::hub::{Hub, HubError, Subscriber};
use crate::message::{ChannelName, Cursor, Epoch, Message, Position, Reset, ResetReason};

/// What a subscription yields, in delivery order per channel.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Arc<Message>),
    Reset(Reset),
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
    delivered: (Epoch, u64),
    /// The position of the last event put in `pending` (or delivered).
    queued: (Epoch, u64),
    /// More history to read after `queued` before going live.
    behind: bool,
}

/// A connection's channels and their positions. Dropping it ends live delivery.
pub struct Subscription {
    hub: Arc<dyn Hub>,
    /// `None` for a one-shot read (short polling): nothing live is registered.
    live: Option<(Arc<Subscriber>, mpsc::Receiver<Arc<Message>>)>,
    channels: Vec<Channel>,
    pending: VecDeque<Event>,
    page: usize,
}

/// How long to wait before retrying a failed history read while live.
const RETRY: Duration = Duration::from_millis(500);

impl Subscription {
    /// A subscription with a live queue of `capacity` messages.
    pub fn live(hub: Arc<dyn Hub>, capacity: usize, page: usize) -> Subscription {
        let live = Some(Subscriber::new(capacity));
        Subscription { hub, live, channels: Vec::new(), pending: VecDeque::new(), page: page.max(1) }
    }

    /// A subscription that only reads history (no live delivery).
    pub fn once(hub: Arc<dyn Hub>, page: usize) -> Subscription {
        Subscription { hub, live: None, channels: Vec::new(), pending: VecDeque::new(), page: page.max(1) }
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
    pub async fn subscribe(&mut self, channels: &[ChannelName], cursor: &Cursor) -> Result<Vec<Subscribed>, HubError> {
        let mut subscribed = Vec::with_capacity(channels.len());
        for name in channels {
            if self.is_subscribed(name) {
                continue;
            }
            if let Some((subscriber, _)) = &self.live {
                self.hub.subscribe(name.clone(), subscriber.clone()).await?;
            }
            let result = self.start(name, cursor.get(name)).await;
            if result.is_err()
                && let Some((subscriber, _)) = &self.live
            {
                self.hub.unsubscribe(name, subscriber.id());
            }
            subscribed.push(result?);
        }
        Ok(subscribed)
    }

    async fn start(&mut self, name: &ChannelName, from: Option<&Position>) -> Result<Subscribed, HubError> {
        let head = self.hub.history(name.clone(), u64::MAX, 0).await?;
        let subscribed = Subscribed { channel: name.clone(), epoch: head.epoch.clone(), head: head.head };
        let at = (head.epoch.clone(), head.head);
        self.channels.push(Channel { name: name.clone(), delivered: at.clone(), queued: at, behind: false });
        if let Some(from) = from {
            let index = self.channels.len() - 1;
            let epoch = from.epoch.clone().unwrap_or(head.epoch);
            self.channels[index].delivered = (epoch.clone(), from.seq);
            self.channels[index].queued = (epoch, from.seq);
            self.catch_up(index).await?;
        }
        Ok(subscribed)
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
                .map(|c| Position { channel: c.name.clone(), seq: c.delivered.1, epoch: Some(c.delivered.0.clone()) })
                .collect(),
        )
    }

    /// The next event that is ready now, without waiting for a live one.
    pub async fn next_ready(&mut self) -> Result<Option<Event>, Ended> {
        loop {
            if let Some(event) = self.pop() {
                return Ok(Some(event));
            }
            if let Some(index) = self.channels.iter().position(|c| c.behind) {
                self.catch_up(index).await?;
                continue;
            }
            let Some((subscriber, rx)) = &mut self.live else { return Ok(None) };
            if subscriber.is_lagged() {
                return Err(Ended::Lagged);
            }
            match rx.try_recv() {
                Ok(message) => self.accept(message).await?,
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
            let Some((subscriber, rx)) = &mut self.live else {
                return std::future::pending().await;
            };
            let message = tokio::select! {
                message = rx.recv() => message,
                () = subscriber.lagged() => return Err(Ended::Lagged),
            };
            match message {
                Some(message) => {
                    if let Err(e) = self.accept(message).await {
                        tracing::debug!(error = %e, "gap fill failed; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                }
                // Cannot happen: the sender lives in our own `Subscriber`.
                None => return std::future::pending().await,
            }
        }
    }

    fn pop(&mut self) -> Option<Event> {
        let event = self.pending.pop_front()?;
        let (name, at) = match &event {
            Event::Message(m) => (&m.channel, (m.epoch.clone(), m.seq)),
            Event::Reset(r) => (&r.channel, (r.epoch.clone(), r.seq)),
        };
        if let Some(channel) = self.channels.iter_mut().find(|c| &c.name == name) {
            channel.delivered = at;
        }
        Some(event)
    }

    /// Takes a live message: the next in line is queued, an old one dropped, and
    /// one after a gap (or from another epoch) makes the channel catch up from history.
    async fn accept(&mut self, message: Arc<Message>) -> Result<(), HubError> {
        let Some(index) = self.channels.iter().position(|c| c.name == message.channel) else {
            return Ok(()); // unsubscribed meanwhile
        };
        let channel = &mut self.channels[index];
        if channel.behind {
            return Ok(()); // history will bring it
        }
        let (epoch, seq) = &channel.queued;
        if message.epoch == *epoch && message.seq <= *seq {
            return Ok(()); // duplicate
        }
        if message.epoch == *epoch && message.seq == seq + 1 {
            channel.queued.1 = message.seq;
            self.pending.push_back(Event::Message(message));
            return Ok(());
        }
        self.catch_up(index).await
    }

    /// Reads the next page of history after the channel's queued position,
    /// queueing a `reset` first when that position cannot be continued.
    async fn catch_up(&mut self, index: usize) -> Result<(), HubError> {
        let name = self.channels[index].name.clone();
        let (epoch, seq) = self.channels[index].queued.clone();
        let mut history = self.hub.history(name.clone(), seq, self.page).await?;
        let reason = if history.epoch != epoch || seq > history.head {
            Some(ResetReason::EpochChanged)
        } else if seq + 1 < history.oldest {
            Some(ResetReason::HistoryTrimmed)
        } else {
            None
        };
        if let Some(reason) = reason {
            if reason == ResetReason::EpochChanged && seq != history.oldest - 1 {
                // The first read was made from a position of another epoch:
                // read again from the new starting point.
                history = self.hub.history(name.clone(), history.oldest - 1, self.page).await?;
            }
            let at = history.oldest - 1;
            self.pending.push_back(Event::Reset(Reset {
                channel: name,
                epoch: history.epoch.clone(),
                seq: at,
                reason,
            }));
            self.channels[index].queued = (history.epoch.clone(), at);
        }
        let channel = &mut self.channels[index];
        channel.behind = history.messages.len() >= self.page;
        for message in history.messages {
            if message.seq > channel.queued.1 {
                channel.queued.1 = message.seq;
                self.pending.push_back(Event::Message(message));
            }
        }
        Ok(())
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
            for channel in &self.channels {
                self.hub.unsubscribe(&channel.name, subscriber.id());
            }
        }
    }
}
