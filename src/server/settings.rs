//! What the connection code (`front` for HTTP/1, `h2` for HTTP/2) is told
//! of the server it serves.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::transport_kind::Transport;
use crate::wire::Timeouts;

/// What the connection code needs to know of the server.
#[derive(Clone)]
pub struct Settings {
    /// The routes whose answers are held here, base path included (`/pushwire/sse`).
    pub held: Rc<[String]>,
    /// The WebSocket route: its upgrades go straight to the upgrade path.
    pub websocket: Rc<str>,
    pub keep_alive: Duration,
    pub timeouts: Timeouts,
    pub secure: bool,
    pub local_addr: SocketAddr,
    /// The server's shutdown: a connection between requests closes on it.
    pub shutdown: Shutdown,
    /// Where what is refused before the app sees it is counted.
    pub stats: Arc<Stats>,
}

impl Settings {
    pub fn new(
        base: &str,
        keep_alive: Duration,
        timeouts: Timeouts,
        secure: bool,
        local_addr: SocketAddr,
        shutdown: Shutdown,
        stats: Arc<Stats>,
    ) -> Settings {
        let held = [Transport::Sse, Transport::LongPoll].map(|t| format!("{base}{}", t.path()));
        let websocket = format!("{base}{}", Transport::WebSocket.path());
        Settings {
            held: held.into(),
            websocket: websocket.into(),
            keep_alive,
            timeouts,
            secure,
            local_addr,
            shutdown,
            stats,
        }
    }
}
