//! Following channels exactly once, as an ordinary client of API.md does it:
//! WebSocket, SSE and WebTransport hold one stream, long polling asks again
//! as soon as it is answered, short polling asks every `poll_interval`. A
//! follower starts from a cursor (or from now), keeps its own position on
//! each channel (the last seq received, or where a reset put it), and when a
//! connection is lost it resumes from there: WebSocket and WebTransport with
//! a cursor it builds, SSE with the last event id, polls with the last
//! answer's cursor. It asks for the compression and encoding of its
//! [`Variant`] and reads whatever the server chose to send: compressed or
//! not, JSON or MessagePack.
//!
//! What it receives is reported to an [`Observer`] as [`Event`]s, and
//! tallied per channel ([`Tally`]: seqs, resets, gaps, repeats); every byte
//! passes through the [`Meter`] it is given. It ends once it holds the seq
//! its [`Stop`] names, or when told to stop; a follower given a pause
//! signal reads nothing while it is on (a stalled consumer).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::inflate::{DEFLATE_OFFER, GzipStream, Inflating, gunzip};
use crate::negotiate::{Compression, Encoding, MSGPACK_PROTOCOL, MSGPACK_TYPE, Variant};
use crate::net::{HttpClient, Meter, Target};
use crate::sse::SseParser;
use crate::tally::Tally;
use crate::transport::Transport;
use crate::webtransport::{Frames, Quic};

/// When a follower ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Not yet: it follows (and reconnects) for ever.
    Running,
    /// Once it holds this seq on every channel it tallies.
    After(u64),
    /// Now.
    Now,
}

impl Stop {
    fn reached(self, last: u64) -> bool {
        match self {
            Stop::Running => false,
            Stop::After(seq) => last >= seq,
            Stop::Now => true,
        }
    }
}

/// What a follower reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// Its first connection is up: subscribed (streams) or connected (polls).
    Ready,
    /// Its first connection failed and, told to [`Follow::fail_fast`], it ends.
    Failed(&'a str),
    /// Where it starts on a channel it had no position on (the `subscribed`
    /// frame, or a poll answer's cursor).
    Subscribed { channel: &'a str, seq: u64, epoch: &'a str },
    /// A message. `data` is there when the follower [keeps data](Follow::keep_data).
    Message { channel: &'a str, seq: u64, ts: u64, data: Option<&'a Value> },
    /// The server cannot deliver from the position asked: it goes on after `seq` in `epoch`.
    Reset { channel: &'a str, seq: u64, epoch: &'a str },
    /// A connection opened, or a poll answered.
    Request,
    /// An answer came compressed (an upgrade that accepted permessage-deflate, a gzip body).
    Compressed,
    /// WebSocket messages that came compressed, counted when the connection ends.
    CompressedMessages(u64),
    /// A poll answer without a message.
    EmptyPoll,
    /// Something that did not read, or a poll answered with an error: the follower goes on.
    Error(&'a str),
    /// The connection was lost; the follower resumes from its position.
    Lost(&'a str),
}

/// Takes a follower's events; any `FnMut(Event)` is one.
pub trait Observer {
    fn on(&mut self, event: Event<'_>);
}

impl<F: FnMut(Event<'_>)> Observer for F {
    fn on(&mut self, event: Event<'_>) {
        self(event)
    }
}

/// What a follower received, once it ended.
#[derive(Debug, Clone)]
pub struct Followed {
    /// Per channel.
    pub channels: BTreeMap<String, Tally>,
    /// Whether its first connection came up.
    pub connected: bool,
    /// Whether it was given a pause signal.
    pub paused: bool,
    /// Connections it lost and resumed.
    pub reconnects: u64,
}

/// A follower, before it runs: what to follow, over what, from where.
#[derive(Debug)]
pub struct Follow {
    transport: Transport,
    target: Arc<Target>,
    channels: Vec<String>,
    cursor: String,
    variant: Variant,
    poll_interval: Duration,
    long_poll_timeout: Option<Duration>,
    quic: Option<Arc<Quic>>,
    index: usize,
    meter: Arc<Meter>,
    base: Option<u64>,
    stop: watch::Receiver<Stop>,
    /// The sender of a stop set with `until`, kept so that the signal stays.
    _stop: Option<watch::Sender<Stop>>,
    pause: Option<watch::Receiver<bool>>,
    fail_fast: bool,
    keep_data: bool,
    idle: Option<Duration>,
}

impl Follow {
    /// Follows `channels` at `target` over `transport`, from now, for ever.
    pub fn new(transport: Transport, target: Arc<Target>, channels: &[&str]) -> Follow {
        let (tx, stop) = watch::channel(Stop::Running);
        Follow {
            transport,
            target,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            cursor: String::new(),
            variant: Variant::default(),
            poll_interval: Duration::from_secs(1),
            long_poll_timeout: None,
            quic: None,
            index: 0,
            meter: Arc::default(),
            base: None,
            stop,
            _stop: Some(tx),
            pause: None,
            fail_fast: false,
            keep_data: false,
            idle: None,
        }
    }

    /// Starts from `cursor` (`channel:seq:epoch`, comma-separated, as API.md gives it).
    pub fn cursor(mut self, cursor: &str) -> Follow {
        self.cursor = cursor.to_string();
        self
    }

    /// Asks for this compression and encoding.
    pub fn variant(mut self, variant: Variant) -> Follow {
        self.variant = variant;
        self
    }

    /// Time between short polls (1 s unless told).
    pub fn poll_interval(mut self, interval: Duration) -> Follow {
        self.poll_interval = interval;
        self
    }

    /// How long the server may hold a long poll (its default, 25 s, unless told).
    pub fn long_poll_timeout(mut self, timeout: Duration) -> Follow {
        self.long_poll_timeout = Some(timeout);
        self
    }

    /// Where WebTransport sessions open ([`Quic::discover`]); needed for that transport.
    pub fn quic(mut self, quic: Arc<Quic>) -> Follow {
        self.quic = Some(quic);
        self
    }

    /// Which of the target's source addresses and QUIC endpoints to use.
    pub fn index(mut self, index: usize) -> Follow {
        self.index = index;
        self
    }

    /// Counts the follower's bytes into `meter`.
    pub fn meter(mut self, meter: Arc<Meter>) -> Follow {
        self.meter = meter;
        self
    }

    /// Tallies seqs from `base` on (from the cursor's position on, unless told).
    pub fn count_from(mut self, base: u64) -> Follow {
        self.base = Some(base);
        self
    }

    /// Ends when `stop` says so.
    pub fn stop(mut self, stop: watch::Receiver<Stop>) -> Follow {
        self.stop = stop;
        self._stop = None;
        self
    }

    /// Ends once it holds `seq` on every channel.
    pub fn until(self, seq: u64) -> Follow {
        let (tx, rx) = watch::channel(Stop::After(seq));
        Follow { _stop: Some(tx), ..self.stop(rx) }
    }

    /// Reads (and asks) nothing while `pause` is on.
    pub fn pause(mut self, pause: watch::Receiver<bool>) -> Follow {
        self.pause = Some(pause);
        self
    }

    /// Ends when its first connection fails, instead of trying again.
    pub fn fail_fast(mut self) -> Follow {
        self.fail_fast = true;
        self
    }

    /// Reads each message's `data` and reports it.
    pub fn keep_data(mut self) -> Follow {
        self.keep_data = true;
        self
    }

    /// Gives a connection up (and resumes) when it takes longer than `idle` to
    /// open, or a stream goes `idle` without a byte from the server.
    pub fn idle(mut self, idle: Duration) -> Follow {
        self.idle = Some(idle);
        self
    }

    /// Follows until told to stop, reporting to `observer`.
    pub async fn run<O: Observer>(self, observer: &mut O) -> Followed {
        let positions = parse_cursor(&self.cursor);
        let mut tallies = BTreeMap::new();
        for channel in &self.channels {
            if let Some(base) = self.base.or_else(|| positions.get(channel).map(|p| p.seq + 1)) {
                tallies.insert(channel.clone(), Tally::new(base));
            }
        }
        let paused = self.pause.is_some();
        let mut client = Client {
            stop: self.stop.clone(),
            pause: self.pause.clone(),
            follow: self,
            observer,
            positions,
            tallies,
            cursor: None,
            ready: false,
        };
        let mut reconnects = 0;
        loop {
            let result = match client.follow.transport {
                Transport::WebSocket => client.websocket().await,
                Transport::Sse => client.sse().await,
                Transport::LongPoll => client.poll(true).await,
                Transport::Poll => client.poll(false).await,
                Transport::WebTransport => client.webtransport().await,
            };
            match result {
                Ok(()) => break,
                Err(e) if !client.ready && client.follow.fail_fast => {
                    client.observer.on(Event::Failed(&e));
                    break;
                }
                Err(_) if client.stopped() => break,
                Err(e) => {
                    // Lost: resume from the position, as a real client would.
                    reconnects += 1;
                    client.observer.on(Event::Lost(&e));
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Followed { channels: client.tallies, connected: client.ready, paused, reconnects }
    }
}

/// Where a follower is on a channel.
#[derive(Debug, Clone)]
struct Position {
    epoch: Option<String>,
    seq: u64,
}

/// `channel:seq[:epoch]`, comma-separated.
fn parse_cursor(cursor: &str) -> BTreeMap<String, Position> {
    let mut positions = BTreeMap::new();
    for entry in cursor.split(',').filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(3, ':');
        if let (Some(channel), Some(Ok(seq))) = (parts.next(), parts.next().map(str::parse)) {
            positions.insert(channel.to_string(), Position { epoch: parts.next().map(str::to_string), seq });
        }
    }
    positions
}

struct Client<'o, O> {
    follow: Follow,
    observer: &'o mut O,
    stop: watch::Receiver<Stop>,
    pause: Option<watch::Receiver<bool>>,
    /// Per channel, where the follower is.
    positions: BTreeMap<String, Position>,
    tallies: BTreeMap<String, Tally>,
    /// The cursor the server gave last (an SSE event id, a poll answer's).
    cursor: Option<String>,
    /// Whether the first connection came up.
    ready: bool,
}

/// What a follower waits for besides its connection.
enum Signal {
    /// It should end.
    End,
    /// Its pause begins.
    Pause,
    /// Neither: it goes on.
    Nothing,
}

/// What a message's `data` is read into: nothing, or a JSON value.
trait Data: DeserializeOwned {
    fn value(&self) -> Option<&Value>;
}

impl Data for IgnoredAny {
    fn value(&self) -> Option<&Value> {
        None
    }
}

impl Data for Value {
    fn value(&self) -> Option<&Value> {
        Some(self)
    }
}

/// A server frame, as far as a follower reads it.
#[derive(Deserialize)]
struct Frame<D> {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    ts: u64,
    #[serde(default)]
    epoch: Option<String>,
    /// Missing: `None` (serde reads a missing `Option` so).
    data: Option<D>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Message,
    Reset,
    Subscribed,
    #[serde(other)]
    Other,
}

/// A poll or long-poll answer.
#[derive(Deserialize)]
struct Answer<D> {
    messages: Vec<Frame<D>>,
    #[serde(default)]
    resets: Vec<Frame<IgnoredAny>>,
    cursor: String,
}

/// `future`, or an error once `idle` passes first.
async fn within<T>(idle: Option<Duration>, future: impl Future<Output = T>) -> Result<T, String> {
    match idle {
        Some(idle) => timeout(idle, future).await.map_err(|_| format!("nothing for {} ms", idle.as_millis())),
        None => Ok(future.await),
    }
}

impl<O: Observer> Client<'_, O> {
    /// The lowest seq held across the tallied channels.
    fn last(&self) -> u64 {
        self.tallies.values().map(|t| t.last).min().unwrap_or(0)
    }

    fn stopped(&self) -> bool {
        self.stop.borrow().reached(self.last())
    }

    /// Waits for the stop signal to change or, for a follower given a pause
    /// signal, for its pause to begin.
    async fn signal(&mut self) -> Signal {
        let (stop, pause) = (&mut self.stop, &mut self.pause);
        let pause_begins = async {
            let begun = match pause {
                Some(pause) => pause.wait_for(|&on| on).await.is_ok(),
                None => false,
            };
            if !begun {
                // No pause signal, or one that is gone: it will not come on again.
                std::future::pending::<()>().await;
            }
        };
        let stop_changes = async {
            if stop.changed().await.is_err() {
                // A stop signal that is gone stays as it was.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = stop_changes => if self.stopped() { Signal::End } else { Signal::Nothing },
            () = pause_begins => Signal::Pause,
        }
    }

    /// Reads and asks nothing until the pause is over, or the run.
    async fn sit_out(&mut self) {
        let (stop, pause) = (&mut self.stop, &mut self.pause);
        if let Some(pause) = pause {
            tokio::select! {
                _ = pause.wait_for(|&on| !on) => {}
                _ = stop.wait_for(|&s| s == Stop::Now) => {}
            }
        }
    }

    fn announce(&mut self) {
        if !self.ready {
            self.ready = true;
            self.observer.on(Event::Ready);
        }
    }

    /// The follower's own positions, as a cursor.
    fn own_cursor(&self) -> String {
        let entries: Vec<String> = self
            .positions
            .iter()
            .map(|(channel, p)| match &p.epoch {
                Some(epoch) => format!("{channel}:{}:{epoch}", p.seq),
                None => format!("{channel}:{}", p.seq),
            })
            .collect();
        entries.join(",")
    }

    /// The query of a request: the channels, and the cursor (the server's, when `server_cursor`).
    fn query(&self, server_cursor: bool) -> String {
        let cursor = match &self.cursor {
            Some(cursor) if server_cursor => cursor.clone(),
            _ => self.own_cursor(),
        };
        let channels = self.follow.channels.join(",");
        if cursor.is_empty() {
            format!("?channels={channels}")
        } else {
            format!("?channels={channels}&cursor={cursor}")
        }
    }

    fn tally(&mut self, channel: &str, fallback: u64) -> &mut Tally {
        let base = self.follow.base.unwrap_or(fallback);
        self.tallies.entry(channel.to_string()).or_insert_with(|| Tally::new(base))
    }

    /// Reads one frame of a stream, in `encoding`.
    fn frame(&mut self, bytes: &[u8], encoding: Encoding) {
        let read = if self.follow.keep_data {
            encoding.decode::<Frame<Value>>(bytes).map(|f| self.on_frame(f))
        } else {
            encoding.decode::<Frame<IgnoredAny>>(bytes).map(|f| self.on_frame(f))
        };
        if let Err(e) = read {
            self.observer.on(Event::Error(&format!("a {} frame that does not read: {e}", encoding.name())));
        }
    }

    fn on_frame<D: Data>(&mut self, frame: Frame<D>) {
        let only = || (self.follow.channels.len() == 1).then(|| self.follow.channels[0].clone());
        let Some(channel) = frame.channel.or_else(only) else { return };
        let (seq, epoch) = (frame.seq, frame.epoch.unwrap_or_default());
        match frame.kind {
            Kind::Message => {
                self.positions.entry(channel.clone()).or_insert(Position { epoch: None, seq }).seq = seq;
                self.tally(&channel, seq).record(seq);
                let data = frame.data.as_ref().and_then(Data::value);
                self.observer.on(Event::Message { channel: &channel, seq, ts: frame.ts, data });
            }
            Kind::Subscribed => {
                self.start(&channel, seq, epoch);
                self.announce();
            }
            Kind::Reset => {
                self.positions.insert(channel.clone(), Position { epoch: Some(epoch.clone()), seq });
                self.tally(&channel, seq + 1).reset(seq);
                self.observer.on(Event::Reset { channel: &channel, seq, epoch: &epoch });
            }
            Kind::Other => {}
        }
    }

    /// Where the server says the follower is on `channel`: its start, unless
    /// it has a position there (a resumed subscription: the position is its own).
    fn start(&mut self, channel: &str, seq: u64, epoch: String) {
        match self.positions.get_mut(channel) {
            Some(position) => {
                position.epoch.get_or_insert(epoch);
            }
            None => {
                self.tally(channel, seq + 1);
                self.observer.on(Event::Subscribed { channel, seq, epoch: &epoch });
                self.positions.insert(channel.to_string(), Position { epoch: Some(epoch), seq });
            }
        }
    }

    async fn websocket(&mut self) -> Result<(), String> {
        let (target, idle) = (&self.follow.target, self.follow.idle);
        let connecting = target.connect(self.follow.index, &self.follow.meter);
        let io = within(idle, connecting).await?.map_err(|e| e.to_string())?;
        let url = format!("ws://{}/ws{}", target.authority, self.query(false));
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        if let Some(authorization) = target.authorization() {
            let value = authorization.parse().map_err(|_| "the token is not a valid header value".to_string())?;
            headers.insert("authorization", value);
        }
        let Variant { compression, encoding } = self.follow.variant;
        // unwrap (both): constant, valid header values.
        if compression == Compression::On {
            headers.insert("sec-websocket-extensions", DEFLATE_OFFER.parse().unwrap());
        }
        if encoding == Encoding::Msgpack {
            // tungstenite fails the handshake when the answer names no subprotocol.
            headers.insert("sec-websocket-protocol", MSGPACK_PROTOCOL.parse().unwrap());
        }
        let io = Inflating::new(io, compression == Compression::On);
        let handshake = tokio_tungstenite::client_async_with_config(request, io, Some(ws_config()));
        let (mut ws, response) = within(idle, handshake).await?.map_err(|e| match encoding {
            Encoding::Msgpack => format!("{e} (asked for the subprotocol {MSGPACK_PROTOCOL})"),
            Encoding::Json => e.to_string(),
        })?;
        self.observer.on(Event::Request);
        if response
            .headers()
            .get("sec-websocket-extensions")
            .is_some_and(|v| v.as_bytes().starts_with(b"permessage-deflate"))
        {
            self.observer.on(Event::Compressed);
        }
        let result = self.websocket_frames(&mut ws, encoding).await;
        self.observer.on(Event::CompressedMessages(ws.get_ref().compressed_messages()));
        result
    }

    async fn websocket_frames<S>(&mut self, ws: &mut WebSocketStream<S>, encoding: Encoding) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let idle = self.follow.idle;
        loop {
            if self.stopped() {
                // A clean close, so that both ends count the same bytes.
                let _ = ws.close(None).await;
                let _ = timeout(Duration::from_secs(1), async { while ws.next().await.is_some() {} }).await;
                return Ok(());
            }
            tokio::select! {
                signal = self.signal() => match signal {
                    Signal::End | Signal::Nothing => continue,
                    Signal::Pause => self.sit_out().await,
                },
                frame = within(idle, ws.next()) => match frame? {
                    Some(Ok(WsMessage::Text(text))) => self.frame(text.as_bytes(), Encoding::Json),
                    Some(Ok(WsMessage::Binary(bytes))) => self.frame(&bytes, encoding),
                    Some(Ok(WsMessage::Close(close))) => return Err(format!("closed by the server: {close:?}")),
                    Some(Ok(_)) => {} // pings are answered by tungstenite
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("connection ended".into()),
                },
            }
        }
    }

    async fn webtransport(&mut self) -> Result<(), String> {
        let quic = self.follow.quic.clone().ok_or("WebTransport was not discovered")?;
        let encoding = self.follow.variant.encoding;
        let format = if encoding == Encoding::Msgpack { "&format=msgpack" } else { "" };
        let mut session = quic.open(self.follow.index, &format!("{}{format}", self.query(false))).await?;
        self.observer.on(Event::Request);
        let result = self.webtransport_frames(&mut session.recv, encoding).await;
        if result.is_ok() {
            // A normal close, as the WebSocket client's.
            session.connection.close(wtransport::VarInt::from_u32(1000), b"");
        }
        let quic = session.connection.quic_connection().stats();
        self.follow.meter.add(quic.udp_rx.bytes, quic.udp_tx.bytes);
        result
    }

    async fn webtransport_frames(
        &mut self,
        recv: &mut wtransport::RecvStream,
        encoding: Encoding,
    ) -> Result<(), String> {
        let mut frames = Frames::new(encoding);
        let mut buffer = vec![0; 4096];
        let idle = self.follow.idle;
        loop {
            if self.stopped() {
                return Ok(());
            }
            tokio::select! {
                signal = self.signal() => match signal {
                    Signal::End | Signal::Nothing => continue,
                    Signal::Pause => self.sit_out().await,
                },
                read = within(idle, recv.read(&mut buffer)) => match read? {
                    Ok(Some(n)) => frames.feed(&buffer[..n], |frame| self.frame(frame, encoding))?,
                    Ok(None) => return Err("the server ended the stream".into()),
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    async fn sse(&mut self) -> Result<(), String> {
        let mut http = HttpClient::new(self.follow.target.clone(), self.follow.index, self.follow.meter.clone());
        let mut request = self.follow.target.request(Method::GET, &format!("/sse{}", self.query(true)), Bytes::new());
        // unwrap: a constant, valid header value.
        request.headers_mut().insert("accept", "text/event-stream".parse().unwrap());
        self.ask_compression(&mut request);
        let response = within(self.follow.idle, http.send(request)).await??;
        self.observer.on(Event::Request);
        if !response.status().is_success() {
            let why = format!("/sse answered {}", response.status());
            self.observer.on(Event::Error(&why));
            return Err(why);
        }
        let mut gzip = self.gzip(&response)?.then(GzipStream::new);
        let mut body = response.into_body();
        let mut events = SseParser::default();
        let idle = self.follow.idle;
        loop {
            if self.stopped() {
                return Ok(());
            }
            tokio::select! {
                signal = self.signal() => match signal {
                    Signal::End | Signal::Nothing => continue,
                    Signal::Pause => self.sit_out().await,
                },
                frame = within(idle, body.frame()) => match frame? {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else { continue };
                        let data = match &mut gzip {
                            Some(gzip) => gzip.feed(&data).map_err(|e| format!("gzip: {e}"))?,
                            None => &data[..],
                        };
                        events.feed(data, |event| {
                            self.frame(event.data.as_bytes(), Encoding::Json);
                            if let Some(id) = event.id {
                                self.cursor = Some(id.to_string());
                            }
                        });
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("stream ended".into()),
                },
            }
        }
    }

    /// Long polling (`long`) or short polling, on one keep-alive connection.
    async fn poll(&mut self, long: bool) -> Result<(), String> {
        let mut http = HttpClient::new(self.follow.target.clone(), self.follow.index, self.follow.meter.clone());
        http.open().await.map_err(|e| e.to_string())?;
        self.announce();
        let path = if long { "/long-poll" } else { "/poll" };
        let held = match self.follow.long_poll_timeout {
            Some(timeout) if long => format!("&timeout={}", timeout.as_secs()),
            _ => String::new(),
        };
        // Short polls start at a random phase, so that clients do not ask all at once.
        let interval = self.follow.poll_interval;
        let mut tick = interval_at(Instant::now() + interval.mul_f64(fastrand::f64()), interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.stopped() {
                return Ok(());
            }
            if !long {
                tokio::select! {
                    signal = self.signal() => match signal {
                        Signal::End => return Ok(()),
                        Signal::Pause => { self.sit_out().await; continue }
                        Signal::Nothing => continue,
                    },
                    _ = tick.tick() => {}
                }
            }
            let mut request =
                self.follow.target.request(Method::GET, &format!("{path}{}{held}", self.query(true)), Bytes::new());
            self.ask_compression(&mut request);
            if self.follow.variant.encoding == Encoding::Msgpack {
                // unwrap: a constant, valid header value.
                request.headers_mut().insert("accept", MSGPACK_TYPE.parse().unwrap());
            }
            let answer = http.send(request);
            tokio::pin!(answer);
            // A held long poll is given up once the client is done; a short
            // poll is answered at once, and read, so both ends count its bytes.
            let answer = loop {
                tokio::select! {
                    answer = &mut answer => break answer,
                    signal = self.signal(), if long => match signal {
                        Signal::End => return Ok(()),
                        Signal::Pause => self.sit_out().await,
                        Signal::Nothing => {}
                    },
                }
            };
            if let Err(e) = self.answer(answer).await {
                tracing::debug!(transport = path, error = %e, "poll failed");
                self.observer.on(Event::Error(&e));
                sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn answer(&mut self, response: Result<hyper::Response<hyper::body::Incoming>, String>) -> Result<(), String> {
        let response = response?;
        self.observer.on(Event::Request);
        let status = response.status();
        let gzip = self.gzip(&response)?;
        let msgpack =
            response.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(MSGPACK_TYPE.as_bytes()));
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status != 200 {
            return Err(format!("answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        let body = if gzip { gunzip(&body).map_err(|e| format!("gzip: {e}"))?.into() } else { body };
        let encoding = self.follow.variant.encoding;
        if encoding == Encoding::Msgpack && !msgpack {
            return Err(format!("asked for {MSGPACK_TYPE}, answered otherwise"));
        }
        let read = if self.follow.keep_data {
            encoding.decode::<Answer<Value>>(&body).map(|a| self.on_answer(a))
        } else {
            encoding.decode::<Answer<IgnoredAny>>(&body).map(|a| self.on_answer(a))
        };
        read.map_err(|e| format!("not a poll answer: {e}"))
    }

    fn on_answer<D: Data>(&mut self, answer: Answer<D>) {
        if answer.messages.is_empty() {
            self.observer.on(Event::EmptyPoll);
        }
        for reset in answer.resets {
            self.on_frame(reset);
        }
        for message in answer.messages {
            self.on_frame(message);
        }
        // The answer's cursor is where to go on; it names every channel.
        for (channel, position) in parse_cursor(&answer.cursor) {
            match self.positions.get_mut(&channel) {
                Some(own) => *own = position,
                // The first answer says where this follower starts, as `subscribed` does.
                None => self.start(&channel, position.seq, position.epoch.unwrap_or_default()),
            }
        }
        self.cursor = Some(answer.cursor);
    }

    /// `Accept-Encoding: gzip` when the run asks for compression.
    fn ask_compression(&self, request: &mut hyper::Request<http_body_util::Full<Bytes>>) {
        if self.follow.variant.compression == Compression::On {
            // unwrap: a constant, valid header value.
            request.headers_mut().insert("accept-encoding", "gzip".parse().unwrap());
        }
    }

    /// Whether an answer comes in gzip (counted), or an error for a coding
    /// the client did not ask for.
    fn gzip<B>(&mut self, response: &hyper::Response<B>) -> Result<bool, String> {
        match response.headers().get("content-encoding").map(|v| v.to_str().unwrap_or("?")) {
            None | Some("identity") => Ok(false),
            Some("gzip") if self.follow.variant.compression == Compression::On => {
                self.observer.on(Event::Compressed);
                Ok(true)
            }
            Some(other) => Err(format!("answered in Content-Encoding {other}, which was not asked for")),
        }
    }
}

/// Small buffers: a load generator holds thousands of these (tungstenite's
/// defaults are 128 KiB for reading, plus an unbounded write buffer).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0).max_write_buffer_size(64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_waits_for_the_last_seq() {
        assert!(!Stop::Running.reached(100));
        assert!(!Stop::After(10).reached(9));
        assert!(Stop::After(10).reached(10));
        assert!(Stop::Now.reached(0));
    }

    #[test]
    fn cursors_read_per_channel_with_or_without_an_epoch() {
        let positions = parse_cursor("a:3:e1,b:7,,bad");
        assert_eq!(positions.len(), 2);
        assert_eq!((positions["a"].seq, positions["a"].epoch.as_deref()), (3, Some("e1")));
        assert_eq!((positions["b"].seq, positions["b"].epoch.as_deref()), (7, None));
    }
}
