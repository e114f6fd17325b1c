//! Which transport a client follows with: the five ways API.md serves a
//! channel's stream, by route and by name.

/// One of the five ways to receive the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    WebSocket,
    Sse,
    LongPoll,
    Poll,
    /// HTTP/3 over QUIC (API.md v1.2), discovered with `GET /api/webtransport`.
    WebTransport,
}

impl Transport {
    /// In the order of preference of a fallback client.
    pub const ALL: [Transport; 5] =
        [Transport::WebTransport, Transport::WebSocket, Transport::Sse, Transport::LongPoll, Transport::Poll];

    /// The four served on the TCP port.
    pub const TCP: [Transport; 4] = [Transport::WebSocket, Transport::Sse, Transport::LongPoll, Transport::Poll];

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

    /// Its key in `/api/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long_poll",
            Transport::Poll => "poll",
            Transport::WebTransport => "webtransport",
        }
    }

    /// Its id, as the JavaScript client and the dashboard name it.
    pub fn id(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long-poll",
            Transport::Poll => "poll",
            Transport::WebTransport => "webtransport",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    /// An id (`websocket`, `long-poll`, …) or a short name (`ws`, `wt`).
    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "ws" | "websocket" => Ok(Transport::WebSocket),
            "sse" => Ok(Transport::Sse),
            "long-poll" | "long_poll" => Ok(Transport::LongPoll),
            "poll" | "short-poll" => Ok(Transport::Poll),
            "webtransport" | "wt" => Ok(Transport::WebTransport),
            other => Err(format!("unknown transport '{other}' (expected ws, sse, long-poll, poll, webtransport)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_read_by_id_and_short_name() {
        for t in Transport::ALL {
            assert_eq!(t.id().parse(), Ok(t));
        }
        assert_eq!("ws".parse(), Ok(Transport::WebSocket));
        assert_eq!("wt".parse(), Ok(Transport::WebTransport));
        assert!("smoke".parse::<Transport>().is_err());
    }
}
