//! WebSocket sessions: one `select!` over client frames, the subscription,
//! the protocol ping and the shutdown signal.
//!
//! The route handler validates the handshake and answers `101` carrying an
//! [`Accepted`]; the server's upgrade path (`server/upgrade.rs`) writes that
//! answer and hands the bare socket to [`run`]. A session owns its socket
//! ([`socket::WsSocket`]): deliveries are written by the session itself, every
//! frame queued for the connection in one write.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_http::ws::{CloseCode as WsCloseCode, CloseReason};
use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::future::Either;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep, sleep_until};
use tracing::Instrument;

use super::{
    Connection, Context, Cut, CutReason, Ended, Event, Impairment, Negotiated, Savings, StreamRequest, Subscription,
    Transport, gather_for,
};
use crate::auth::Access;
use crate::encoding::{Format, deflate, msgpack};
use crate::error::{AppError, ErrorCode};
use crate::hub::Subscriber;
use crate::lab::impairment::WebSocketPath;
use crate::message::{ChannelName, Cursor, Message, now_micros};
use crate::protocol::{ClientFrame, Disconnect, FrameError, ServerFrame};
use crate::stats::{Counters, Ending, Rejection};

mod heartbeat;
mod socket;

use heartbeat::{Beat, Heartbeat};
use socket::frame_len;
pub use socket::{Incoming, ReadError, WsSocket};

/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Most frames put in one write when deliveries queue up.
const BATCH: usize = 64;
/// Most bytes gathered into one write: a session blocked on a client that
/// does not read holds at most this much besides its queue, however large the
/// messages (64 frames of 64 KiB each once made 4 MiB per stuck connection).
const BATCH_BYTES: usize = 64 * 1024;
/// Turns of a session's loop after which its deliveries let the client's
/// frames be read first.
const FAIR: u32 = 32;

/// Marks a request that arrived through the server's upgrade path, with its
/// socket at hand: only such a request can become a WebSocket (an HTTP/2
/// request cannot, RFC 8441 is not offered).
#[derive(Debug, Clone, Copy)]
pub struct Upgradable;

/// A handshake the route accepted, carried on its `101` response to the
/// upgrade path, which starts the session with it.
pub struct Accepted {
    pub ctx: Context,
    pub request: StreamRequest,
    /// The request's span, so that what the session logs says whose it is.
    pub span: tracing::Span,
}

/// Serves one WebSocket session on `io` to its end; `leftover` is what was
/// read past the handshake.
pub fn run<T: AsyncRead + AsyncWrite + Unpin>(
    accepted: Accepted,
    io: T,
    leftover: BytesMut,
) -> impl Future<Output = ()> {
    if accepted.request.impairment.websocket == WebSocketPath::Swallow {
        let Accepted { ctx, request, span } = accepted;
        return Either::Left(async move { super::swallow(&ctx, io, request.cut).await }.instrument(span));
    }
    // One deadline for a send, `write_out`'s: it can still close with 1013.
    if let Some(wire) = &accepted.request.wire {
        wire.meter().writes_timed_by_session();
    }
    let config = &accepted.ctx.config;
    let compressed = accepted.request.encoding.compressed;
    let socket = WsSocket::new(io, leftover, config.max_frame, config.request_timeout, compressed);
    Either::Right(serve(accepted, socket, Transport::WebSocket))
}

/// Serves a session of the WebSocket frame vocabulary over `carrier`, for
/// `transport`, to its end. The state is put together here, outside the
/// future, so that the future an idle connection keeps holds it once.
pub fn serve<C: Carrier>(accepted: Accepted, carrier: C, transport: Transport) -> impl Future<Output = ()> {
    let Accepted { ctx, request, span } = accepted;
    let StreamRequest { channels, cursor, peer, access, cut, wire, impairment, encoding } = request;
    // The session is not instrumented with the request's span (entering it
    // on every poll showed in profiles); its log line names the span itself.
    let _entered = span.enter();
    let savings = Savings::new(&ctx.stats, transport, wire.as_ref());
    let connection = Connection::open(&ctx.stats, transport, channels.len(), wire);
    let subscription = ctx.live_subscription();
    // unwrap: a live subscription always has a subscriber.
    let subscriber = subscription.subscriber().unwrap().clone();
    let ws = WsSession {
        id: std::iter::repeat_with(fastrand::alphanumeric).take(16).collect(),
        subscription,
        subscriber,
        ctx,
        socket: carrier,
        transport,
        peer,
        access,
        cut,
        impairment,
        encoding,
        savings,
        delivered: 0,
    };
    ws.live(connection, channels, cursor)
}

/// What a session speaks through: a WebSocket's frames ([`WsSocket`]), or a
/// WebTransport stream's delimited frames (`transport::webtransport`). One
/// frame vocabulary, two carriers: resume, limits, cuts, shutdown and
/// metering are the session's, the same for both.
pub trait Carrier {
    /// Whether the session keeps the peer alive with protocol pings: a
    /// WebSocket's; QUIC keeps its connections alive itself.
    const PINGS: bool;

    /// Queues a data frame, compressed with permessage-deflate when
    /// `compressed`; returns its length.
    fn queue_data(&mut self, payload: &[u8], binary: bool, compressed: bool) -> usize;

    /// Bytes queued and not yet written.
    fn queued(&self) -> usize;

    fn queue_ping(&mut self, payload: &[u8]);

    fn queue_pong(&mut self, payload: &[u8]);

    /// Writes everything queued. Cancel-safe: what is not written stays queued.
    fn poll_flush(&mut self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>>;

    /// The next message from the peer; `None` once its side is closed. Cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, ReadError>>>;

    /// Ends the session with `reason`, within `grace`.
    fn close(self, reason: Option<CloseReason>, grace: Duration) -> impl Future<Output = ()>;
}

struct WsSession<C> {
    ctx: Context,
    socket: C,
    /// What it is counted as: a WebSocket, or WebTransport.
    transport: Transport,
    subscription: Subscription,
    subscriber: Arc<Subscriber>,
    id: String,
    peer: Option<IpAddr>,
    access: Access,
    /// Ends the session early (an operator's drop, the token's expiry).
    cut: Cut,
    /// The page's network lab: its latency delays each message.
    impairment: Impairment,
    /// MessagePack or JSON frames, and whether permessage-deflate was agreed.
    encoding: Negotiated,
    savings: Savings,
    /// Messages delivered, for the session's log line.
    delivered: usize,
}

/// Why a session stops.
#[derive(Debug)]
enum Stop {
    /// The socket is gone; nothing more can be sent.
    Gone,
    /// Close the socket with this code and reason.
    Close(Disconnect),
}

impl From<Disconnect> for Stop {
    fn from(disconnect: Disconnect) -> Stop {
        Stop::Close(disconnect)
    }
}

/// Every step of a session either goes on or stops it.
type Outcome = Result<(), Stop>;

impl<C: Carrier> WsSession<C> {
    /// Not an `async fn`: one would keep its arguments twice in the state
    /// every idle session holds, moved into locals beside the originals
    /// (rust-lang/rust#62958): 632 bytes of a 2.8 KB session.
    #[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    fn live(
        mut self,
        mut connection: Connection,
        channels: Vec<ChannelName>,
        cursor: Cursor,
    ) -> impl Future<Output = ()> {
        async move {
            let stop = self.serve(channels, cursor).await;
            connection.set_channels(self.subscription.channels().count());
            connection.delivered(self.delivered);
            match &stop {
                Stop::Gone => connection.end(Ending::ClientGone),
                Stop::Close(disconnect) => connection.close(disconnect.code.code(), disconnect.ending),
            }
            // Counted closed (and logged) now: a client that stopped reading may
            // hold the close frame for the whole grace below.
            drop(connection);
            if let Stop::Close(disconnect) = stop {
                let reason = CloseReason {
                    code: WsCloseCode::from(disconnect.code.code()),
                    description: Some(disconnect.reason.into()),
                };
                // Its channels are let go of first; the close is boxed: taken once,
                // at the end, it need not weigh on the state every idle session keeps.
                drop(self.subscription);
                Box::pin(self.socket.close(Some(reason), CLOSE_GRACE)).await;
            }
        }
    }

    /// Runs the session until something stops it.
    async fn serve(&mut self, channels: Vec<ChannelName>, cursor: Cursor) -> Stop {
        let ping_every = self.ctx.config.ws_ping_interval;
        let welcome = ServerFrame::Welcome { session: &self.id, heartbeat_ms: ping_every.as_millis() as u64 }.to_json();
        if let Err(stop) = self.send(welcome).await {
            return stop;
        }
        if !channels.is_empty()
            && let Err(stop) = Box::pin(self.subscribe(channels, &cursor, None)).await
        {
            return stop;
        }
        let mut heartbeat = Heartbeat::new(Instant::now(), ping_every, self.ctx.config.ws_pong_timeout);
        let mut timer = std::pin::pin!(sleep_until(heartbeat.due()));
        // Made once for the session, not on every turn of the loop.
        let shutdown = self.ctx.shutdown.clone();
        let mut shutdown = std::pin::pin!(shutdown.wait());
        let mut turn: u32 = 0;
        loop {
            // Biased, deliveries before the client's frames (a delivery's turn
            // then polls the socket once, not twice); every FAIR-th turn they
            // give way once, so that frames (pongs) are read under any load.
            turn = turn.wrapping_add(1);
            let give_way = turn.is_multiple_of(FAIR);
            let step = tokio::select! {
                biased;
                () = &mut shutdown => Err(Disconnect::SHUTDOWN.into()),
                why = &mut self.cut => Err(cut_short(why)),
                event = after_yield(give_way, self.subscription.next()) => match event {
                    Ok(event) => self.deliver(event).await,
                    Err(Ended::Lagged) => Err(Disconnect::TOO_SLOW.into()),
                    Err(Ended::Hub(_)) => Err(Disconnect::HUB_FAILURE.into()),
                },
                incoming = self.socket.recv() => match incoming {
                    // Boxed, as are the other rare paths: what a session keeps
                    // while it waits stays small.
                    Some(Ok(Incoming::Text(text))) => Box::pin(self.on_text(&text)).await,
                    Some(Ok(Incoming::Binary(bytes))) => Box::pin(self.on_binary(&bytes)).await,
                    Some(Ok(Incoming::Ping(payload))) => {
                        self.socket.queue_pong(&payload);
                        self.flush().await
                    }
                    Some(Ok(Incoming::Pong(payload))) => {
                        heartbeat.pong(&payload);
                        Ok(())
                    }
                    Some(Ok(Incoming::Close)) => Err(Disconnect::BYE.into()),
                    Some(Err(ReadError::Overflow)) => Err(Disconnect::TOO_BIG.into()),
                    Some(Err(ReadError::InvalidUtf8)) => Err(Disconnect::INVALID_UTF8.into()),
                    Some(Err(ReadError::Unfinished)) => {
                        self.ctx.stats.rejected(Rejection::RequestTimeout);
                        Err(Disconnect::UNFINISHED.into())
                    }
                    // The connection broke (peer vanished, reset): nobody to tell.
                    Some(Err(ReadError::Io(_))) | None => Err(Stop::Gone),
                    Some(Err(ReadError::Inflate | ReadError::Malformed)) => Err(Disconnect::PROTOCOL.into()),
                    Some(Err(e)) => {
                        tracing::debug!(session = %self.id, error = %e, "websocket protocol error");
                        Err(Disconnect::PROTOCOL.into())
                    }
                },
                () = &mut timer, if C::PINGS => {
                    let beat = heartbeat.fire(Instant::now());
                    timer.as_mut().reset(heartbeat.due());
                    match beat {
                        Beat::Ping(payload) => {
                            self.socket.queue_ping(&payload);
                            self.flush().await
                        }
                        Beat::NoPong => Err(Disconnect::NO_PONG.into()),
                        Beat::Nothing => Ok(()),
                    }
                }
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// A binary frame: a client frame in MessagePack, on a MessagePack session.
    async fn on_binary(&mut self, bytes: &[u8]) -> Outcome {
        if self.encoding.format != Format::MsgPack {
            let error = AppError::bad_request(
                "binary frames are MessagePack, for sessions that ask for it (subprotocol pushwire.msgpack); \
                 send JSON text frames",
            );
            return self.error(&error, None).await;
        }
        match msgpack::to_json(bytes) {
            Ok(json) => self.on_text(&json).await,
            Err(e) => self.error(&AppError::new(ErrorCode::BadJson, e.to_string()), None).await,
        }
    }

    async fn on_text(&mut self, text: &str) -> Outcome {
        let (reference, frame) = ClientFrame::parse(text, self.ctx.config.max_channels);
        let frame = match frame {
            Ok(frame) => frame,
            Err(FrameError { error, reference }) => return self.error(&error, reference.as_ref()).await,
        };
        let reference = reference.as_ref();
        match frame {
            ClientFrame::Subscribe { channels, cursor } => match cursor.as_deref().unwrap_or("").parse::<Cursor>() {
                Ok(cursor) => self.subscribe(channels, &cursor, reference).await,
                Err(e) => self.error(&e.into(), reference).await,
            },
            ClientFrame::Unsubscribe { channels } => {
                self.subscription.unsubscribe(&channels);
                self.ack(reference).await
            }
            ClientFrame::Publish { channel, data, idempotency_key } => {
                if !self.access.may_publish(&channel) {
                    let error = AppError::forbidden(format!("your token may not publish on {channel}"));
                    return self.error(&error, reference).await;
                }
                if let Err(wait) = self.ctx.publish_rate.check(self.peer) {
                    let error = AppError::rate_limited("too many publishes from your address", wait);
                    return self.error(&error, reference).await;
                }
                if data.get().len() > self.ctx.config.max_body {
                    let error = AppError::too_large(format!("data is over {} bytes", self.ctx.config.max_body));
                    return self.error(&error, reference).await;
                }
                match self.ctx.hub.publish(channel, data, idempotency_key).await {
                    Ok(message) => match reference {
                        Some(reference) => self.send(published_ack(reference, &message)).await,
                        None => Ok(()),
                    },
                    Err(e) => self.error(&e.into(), reference).await,
                }
            }
            ClientFrame::Ping => self.send(ServerFrame::Pong { reference }.to_json()).await,
        }
    }

    async fn subscribe(&mut self, channels: Vec<ChannelName>, cursor: &Cursor, reference: Option<&Value>) -> Outcome {
        // A frame naming any forbidden channel is refused whole (API.md v1.1).
        if let Some(channel) = self.access.first_unsubscribable(&channels) {
            let error = AppError::forbidden(format!("your token may not subscribe to {channel}"));
            return self.error(&error, reference).await;
        }
        let new = channels.iter().filter(|c| !self.subscription.is_subscribed(c)).count();
        let total = self.subscription.channels().count() + new;
        if total > self.ctx.config.max_channels {
            let error =
                AppError::bad_request(format!("at most {} channels per connection", self.ctx.config.max_channels))
                    .rejected_by(Rejection::Channels);
            return self.error(&error, reference).await;
        }
        match self.subscription.subscribe(&channels, cursor).await {
            Ok(subscribed) => {
                for s in &subscribed {
                    self.send(ServerFrame::Subscribed { channel: &s.channel, epoch: &s.epoch, seq: s.head }.to_json())
                        .await?;
                }
                self.ack(reference).await
            }
            Err(e) => self.error(&e.into(), reference).await,
        }
    }

    /// Writes `event` and every event ready behind it (up to [`BATCH`]
    /// frames or [`BATCH_BYTES`]) in one write.
    async fn deliver(&mut self, event: Event) -> Outcome {
        // The page's network lab may hold it back, and deliver one at a time;
        // a cut (the lab's own change of settings, say) is heard meanwhile.
        let batch = if self.impairment.latency_ms == 0 {
            BATCH
        } else {
            tokio::select! {
                batch = self.impairment.pace(event.published_us(), BATCH) => batch,
                why = &mut self.cut => return Err(cut_short(why)),
            }
        };
        // `--write-delay`: what is published meanwhile goes out in the same write.
        if let Some(delay) = gather_for(self.ctx.config.write_delay, event.published()) {
            tokio::select! {
                () = delay => {}
                why = &mut self.cut => return Err(cut_short(why)),
            }
        }
        self.queue(event);
        for _ in 1..batch {
            if self.socket.queued() >= BATCH_BYTES {
                break;
            }
            // Only what is ready without waiting: a history read to come is
            // left for the next turn (`next_ready` is cancel-safe).
            match self.subscription.next_ready().now_or_never() {
                Some(Ok(Some(event))) => self.queue(event),
                Some(Err(Ended::Lagged)) => return Err(Disconnect::TOO_SLOW.into()),
                _ => break,
            }
        }
        // A client that stops reading blocks this write; the lag signal (its
        // queue overflowing meanwhile) or the write timeout cuts it loose.
        // Biased: a write the socket takes at once never looks at the lag.
        tokio::select! {
            biased;
            written = write_out(&mut self.socket, &self.ctx) => written,
            () = self.subscriber.lagged() => Err(Disconnect::TOO_SLOW.into()),
        }
    }

    /// Encodes an event for the next write, and counts it delivered.
    fn queue(&mut self, event: Event) {
        let stats = &self.ctx.stats;
        match event {
            Event::Message(message) => {
                let Negotiated { format, compressed } = self.encoding;
                let plain = message.encoded(format);
                let binary = format == Format::MsgPack;
                if compressed && plain.len() >= self.ctx.config.compression_min_size {
                    let plain_frame = frame_len(plain.len());
                    let sent = self.socket.queue_data(&message.deflated(format), binary, true);
                    self.savings.count(plain_frame, sent);
                } else {
                    self.socket.queue_data(plain, binary, false);
                }
                stats.delivered(self.transport, message.ts, now_micros());
                self.delivered += 1;
            }
            Event::Reset(reset) => {
                // unwrap: a Reset holds only strings and numbers.
                Counters::add(&stats.get(self.transport).resets_delivered, 1);
                self.queue_frame(&serde_json::to_string(&reset).unwrap());
            }
        }
    }

    /// Queues a frame of the server's own (not a message) in the session's
    /// encoding, compressed for this connection alone when worth it.
    fn queue_frame(&mut self, json: &str) {
        let Negotiated { format, compressed } = self.encoding;
        let packed;
        let plain = match format {
            Format::Json => json.as_bytes(),
            Format::MsgPack => {
                // unwrap: the server's frames are valid JSON of plain values.
                packed = msgpack::from_json(json).unwrap();
                &packed
            }
        };
        let binary = format == Format::MsgPack;
        if compressed && plain.len() >= self.ctx.config.compression_min_size {
            let sent = self.socket.queue_data(&deflate::permessage(plain), binary, true);
            self.savings.count(frame_len(plain.len()), sent);
        } else {
            self.socket.queue_data(plain, binary, false);
        }
    }

    async fn ack(&mut self, reference: Option<&Value>) -> Outcome {
        match reference {
            Some(reference) => {
                let ack = ServerFrame::Ack { reference, channel: None, seq: None, ts: None, epoch: None };
                self.send(ack.to_json()).await
            }
            None => Ok(()),
        }
    }

    /// An `error` frame with the same code and client-facing text as the
    /// HTTP error would have.
    async fn error(&mut self, error: &AppError, reference: Option<&Value>) -> Outcome {
        if let Some(rejection) = error.rejection {
            self.ctx.stats.rejected(rejection);
        }
        self.send(ServerFrame::Error { code: error.code, message: &error.message, reference }.to_json()).await
    }

    async fn send(&mut self, json: String) -> Outcome {
        self.queue_frame(&json);
        self.flush().await
    }

    async fn flush(&mut self) -> Outcome {
        write_out(&mut self.socket, &self.ctx).await
    }
}

/// Writes what is queued, bounded by the write timeout, so that a client that
/// does not read cannot hold the session (and its ping, lag and shutdown
/// checks) in a write. The only bound on a session's sends: the socket leaves
/// them to it (`ConnMeter::writes_timed_by_session`).
async fn write_out<C: Carrier>(socket: &mut C, ctx: &Context) -> Outcome {
    // Armed only once the socket makes the write wait: most writes never do.
    let mut deadline: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(|cx| match socket.poll_flush(cx) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
        Poll::Ready(Err(_)) => Poll::Ready(Err(Stop::Gone)),
        Poll::Pending => {
            let deadline = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(ctx.config.write_timeout)));
            deadline.as_mut().poll(cx).map(|()| {
                ctx.stats.rejected(Rejection::WriteTimeout);
                Err(Disconnect::WRITE_TIMEOUT.into())
            })
        }
    })
    .await
}

/// `future`, after yielding to the scheduler once if `first`.
async fn after_yield<F: Future>(first: bool, future: F) -> F::Output {
    if first {
        tokio::task::yield_now().await;
    }
    future.await
}

/// The close for a session ended from outside.
fn cut_short(why: CutReason) -> Stop {
    match why {
        CutReason::Dropped => Disconnect::DROPPED,
        CutReason::TokenExpired => Disconnect::TOKEN_EXPIRED,
    }
    .into()
}

fn published_ack(reference: &Value, message: &Message) -> String {
    ServerFrame::Ack {
        reference,
        channel: Some(&message.channel),
        seq: Some(message.seq),
        ts: Some(message.ts),
        epoch: Some(&message.epoch),
    }
    .to_json()
}

#[cfg(test)]
mod tests;
