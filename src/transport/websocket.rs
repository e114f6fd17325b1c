//! WebSocket sessions: one `select!` over client frames, the subscription,
//! the protocol ping and the shutdown signal.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseReason, MessageStream, ProtocolError, Session};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};

use super::{Connection, Context, CutReason, Ended, Event, Impairment, StreamRequest, Subscription, Transport};
use crate::auth::Access;
use crate::error::AppError;
use crate::hub::Subscriber;
use crate::message::{ChannelName, Cursor, Message, now_micros};
use crate::protocol::{ClientFrame, Disconnect, FrameError, ServerFrame};
use crate::stats::{Counters, Ending, Rejection};

/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves one WebSocket session to its end.
pub async fn run(ctx: Context, session: Session, stream: MessageStream, mut request: StreamRequest) {
    let mut connection =
        Connection::open(&ctx.stats, Transport::WebSocket, request.channels.len(), request.wire.take());
    let stream = stream
        .max_frame_size(ctx.config.max_frame)
        .aggregate_continuations()
        .max_continuation_size(ctx.config.max_frame);
    let id: String = std::iter::repeat_with(fastrand::alphanumeric).take(16).collect();
    let subscription = ctx.live_subscription();
    // unwrap: a live subscription always has a subscriber.
    let subscriber = subscription.subscriber().unwrap().clone();
    let mut ws = WsSession {
        subscription,
        subscriber,
        ctx,
        session,
        id,
        peer: request.peer,
        access: request.access.clone(),
        impairment: request.impairment,
        delivered: 0,
    };
    let stop = ws.serve(stream, request).await;
    connection.set_channels(ws.subscription.channels().count());
    connection.delivered(ws.delivered);
    match &stop {
        Stop::Gone => connection.end(Ending::ClientGone),
        Stop::Close(disconnect) => connection.close(disconnect.code.code(), disconnect.ending),
    }
    // Counted closed (and logged) now: a client that stopped reading may hold
    // the close frame for the whole grace below.
    drop(connection);
    if let Stop::Close(disconnect) = stop {
        let reason = CloseReason { code: disconnect.code.code().into(), description: Some(disconnect.reason.into()) };
        let _ = tokio::time::timeout(CLOSE_GRACE, ws.session.close(Some(reason))).await;
    }
}

struct WsSession {
    ctx: Context,
    session: Session,
    subscription: Subscription,
    subscriber: Arc<Subscriber>,
    id: String,
    peer: Option<IpAddr>,
    access: Access,
    /// The page's network lab: its latency delays each message.
    impairment: Impairment,
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

impl WsSession {
    /// Runs the session until something stops it.
    async fn serve(&mut self, mut stream: AggregatedMessageStream, request: StreamRequest) -> Stop {
        let ping_every = self.ctx.config.ws_ping_interval;
        let welcome = ServerFrame::Welcome { session: &self.id, heartbeat_ms: ping_every.as_millis() as u64 };
        if let Err(stop) = self.send(welcome.to_json()).await {
            return stop;
        }
        if !request.channels.is_empty()
            && let Err(stop) = self.subscribe(request.channels, &request.cursor, None).await
        {
            return stop;
        }
        let mut ping = interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pong_deadline: Option<Instant> = None;
        let shutdown = self.ctx.shutdown.clone();
        let mut cut = request.cut;
        loop {
            let step = tokio::select! {
                () = shutdown.wait() => Err(Disconnect::SHUTDOWN.into()),
                why = &mut cut => Err(match why {
                    CutReason::Dropped => Disconnect::DROPPED,
                    CutReason::TokenExpired => Disconnect::TOKEN_EXPIRED,
                }.into()),
                frame = stream.recv() => match frame {
                    Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await,
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        let error = AppError::bad_request("binary frames are not supported; send JSON text frames");
                        self.error(&error, None).await
                    }
                    Some(Ok(AggregatedMessage::Ping(payload))) => {
                        let pong = self.session.pong(&payload);
                        bounded(self.ctx.config.write_timeout, pong).await
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {
                        pong_deadline = None;
                        Ok(())
                    }
                    Some(Ok(AggregatedMessage::Close(_))) => Err(Disconnect::BYE.into()),
                    Some(Err(ProtocolError::Overflow)) => Err(Disconnect::TOO_BIG.into()),
                    // actix-ws reports a text frame that is not UTF-8 this way.
                    Some(Err(ProtocolError::Io(e))) if e.kind() == io::ErrorKind::InvalidData => {
                        Err(Disconnect::INVALID_UTF8.into())
                    }
                    // The connection broke (peer vanished, reset): nobody to tell.
                    Some(Err(ProtocolError::Io(_))) | None => Err(Stop::Gone),
                    Some(Err(e)) => {
                        tracing::debug!(session = %self.id, error = %e, "websocket protocol error");
                        Err(Disconnect::PROTOCOL.into())
                    }
                },
                event = self.subscription.next() => match event {
                    Ok(event) => self.deliver(event).await,
                    Err(Ended::Lagged) => Err(Disconnect::TOO_SLOW.into()),
                    Err(Ended::Hub(_)) => Err(Disconnect::HUB_FAILURE.into()),
                },
                _ = ping.tick() => {
                    pong_deadline.get_or_insert(Instant::now() + self.ctx.config.ws_pong_timeout);
                    let ping = self.session.ping(b"");
                    bounded(self.ctx.config.write_timeout, ping).await
                }
                () = sleep_until(pong_deadline.unwrap_or_else(Instant::now)), if pong_deadline.is_some() => {
                    Err(Disconnect::NO_PONG.into())
                }
            };
            if let Err(stop) = step {
                return stop;
            }
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

    async fn deliver(&mut self, event: Event) -> Outcome {
        let stats = self.ctx.stats.clone();
        let counters = stats.get(Transport::WebSocket);
        match event {
            Event::Message(message) => {
                self.impairment.delay(message.ts).await;
                // A client that stops reading blocks this send; the lag signal
                // (its queue overflowing meanwhile) or the write timeout cuts it loose.
                let send = bounded(self.ctx.config.write_timeout, self.session.text(message.json().clone()));
                tokio::select! {
                    sent = send => sent?,
                    () = self.subscriber.lagged() => return Err(Disconnect::TOO_SLOW.into()),
                }
                stats.delivered(Transport::WebSocket, message.ts, now_micros());
                self.delivered += 1;
            }
            Event::Reset(reset) => {
                // unwrap: a Reset holds only strings and numbers.
                self.send(serde_json::to_string(&reset).unwrap()).await?;
                Counters::add(&counters.resets_delivered, 1);
            }
        }
        Ok(())
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

    async fn send(&mut self, text: String) -> Outcome {
        bounded(self.ctx.config.write_timeout, self.session.text(text)).await
    }
}

/// Every send is bounded by the write timeout, so that a client that does not
/// read cannot hold the session (and its ping, lag and shutdown checks) in a send.
async fn bounded<E>(limit: Duration, send: impl Future<Output = Result<(), E>>) -> Outcome {
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Disconnect::WRITE_TIMEOUT.into()),
    }
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
