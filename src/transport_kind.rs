//! Which transport: the identity of each way to receive the stream (its
//! route, its name in `/api/stats`, its id in the client), apart from the
//! sessions that implement it (`transport/`), so that counters, sockets and
//! the dashboard can name a transport without depending on sessions.

/// One of the five ways to receive the stream: its route, its name in
/// `/api/stats` and `/metrics`, and its id in the client and on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    WebSocket = 0,
    Sse = 1,
    LongPoll = 2,
    Poll = 3,
    /// HTTP/3 over QUIC (API.md v1.2), served beside the TCP server.
    WebTransport = 4,
}

impl Transport {
    /// In the order of preference of the fallback client.
    pub const ALL: [Transport; 5] =
        [Transport::WebTransport, Transport::WebSocket, Transport::Sse, Transport::LongPoll, Transport::Poll];

    /// The dashboard's lanes: the transports its page runs side by side, best first.
    pub const LANES: [Transport; 5] = Transport::ALL;

    /// The route that serves it.
    pub fn path(self) -> &'static str {
        match self {
            Transport::WebSocket => "/ws",
            Transport::Sse => "/sse",
            Transport::LongPoll => "/long-poll",
            Transport::Poll => "/poll",
            Transport::WebTransport => "/wt",
        }
    }

    /// Its key in `/api/stats` and its `transport` label in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long_poll",
            Transport::Poll => "poll",
            Transport::WebTransport => "webtransport",
        }
    }

    /// Its name in pushwire.js's `transports` option, and its dashboard lane.
    pub fn id(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long-poll",
            Transport::Poll => "poll",
            Transport::WebTransport => "webtransport",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Transport::WebSocket => "WebSocket",
            Transport::Sse => "Server-Sent Events",
            Transport::LongPoll => "Long polling",
            Transport::Poll => "Short polling",
            Transport::WebTransport => "WebTransport",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
