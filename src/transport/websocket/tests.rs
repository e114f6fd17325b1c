//! Ping and pong timing on a paused clock, with a session driven
//! in-process over an in-memory socket. The contract tests run the server on
//! actix's own runtimes, whose clocks a test cannot pause, so over a real
//! socket they can only use short real intervals. Waits here are on the
//! paused clock: they cost nothing and place each step at an exact instant.

use actix_http::ws::{OpCode, Parser};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::{sleep_until, timeout};

use super::*;
use crate::config::Config;

const PING_EVERY: Duration = Duration::from_secs(10);

/// The client end of an in-process session: raw frames both ways over an
/// in-memory socket.
struct Peer {
    io: DuplexStream,
    buf: BytesMut,
}

/// Starts a session on one end of an in-memory socket.
async fn connect(pong_timeout: Duration) -> Peer {
    let mut config = Config::defaults();
    config.ws_ping_interval = PING_EVERY;
    config.ws_pong_timeout = pong_timeout;
    let ctx = Context::for_tests(config);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let accepted = Accepted { ctx, request: StreamRequest::for_tests(Vec::new()), span: tracing::Span::none() };
    tokio::spawn(run(accepted, server, BytesMut::new()));
    Peer { io: client, buf: BytesMut::new() }
}

impl Peer {
    /// The next frame from the server, or `None` once the socket ended.
    async fn frame(&mut self) -> Option<(OpCode, Bytes)> {
        loop {
            if let Some((_, op, payload)) = Parser::parse(&mut self.buf, false, 1 << 20).unwrap() {
                return Some((op, payload.map(BytesMut::freeze).unwrap_or_default()));
            }
            let read = self.io.read_buf(&mut self.buf);
            match timeout(Duration::from_secs(3600), read).await.expect("a frame or the end") {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn expect(&mut self, op: OpCode) -> Bytes {
        match self.frame().await {
            Some((got, payload)) if got == op => payload,
            other => panic!("expected {op:?}, got {other:?}"),
        }
    }

    async fn send(&mut self, op: OpCode, payload: &[u8]) {
        let mut frame = BytesMut::new();
        Parser::write_message(&mut frame, payload, op, true, true);
        self.io.write_all(&frame).await.unwrap();
    }

    /// Expects a close with `disconnect`'s code and reason, then the end.
    async fn expect_close(&mut self, disconnect: Disconnect) {
        let payload = self.expect(OpCode::Close).await;
        assert_eq!(&payload[..2], disconnect.code.code().to_be_bytes(), "close code");
        assert_eq!(&payload[2..], disconnect.reason.as_bytes());
        assert!(self.frame().await.is_none(), "nothing after the close");
    }
}

#[tokio::test(start_paused = true)]
async fn pings_every_interval_and_closes_a_peer_that_stops_answering() {
    let start = Instant::now();
    let mut peer = connect(Duration::from_secs(5)).await;
    let welcome = peer.expect(OpCode::Text).await;
    let welcome: Value = serde_json::from_slice(&welcome).unwrap();
    assert_eq!(welcome["heartbeat_ms"], 10_000);
    let ping = peer.expect(OpCode::Ping).await;
    assert_eq!(start.elapsed(), PING_EVERY, "the first ping, one interval after the welcome");
    // Answered within the timeout (due at 15 s): the session lives on.
    sleep_until(start + Duration::from_secs(14)).await;
    peer.send(OpCode::Pong, &ping).await;
    peer.expect(OpCode::Ping).await;
    assert_eq!(start.elapsed(), PING_EVERY * 2, "no close at 15 s; the next ping on schedule");
    // Not answered: closed exactly when the timeout runs out.
    peer.expect_close(Disconnect::NO_PONG).await;
    assert_eq!(start.elapsed(), Duration::from_secs(25));
}

#[tokio::test(start_paused = true)]
async fn a_later_ping_does_not_extend_the_pong_deadline() {
    let start = Instant::now();
    let mut peer = connect(Duration::from_secs(15)).await;
    peer.expect(OpCode::Text).await;
    peer.expect(OpCode::Ping).await;
    assert_eq!(start.elapsed(), PING_EVERY);
    peer.expect(OpCode::Ping).await;
    assert_eq!(start.elapsed(), PING_EVERY * 2);
    peer.expect_close(Disconnect::NO_PONG).await;
    assert_eq!(start.elapsed(), Duration::from_secs(25), "15 s after the first unanswered ping");
}

#[tokio::test(start_paused = true)]
async fn only_a_protocol_pong_answers_a_ping() {
    let start = Instant::now();
    let mut peer = connect(Duration::from_secs(5)).await;
    peer.expect(OpCode::Text).await;
    peer.expect(OpCode::Ping).await;
    sleep_until(start + Duration::from_secs(12)).await;
    peer.send(OpCode::Text, br#"{"type":"ping","ref":"p"}"#).await;
    let pong: Value = serde_json::from_slice(&peer.expect(OpCode::Text).await).unwrap();
    assert_eq!(pong, serde_json::json!({"type": "pong", "ref": "p"}));
    peer.expect_close(Disconnect::NO_PONG).await;
    assert_eq!(start.elapsed(), Duration::from_secs(15), "an app-level ping is no pong");
}

#[tokio::test(start_paused = true)]
async fn only_a_pong_echoing_the_ping_answers_it() {
    let start = Instant::now();
    let mut peer = connect(Duration::from_secs(5)).await;
    peer.expect(OpCode::Text).await;
    // Unsolicited before the ping, then foreign payloads after it: none is an answer.
    peer.send(OpCode::Pong, b"").await;
    let ping = peer.expect(OpCode::Ping).await;
    sleep_until(start + Duration::from_secs(11)).await;
    let mut other = ping.to_vec();
    other[7] ^= 0xff;
    for payload in [&b""[..], b"keepalive", &other] {
        peer.send(OpCode::Pong, payload).await;
    }
    peer.expect_close(Disconnect::NO_PONG).await;
    assert_eq!(start.elapsed(), Duration::from_secs(15), "closed at the first ping's deadline");
}
