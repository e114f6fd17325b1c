//! The four transports. Each `run` takes a validated request from
//! `routes` and serves it until the client leaves, the subscription ends or
//! the server shuts down. What they share, resuming from a cursor and
//! following the live queue, is [`resume::Subscription`].

pub mod long_poll;
pub mod resume;
pub mod short_poll;
pub mod sse;
pub mod websocket;

pub use resume::{Ended, Event, Subscribed, Subscription};

use std::sync::Arc;

use crate::config::Config;
use crate::demo::DemoControl;
use crate::hub::Hub;
use crate::inspect::{Inspected, Inspector};
use crate::message::{ChannelName, Cursor};
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// What a transport session needs from the server. Clones are shallow.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub hub: Arc<dyn Hub>,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
    pub inspector: Arc<Inspector>,
    pub demo: DemoControl,
}

impl Context {
    /// A subscription with this server's queue size and history page size.
    pub fn live_subscription(&self) -> Subscription {
        Subscription::live(self.hub.clone(), self.config.queue_size, self.config.poll_max_messages)
    }
}

/// A validated stream request: its channels and where to resume.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub channels: Vec<ChannelName>,
    pub cursor: Cursor,
    /// The inspected page this request belongs to, whose "drop connections"
    /// ends it.
    pub client: Option<Arc<Inspected>>,
}

impl StreamRequest {
    /// Resolves when this request's connection should be cut (never, for
    /// requests of no inspected page).
    pub fn cut(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        match &self.client {
            Some(client) => Box::pin(client.dropped()),
            None => Box::pin(std::future::pending()),
        }
    }
}
