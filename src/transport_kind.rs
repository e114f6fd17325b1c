//! Which transport: the identity of each way to receive the stream (its
//! route, its name in `/api/stats`, its id in the client), apart from the
//! sessions that implement it (`transport/`), so that counters, sockets and
//! the dashboard can name a transport without depending on sessions.

/// One of the four ways to receive the stream: its route, its name in
/// `/api/stats` and `/metrics`, and its id in the client and on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    WebSocket,
    Sse,
    LongPoll,
    Poll,
}

impl Transport {
    /// In the order of preference of the fallback client and the dashboard.
    pub const ALL: [Transport; 4] = [Transport::WebSocket, Transport::Sse, Transport::LongPoll, Transport::Poll];

    /// The route that serves it.
    pub fn path(self) -> &'static str {
        match self {
            Transport::WebSocket => "/ws",
            Transport::Sse => "/sse",
            Transport::LongPoll => "/long-poll",
            Transport::Poll => "/poll",
        }
    }

    /// Its key in `/api/stats` and its `transport` label in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long_poll",
            Transport::Poll => "poll",
        }
    }

    /// Its name in pushwire.js's `transports` option, and its dashboard lane.
    pub fn id(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long-poll",
            Transport::Poll => "poll",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Transport::WebSocket => "WebSocket",
            Transport::Sse => "Server-Sent Events",
            Transport::LongPoll => "Long polling",
            Transport::Poll => "Short polling",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
