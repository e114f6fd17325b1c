//! The network lab: what a page can do to its own connections, to show what
//! a bad network does to each transport (`POST /api/inspect/{id}/impair`).
//! Each impairment plays a real middlebox:
//!
//! - `websocket: refuse`, a proxy that strips `Upgrade` and `Connection`: the
//!   request reaches `/ws` as a plain GET and gets the plain GET's answer (426);
//! - `websocket: swallow`, a broken relay: the 101 goes out, then no frame
//!   passes in either direction;
//! - `sse: buffer`, a compressing proxy: stream bytes are held until 64 KiB are
//!   ready or 30 s passed;
//! - `webtransport: blocked`, a firewall that drops UDP: the page's
//!   WebTransport session requests get no answer;
//! - `latency_ms`, a long link: every delivery leaves that much later.
//!
//! The state is kept per page by [`super::inspect`]; a connection takes a copy
//! when it starts (a change cuts the page's connections, so that they come
//! back under the new conditions). Transports call in at four points: the
//! upgrade decision (`routes/streams.rs`), the silent session
//! (`transport/swallow.rs`), the SSE body wrapper ([`Impairment::sse`]) and
//! the delivery delay ([`Impairment::pace`] for WebSocket,
//! [`Impairment::delay_answer`] for polls). This module knows no transport.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep, sleep_until};

use crate::message::now_micros;

/// What a proxy on the WebSocket path does to the upgrade.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebSocketPath {
    #[default]
    Ok,
    Refuse,
    Swallow,
}

/// What a proxy on the SSE path does to the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SsePath {
    #[default]
    Ok,
    Buffer,
}

/// What the network does to WebTransport's UDP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebTransportPath {
    #[default]
    Ok,
    /// Dropped, as many corporate firewalls drop UDP: no answer, no error.
    Blocked,
}

/// One page's network, as `GET /api/inspect/{id}/impair` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Impairment {
    pub websocket: WebSocketPath,
    pub sse: SsePath,
    pub webtransport: WebTransportPath,
    pub latency_ms: u64,
}

/// The body of `POST /api/inspect/{id}/impair`: a missing field is unchanged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub websocket: Option<WebSocketPath>,
    pub sse: Option<SsePath>,
    pub webtransport: Option<WebTransportPath>,
    pub latency_ms: Option<u64>,
}

/// The longest added latency: a geostationary round trip is ~600 ms.
pub const MAX_LATENCY_MS: u64 = 5000;
/// A compressing proxy sends what it holds once this much is ready...
pub const BUFFER: usize = 64 * 1024;
/// ...or once it held the oldest byte this long.
pub const FLUSH: Duration = Duration::from_secs(30);
/// Most bytes a delayed stream holds; past it the stream stops reading its
/// subscription, whose queue then overflows like a slow client's.
const MAX_HELD: usize = 1024 * 1024;

impl Change {
    /// `current` with this change applied, or why the change is refused.
    pub fn apply(&self, current: Impairment) -> Result<Impairment, String> {
        if let Some(ms) = self.latency_ms.filter(|&ms| ms > MAX_LATENCY_MS) {
            return Err(format!("latency_ms is 0 to {MAX_LATENCY_MS}, got {ms}"));
        }
        Ok(Impairment {
            websocket: self.websocket.unwrap_or(current.websocket),
            sse: self.sse.unwrap_or(current.sse),
            webtransport: self.webtransport.unwrap_or(current.webtransport),
            latency_ms: self.latency_ms.unwrap_or(current.latency_ms),
        })
    }
}

impl Impairment {
    fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Waits until a message published at `published_us` (its `ts`) is due:
    /// `latency_ms` after its publication, and never longer than that from now.
    pub async fn delay(&self, published_us: u64) {
        if self.latency_ms == 0 {
            return;
        }
        let latency = self.latency();
        let due = published_us + latency.as_micros() as u64;
        let wait = Duration::from_micros(due.saturating_sub(now_micros())).min(latency);
        if !wait.is_zero() {
            sleep(wait).await;
        }
    }

    /// Paces a WebSocket delivery: with latency, an event (a message
    /// published at `published_us`) waits until it is due and goes out alone
    /// (what is queued behind it is not due yet); without, it goes out with up
    /// to `batch` events.
    pub async fn pace(&self, published_us: Option<u64>, batch: usize) -> usize {
        if self.latency_ms == 0 {
            return batch;
        }
        if let Some(ts) = published_us {
            self.delay(ts).await;
        }
        1
    }

    /// Holds a poll answer back by the latency.
    pub async fn delay_answer(&self) {
        if self.latency_ms > 0 {
            sleep(self.latency()).await;
        }
    }

    /// The SSE body as it reaches the page: delayed by the latency, then held
    /// back by a buffering proxy when `sse` is `buffer`. Unchanged otherwise.
    pub fn sse<S>(self, body: S) -> impl Stream<Item = Result<Bytes, Infallible>>
    where
        S: Stream<Item = Result<Bytes, Infallible>> + Unpin,
    {
        if self.sse == SsePath::Ok && self.latency_ms == 0 {
            return Either::Left(body);
        }
        let line = DelayLine {
            body,
            done: false,
            latency: self.latency(),
            buffering: self.sse == SsePath::Buffer,
            queue: VecDeque::new(),
            held: 0,
            buffer: BytesMut::new(),
            since: None,
        };
        Either::Right(futures_util::stream::unfold(line, |mut line| async move {
            let chunk = line.next().await?;
            Some((Ok(chunk), line))
        }))
    }
}

/// A stream's bytes on their way through a slow link and a buffering proxy.
struct DelayLine<S> {
    body: S,
    done: bool,
    latency: Duration,
    buffering: bool,
    /// Chunks read from the body, with when they are due past the link.
    queue: VecDeque<(Instant, Bytes)>,
    /// Bytes in `queue` and `buffer`.
    held: usize,
    /// What the proxy holds, and since when.
    buffer: BytesMut,
    since: Option<Instant>,
}

impl<S: Stream<Item = Result<Bytes, Infallible>> + Unpin> DelayLine<S> {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(out) = self.release(Instant::now()) {
                return Some(out);
            }
            if self.done && self.queue.is_empty() && self.buffer.is_empty() {
                return None;
            }
            let wake = self.queue.front().map(|(due, _)| *due).into_iter().chain(self.since.map(|s| s + FLUSH)).min();
            let reading = !self.done && self.held < MAX_HELD;
            tokio::select! {
                chunk = self.body.next(), if reading => match chunk {
                    Some(Ok(bytes)) => {
                        self.held += bytes.len();
                        self.queue.push_back((Instant::now() + self.latency, bytes));
                    }
                    None => self.done = true,
                },
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
    }

    /// What passes at `now`: every chunk that is due, or, through the
    /// buffering proxy, all it holds once it is full, old enough, or the
    /// stream ended.
    fn release(&mut self, now: Instant) -> Option<Bytes> {
        while self.queue.front().is_some_and(|(due, _)| *due <= now) {
            // unwrap: the loop condition saw a front.
            let (_, bytes) = self.queue.pop_front().unwrap();
            self.since.get_or_insert(now);
            self.buffer.extend_from_slice(&bytes);
        }
        let ended = self.done && self.queue.is_empty();
        let flush = !self.buffering
            || self.buffer.len() >= BUFFER
            || ended
            || self.since.is_some_and(|since| now >= since + FLUSH);
        if self.buffer.is_empty() || !flush {
            return None;
        }
        self.since = None;
        self.held -= self.buffer.len();
        Some(self.buffer.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    //! The delay line on a paused clock: what passes when.
    use std::pin::pin;

    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;

    fn impaired(
        impairment: Impairment,
    ) -> (mpsc::Sender<Result<Bytes, Infallible>>, impl Stream<Item = Result<Bytes, Infallible>>) {
        let (tx, mut rx) = mpsc::channel(64);
        (tx, impairment.sse(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    async fn next_at<S: Stream<Item = Result<Bytes, Infallible>>>(
        stream: &mut std::pin::Pin<&mut S>,
        start: Instant,
    ) -> (Duration, Bytes) {
        let chunk = timeout(Duration::from_secs(600), stream.next()).await.expect("a chunk").unwrap().unwrap();
        (start.elapsed(), chunk)
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_each_chunk_by_the_same_amount() {
        let start = Instant::now();
        let (tx, stream) = impaired(Impairment { latency_ms: 600, ..Impairment::default() });
        let mut stream = pin!(stream);
        tx.send(Ok(Bytes::from_static(b"a"))).await.unwrap();
        let read = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(Ok(Bytes::from_static(b"b"))).await.unwrap();
        });
        assert_eq!(next_at(&mut stream, start).await, (Duration::from_millis(600), Bytes::from_static(b"a")));
        assert_eq!(next_at(&mut stream, start).await, (Duration::from_millis(700), Bytes::from_static(b"b")));
        read.await.unwrap();
        assert!(stream.next().await.is_none(), "ends with its body");
    }

    #[tokio::test(start_paused = true)]
    async fn a_buffering_proxy_holds_bytes_until_64_kib_or_30_s() {
        let start = Instant::now();
        let (tx, stream) = impaired(Impairment { sse: SsePath::Buffer, ..Impairment::default() });
        let mut stream = pin!(stream);
        tx.send(Ok(Bytes::from_static(b": open\n\n"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"data: 1\n\n"))).await.unwrap();
        let (at, chunk) = next_at(&mut stream, start).await;
        assert_eq!((at, &chunk[..]), (FLUSH, &b": open\n\ndata: 1\n\n"[..]), "held 30 s, then sent together");
        let start = Instant::now();
        for _ in 0..(BUFFER / 1024) {
            tx.send(Ok(Bytes::from(vec![b'x'; 1024]))).await.unwrap();
        }
        let (at, chunk) = next_at(&mut stream, start).await;
        assert_eq!((at, chunk.len()), (Duration::ZERO, BUFFER), "a full buffer goes at once");
        tx.send(Ok(Bytes::from_static(b"tail"))).await.unwrap();
        drop(tx);
        let (at, chunk) = next_at(&mut stream, start).await;
        assert_eq!((at, &chunk[..]), (Duration::ZERO, &b"tail"[..]), "the end of the stream flushes");
    }

    #[test]
    fn changes_keep_what_they_do_not_name() {
        let lab = Impairment {
            websocket: WebSocketPath::Refuse,
            sse: SsePath::Buffer,
            latency_ms: 600,
            ..Default::default()
        };
        let change: Change = serde_json::from_str(r#"{"latency_ms": 0}"#).unwrap();
        assert_eq!(change.apply(lab), Ok(Impairment { latency_ms: 0, ..lab }));
        let too_slow: Change = serde_json::from_str(r#"{"latency_ms": 5001}"#).unwrap();
        assert!(too_slow.apply(lab).is_err());
        assert!(serde_json::from_str::<Change>(r#"{"websocket": "maybe"}"#).is_err());
        assert!(serde_json::from_str::<Change>(r#"{"websocket": "ok", "dns": "slow"}"#).is_err());
    }
}
