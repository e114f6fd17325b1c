//! The four transports. Each `run` takes a validated request from
//! `routes` and serves it until the client leaves, the subscription ends or
//! the server shuts down. What they share: following a subscription from a
//! cursor ([`subscription`], with its pure judgement in [`position`]), the
//! poll answer ([`poll`]), and a connection's counted and logged life
//! ([`connection`]).

pub mod connection;
pub mod long_poll;
pub mod poll;
pub mod position;
pub mod short_poll;
pub mod sse;
pub mod subscription;
mod swallow;
pub mod websocket;
pub mod webtransport;

pub use crate::lab::impairment::Impairment;
pub use connection::Connection;
pub use subscription::{Ended, Event, Reads, Subscribed, Subscription};
pub use swallow::swallow;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::auth::Access;
use crate::config::Config;
use crate::encoding::Format;
use crate::hub::Hub;
use crate::limits::PublishRate;
use crate::message::{ChannelName, Cursor};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
// Every session names its transport; the identity itself is a leaf of its own.
pub use crate::transport_kind::Transport;
use crate::wire::Mark;

/// Most messages of one history read: enough to catch up quickly, few enough
/// that a read of large messages stays a few MiB.
pub const HISTORY_PAGE: usize = 100;

/// What a transport session needs from the server. Clones are shallow.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub hub: Arc<dyn Hub>,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
    /// Publishes per second per client address, over HTTP and WebSocket.
    pub publish_rate: Arc<PublishRate>,
}

impl Context {
    /// A subscription with this server's queue size and history reads.
    pub fn live_subscription(&self) -> Subscription {
        Subscription::live(self.hub.clone(), self.config.queue_size, self.reads())
    }

    /// History is read a page of at most [`HISTORY_PAGE`] messages at a time
    /// (fewer when a poll answer holds fewer), with a poll answer's worth of
    /// bytes as the budget for reads made while subscribing.
    pub fn reads(&self) -> Reads {
        Reads { page: self.config.poll_max_messages.min(HISTORY_PAGE), budget: self.config.poll_max_bytes }
    }
}

#[cfg(test)]
impl Context {
    /// A context on a fresh memory hub with these settings, for unit tests.
    pub(crate) fn for_tests(config: Config) -> Context {
        let hub = crate::hub::MemoryHub::new(config.history_limits());
        Context {
            publish_rate: Arc::new(PublishRate::new(config.publish_rate)),
            config: Arc::new(config),
            hub,
            stats: Arc::default(),
            shutdown: Shutdown::default(),
        }
    }
}

#[cfg(test)]
impl StreamRequest {
    /// A request for `channels` from their heads, never cut.
    pub(crate) fn for_tests(channels: Vec<ChannelName>) -> StreamRequest {
        StreamRequest {
            channels,
            cursor: Cursor::default(),
            peer: None,
            access: Access::Open,
            cut: never(),
            wire: None,
            impairment: Impairment::default(),
            encoding: Negotiated::default(),
        }
    }
}

/// A validated stream request: its channels, where to resume, what it may
/// do, and what cuts it.
pub struct StreamRequest {
    pub channels: Vec<ChannelName>,
    pub cursor: Cursor,
    /// The client's address (the socket's peer), for per-address limits.
    pub peer: Option<IpAddr>,
    /// What its token allows (everything when access control is off).
    pub access: Access,
    /// Resolves when the connection must end early: its token expired, or an
    /// operator cut it (the dashboard's "drop connections").
    pub cut: Cut,
    /// Its connection's byte totals when it was routed, for its log line.
    pub wire: Option<Mark>,
    /// Its page's network lab settings when it started (none for most).
    pub impairment: Impairment,
    /// Its encoding, and whether its bytes are compressed (permessage-deflate
    /// on a WebSocket, gzip on HTTP).
    pub encoding: Negotiated,
}

/// What a client and the server agreed on for its bytes (API.md v1.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub compressed: bool,
}

/// Where a session counts what compression did to its bytes: its
/// connection's meter (which also knows the page's lane) or, without one,
/// its transport's counters.
#[derive(Clone)]
pub struct Savings {
    stats: Arc<Stats>,
    transport: Transport,
    wire: Option<Mark>,
}

impl Savings {
    pub fn new(stats: &Arc<Stats>, transport: Transport, wire: Option<&Mark>) -> Savings {
        Savings { stats: stats.clone(), transport, wire: wire.cloned() }
    }

    /// A payload of `plain` bytes goes out as `sent` compressed bytes.
    pub fn count(&self, plain: usize, sent: usize) {
        match &self.wire {
            Some(wire) => wire.meter().compressed(plain, sent),
            None => self.stats.get(self.transport).compressed(plain, sent),
        }
    }
}

/// Why a session is ended from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// The dashboard's "drop connections": reconnect at once.
    Dropped,
    /// The access token reached its `exp`: reconnect with a fresh one.
    TokenExpired,
}

/// A future that ends a session early when it resolves.
pub type Cut = Pin<Box<dyn Future<Output = CutReason> + Send>>;

/// A cut that never comes.
#[cfg(test)]
pub fn never() -> Cut {
    cut(None, None)
}

/// The cut of a request: the first of an operator's drop and its token's expiry.
pub fn cut(dropped: Option<Pin<Box<dyn Future<Output = ()> + Send>>>, expires: Option<SystemTime>) -> Cut {
    if dropped.is_none() && expires.is_none() {
        // The usual case, and one every idle connection keeps: no allocation.
        return Box::pin(std::future::pending());
    }
    let expiry = expires.map(|at| {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(left)
    });
    Box::pin(async move {
        let dropped = async {
            match dropped {
                Some(dropped) => dropped.await,
                None => std::future::pending().await,
            }
        };
        let expired = async {
            match expiry {
                Some(expiry) => expiry.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = dropped => CutReason::Dropped,
            () = expired => CutReason::TokenExpired,
        }
    })
}

/// The wait of `--write-delay` before a delivery is written, so that what is
/// published meanwhile goes out in the same write: until the oldest message
/// held, published at `published` (µs since the epoch; `None`: now), has
/// waited the delay. None when no delay is set or it has passed already (a
/// client catching up is not slowed). Boxed: made only then, it adds nothing
/// to what an idle connection keeps.
pub(crate) fn gather_for(delay: Duration, published: Option<u64>) -> Option<Pin<Box<tokio::time::Sleep>>> {
    if delay.is_zero() {
        return None;
    }
    // A publisher's clock ahead of ours (another instance's) waits the delay, no more.
    let waited = published.map_or(0, |ts| crate::message::now_micros().saturating_sub(ts));
    let left = delay.saturating_sub(Duration::from_micros(waited));
    (!left.is_zero()).then(|| Box::pin(tokio::time::sleep(left)))
}

impl Event {
    /// When its message was published; a reset is the server's own news.
    pub(crate) fn published(&self) -> Option<u64> {
        match self {
            Event::Message(message) => Some(message.ts),
            Event::Reset(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::now_micros;

    #[tokio::test(start_paused = true)]
    async fn the_write_delay_counts_from_the_publish() {
        const DELAY: Duration = Duration::from_millis(100);
        let now = now_micros();
        assert!(gather_for(Duration::ZERO, Some(now)).is_none(), "no delay set");
        assert!(gather_for(DELAY, Some(now - 150_000)).is_none(), "older than the delay: written at once");
        let start = tokio::time::Instant::now();
        gather_for(DELAY, Some(now - 40_000)).expect("waits the rest").await;
        let waited = start.elapsed();
        assert!(waited <= Duration::from_millis(61) && waited >= Duration::from_millis(55), "{waited:?}");
        let start = tokio::time::Instant::now();
        gather_for(DELAY, Some(now + 5_000_000)).expect("a clock ahead").await;
        assert_eq!(start.elapsed(), DELAY, "a publisher's clock ahead waits the delay, no more");
        let start = tokio::time::Instant::now();
        gather_for(DELAY, None).expect("a reset").await;
        assert_eq!(start.elapsed(), DELAY);
    }
}
