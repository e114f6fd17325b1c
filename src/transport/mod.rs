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
use crate::hub::Hub;
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
}
