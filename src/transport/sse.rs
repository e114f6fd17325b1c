//! Server-Sent Events: a streaming body that owns its subscription, so the
//! subscription ends (and gauges drop) when the client goes away.
//!
//! The stream opens with a comment and `retry:`, then one `subscribed` event
//! per channel, then catch-up and live events, each with `id:` = the cursor
//! after it, and a comment on every heartbeat. Events that are ready together
//! go out in one chunk.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

use super::{
    Connection, Context, Cut, CutReason, Ended, Event, Savings, StreamRequest, Subscribed, Subscription, Transport,
    gather_for,
};
use crate::encoding::Chunk;
use crate::encoding::gzip::{GzipStream, Piece};
use crate::hub::HubError;
use crate::message::{now_micros, sse_event};
use crate::protocol::ServerFrame;
use crate::stats::{Counters, Ending};

/// Most bytes gathered into one chunk from events that are ready together.
const CHUNK: usize = 16 * 1024;

/// Opens the subscription (so that hub failures can still be answered with a
/// status) and returns the event stream.
pub async fn open(
    ctx: Context,
    request: StreamRequest,
) -> Result<impl Stream<Item = Result<Bytes, std::convert::Infallible>>, HubError> {
    let mut subscription = ctx.live_subscription();
    let subscribed = subscription.subscribe(&request.channels, &request.cursor).await?;
    let preamble = preamble(&ctx, &subscription, &subscribed);
    let every = ctx.config.sse_heartbeat;
    let mut heartbeat = interval_at(Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = ctx.shutdown.clone();
    let savings = Savings::new(&ctx.stats, Transport::Sse, request.wire.as_ref());
    let state = SseStream {
        // Made once: a wait made anew for every chunk took the signal's lock each time.
        shutdown: Box::pin(async move { shutdown.wait().await }),
        single: request.channels.len() == 1,
        cut: request.cut,
        connection: Connection::open(&ctx.stats, Transport::Sse, request.channels.len(), request.wire),
        ctx,
        subscription,
        heartbeat,
        preamble: Some(preamble),
        done: false,
        savings,
        gzip: request.encoding.compressed.then(GzipStream::default),
    };
    Ok(futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok(chunk), state))
    }))
}

struct SseStream {
    ctx: Context,
    shutdown: LocalBoxFuture<'static, ()>,
    cut: Cut,
    subscription: Subscription,
    heartbeat: Interval,
    preamble: Option<Bytes>,
    single: bool,
    done: bool,
    /// Counted open until the stream is dropped; logs how it ended.
    connection: Connection,
    /// The gzip member the stream is, when the client accepts gzip.
    gzip: Option<GzipStream>,
    savings: Savings,
}

fn preamble(ctx: &Context, subscription: &Subscription, subscribed: &[Subscribed]) -> Bytes {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_slice(b": pushwire stream open\n");
    buf.put_slice(format!("retry: {}\n\n", ctx.config.sse_retry.as_millis()).as_bytes());
    let cursor = subscription.cursor().to_string();
    for s in subscribed {
        let frame = ServerFrame::Subscribed { channel: &s.channel, epoch: &s.epoch, seq: s.head }.to_json();
        buf.put(sse_event("subscribed", Some(&cursor), &frame));
    }
    buf.freeze()
}

impl SseStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(preamble) = self.preamble.take() {
            let mut chunk = Chunk::default();
            self.put(&mut chunk, preamble, None);
            return Some(chunk.into_bytes());
        }
        if self.done {
            return None;
        }
        let first = tokio::select! {
            () = &mut self.shutdown => return self.finish(Ending::Shutdown, ": server restarting; reconnect\n\n"),
            why = &mut self.cut => return match why {
                CutReason::Dropped => self.finish(Ending::Dropped, ": dropped from the dashboard; reconnect\n\n"),
                CutReason::TokenExpired => {
                    self.finish(Ending::TokenExpired, ": token expired; reconnect with a fresh one\n\n")
                }
            },
            _ = self.heartbeat.tick() => {
                let mut chunk = Chunk::default();
                self.put(&mut chunk, Bytes::from_static(b": heartbeat\n\n"), None);
                return Some(chunk.into_bytes());
            }
            event = self.subscription.next() => event,
        };
        // A lagged stream's last words are not held.
        if let Ok(event) = &first
            && let Some(delay) = gather_for(self.ctx.config.write_delay, event.published())
        {
            delay.await;
        }
        let mut chunk = Chunk::default();
        let mut next = first.map(Some);
        loop {
            match next {
                Ok(Some(event)) => self.encode(event, &mut chunk),
                Ok(None) => break,
                Err(Ended::Lagged) => {
                    self.connection.end(Ending::Slow);
                    self.done = true;
                    self.put(&mut chunk, Bytes::from_static(b": too slow to keep up; reconnect\n\n"), None);
                    self.end_gzip(&mut chunk);
                    break;
                }
                // A failed history read while gathering: send what is ready;
                // `next` retries the read on the following round.
                Err(Ended::Hub(_)) => break,
            }
            if chunk.len() >= CHUNK {
                break;
            }
            next = self.subscription.next_ready().await;
        }
        Some(chunk.into_bytes())
    }

    /// The stream's last words; a gzip stream's member is ended after them.
    fn finish(&mut self, ending: Ending, comment: &'static str) -> Option<Bytes> {
        self.connection.end(ending);
        self.done = true;
        let mut chunk = Chunk::default();
        self.put(&mut chunk, Bytes::from_static(comment.as_bytes()), None);
        self.end_gzip(&mut chunk);
        Some(chunk.into_bytes())
    }

    /// Adds `plain` to the chunk, through the stream's gzip when it has one
    /// (`deflated`: its bytes deflated once, for every stream).
    fn put(&mut self, chunk: &mut Chunk, plain: Bytes, deflated: Option<Bytes>) {
        match &mut self.gzip {
            None => chunk.push(plain),
            Some(gzip) => {
                let sent = gzip.push(Piece { plain: &plain, deflated }, chunk);
                self.savings.count(plain.len(), sent);
            }
        }
    }

    fn end_gzip(&mut self, chunk: &mut Chunk) {
        if let Some(gzip) = self.gzip.take() {
            let sent = gzip.finish(chunk);
            self.savings.count(0, sent);
        }
    }

    /// Adds one event: a message on a stream of one channel is encoded (and
    /// deflated) once for every stream that gets it; on a stream of several,
    /// its `id:` is the stream's own.
    fn encode(&mut self, event: Event, chunk: &mut Chunk) {
        let stats = &self.ctx.stats;
        match event {
            Event::Message(message) => {
                // The chunk is handed to the socket as soon as it is gathered.
                stats.delivered(Transport::Sse, message.ts, now_micros());
                self.connection.delivered(1);
                let id = || Some(self.subscription.cursor().to_string());
                match (self.single, self.gzip.is_some()) {
                    (true, false) => chunk.push(message.sse_single()),
                    (true, true) => self.put(chunk, message.sse_single(), Some(message.sse_single_deflated())),
                    (false, false) => chunk.push(sse_event("message", id().as_deref(), message.json())),
                    (false, true) => {
                        // `id:` may follow `data:`: a field counts when the blank line ends the event.
                        let (plain, deflated) = message.sse_body().clone();
                        let id = format!("id: {}\n\n", self.subscription.cursor());
                        self.put(chunk, plain, Some(deflated));
                        self.put(chunk, Bytes::from(id), None);
                    }
                }
            }
            Event::Reset(reset) => {
                Counters::add(&stats.get(Transport::Sse).resets_delivered, 1);
                // unwrap: a Reset holds only strings and numbers.
                let json = serde_json::to_string(&reset).unwrap();
                let event = sse_event("reset", Some(&self.subscription.cursor().to_string()), &json);
                self.put(chunk, event, None);
            }
        }
    }
}

/// Headers that keep proxies from buffering or caching the stream.
pub const HEADERS: [(&str, &str); 3] =
    [("cache-control", "no-cache, no-store"), ("x-accel-buffering", "no"), ("content-type", "text/event-stream")];

#[cfg(test)]
mod tests {
    //! The heartbeat schedule on a paused clock. The contract tests run the
    //! server on actix's own runtimes, whose clocks a test cannot pause, so
    //! over a real socket they can only show that heartbeats arrive.
    use std::pin::pin;

    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::time::{Instant, timeout};

    use super::*;
    use crate::config::Config;

    const EVERY: Duration = Duration::from_secs(15);

    fn context() -> Context {
        let mut config = Config::defaults();
        config.sse_heartbeat = EVERY;
        Context::for_tests(config)
    }

    fn request(channel: &str) -> StreamRequest {
        StreamRequest::for_tests(vec![channel.parse().unwrap()])
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_a_heartbeat_exactly_every_interval() {
        let start = Instant::now();
        let mut stream = pin!(open(context(), request("h")).await.unwrap());
        let preamble = stream.next().await.unwrap().unwrap();
        assert!(preamble.starts_with(b": pushwire stream open\n"), "{preamble:?}");
        assert_eq!(start.elapsed(), Duration::ZERO, "the comment opens the stream at once");
        for n in 1..=3 {
            // Paused clock: a bound on a failure that costs nothing.
            let chunk = timeout(EVERY * 10, stream.next()).await.expect("a heartbeat").unwrap().unwrap();
            assert_eq!(chunk, ": heartbeat\n\n");
            assert_eq!(start.elapsed(), EVERY * n, "heartbeat {n} at {n} intervals, not before or after");
        }
    }
}
