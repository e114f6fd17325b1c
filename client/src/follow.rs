//! One client loop per transport, as an ordinary client of API.md would
//! run it: WebSocket and SSE hold one stream, long polling asks again as
//! soon as it is answered, short polling asks every `--poll-interval`. Every
//! client starts from the channel's position before the first publish, so a
//! late connection catches up instead of missing messages, and a lost one
//! resumes from its cursor. A client ends once it holds the last published
//! seq, or when told to stop. A client picked to stall (`--stall`) reads
//! nothing while the stall signal is on: it neither reads its socket nor asks.
//! Each asks for the run's compression and encoding (`negotiate`) and reads
//! whatever the server chose to send: compressed or not, JSON or MessagePack.
//! WebTransport follows its channel as WebSocket does, over the stream the
//! server opens (`webtransport`); it has no compression to ask for.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::inflate::{DEFLATE_OFFER, GzipStream, Inflating, gunzip};
use super::lane::{Lane, Tally};
use super::negotiate::{Compression, Encoding, MSGPACK_PROTOCOL, MSGPACK_TYPE, Variant};
use super::net::{HttpClient, Target};
use super::webtransport::{Frames, Quic};
use pushwire::Transport;

/// When clients end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Publishing goes on.
    Running,
    /// Publishing is over and this was the last seq published: a client
    /// that holds it has everything it will get.
    After(u64),
    /// The drain time is over.
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

/// What every client of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub target: Arc<Target>,
    pub channel: String,
    /// The channel's position before the first publish: every client starts there.
    pub cursor: String,
    pub poll_interval: Duration,
    pub stop: watch::Receiver<Stop>,
    /// On while the clients picked to stall read nothing.
    pub stall: watch::Receiver<bool>,
    /// The compression and encoding asked for.
    pub variant: Variant,
    /// Where WebTransport sessions open, when the run has any.
    pub quic: Option<Quic>,
}

/// A client's first word to the run: subscribed (or connected, for polls), or why not.
pub type Ready = Result<(), String>;

/// Runs client `index` of `lane` (one that `stalls`, or not) until it is
/// told to stop; returns what it received.
pub async fn run(
    lane: Arc<Lane>,
    shared: Arc<Shared>,
    (index, stalls): (usize, bool),
    base: u64,
    ready: mpsc::UnboundedSender<Ready>,
) -> Tally {
    let mut tally = Tally::new(base);
    tally.stalled = stalls;
    let mut client = Client {
        stop: shared.stop.clone(),
        stall: stalls.then(|| shared.stall.clone()),
        cursor: shared.cursor.clone(),
        epoch: None,
        lane,
        shared,
        index,
        tally,
        ready: Some(ready),
    };
    loop {
        let result = match client.lane.transport {
            Transport::WebSocket => client.websocket().await,
            Transport::Sse => client.sse().await,
            Transport::LongPoll => client.poll(true).await,
            Transport::Poll => client.poll(false).await,
            Transport::WebTransport => client.webtransport().await,
        };
        match result {
            Ok(()) => break,
            Err(e) if client.ready.is_some() => {
                client.announce(Err(e));
                break;
            }
            Err(_) if client.stopped() => break,
            Err(_) => {
                // Lost mid-run: resume from the cursor, as a real client would.
                Lane::count(&client.lane.reconnects);
                client.tally.reconnects += 1;
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
    client.tally
}

struct Client {
    lane: Arc<Lane>,
    shared: Arc<Shared>,
    index: usize,
    tally: Tally,
    stop: watch::Receiver<Stop>,
    /// The stall signal, for a client picked to stall.
    stall: Option<watch::Receiver<bool>>,
    /// Where to resume: the start position, then what the server handed out.
    cursor: String,
    /// The channel's epoch, from `subscribed` (WebSocket builds its own cursor).
    epoch: Option<String>,
    ready: Option<mpsc::UnboundedSender<Ready>>,
}

/// What a client waits for besides its connection.
enum Signal {
    /// The client should end.
    End,
    /// Its stall begins.
    Stall,
    /// Neither: the run goes on.
    Nothing,
}

/// A server frame, as far as the bench reads it (`data` is skipped).
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    ts: u64,
    #[serde(default)]
    epoch: Option<String>,
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
struct Answer {
    messages: Vec<Frame>,
    #[serde(default)]
    resets: Vec<IgnoredAny>,
    cursor: String,
}

impl Client {
    fn stopped(&self) -> bool {
        self.stop.borrow().reached(self.tally.last)
    }

    /// Waits for the stop signal to change or, for a client picked to
    /// stall, for its stall to begin.
    async fn signal(&mut self) -> Signal {
        let (stop, stall) = (&mut self.stop, &mut self.stall);
        let stall_begins = async {
            let begun = match stall {
                Some(stall) => stall.wait_for(|&on| on).await.is_ok(),
                None => false,
            };
            if !begun {
                // Not a stalling client, or a signal that is gone: it will not come on again.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || self.stopped() { Signal::End } else { Signal::Nothing }
            }
            () = stall_begins => Signal::Stall,
        }
    }

    /// Reads and asks nothing until the stall is over, or the run.
    async fn sit_out(&mut self) {
        let (stop, stall) = (&mut self.stop, &mut self.stall);
        if let Some(stall) = stall {
            tokio::select! {
                _ = stall.wait_for(|&on| !on) => {}
                _ = stop.wait_for(|&s| s == Stop::Now) => {}
            }
        }
    }

    fn announce(&mut self, ready: Ready) {
        if let Some(tx) = self.ready.take() {
            self.tally.connected = ready.is_ok();
            let _ = tx.send(ready);
        }
    }

    fn query(&self) -> String {
        format!("?channels={}&cursor={}", self.shared.channel, self.cursor)
    }

    /// Counts one frame of a stream, in `encoding`.
    fn frame(&mut self, bytes: &[u8], encoding: Encoding) {
        let frame = match encoding.decode::<Frame>(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                self.lane.failed(format!("a {} frame that does not read: {e}", encoding.name()));
                return;
            }
        };
        match frame.kind {
            Kind::Message => self.lane.delivered(&mut self.tally, frame.seq, frame.ts),
            Kind::Subscribed => {
                self.epoch = frame.epoch;
                self.announce(Ok(()));
            }
            Kind::Reset => {
                self.epoch = frame.epoch;
                Lane::count(&self.lane.resets);
            }
            Kind::Other => {}
        }
    }

    async fn websocket(&mut self) -> Result<(), String> {
        if let Some(epoch) = &self.epoch {
            // Resuming: everything up to the last seq received is here.
            self.cursor = format!("{}:{}:{epoch}", self.shared.channel, self.tally.last);
        }
        let target = &self.shared.target;
        let io = target.connect(self.index, &self.lane.meter).await.map_err(|e| e.to_string())?;
        let url = format!("ws://{}/ws{}", target.authority, self.query());
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        if let Some(authorization) = target.authorization() {
            let value = authorization.parse().map_err(|_| "the token is not a valid header value".to_string())?;
            headers.insert("authorization", value);
        }
        let Variant { compression, encoding } = self.shared.variant;
        // unwrap (both): constant, valid header values.
        if compression == Compression::On {
            headers.insert("sec-websocket-extensions", DEFLATE_OFFER.parse().unwrap());
        }
        if encoding == Encoding::Msgpack {
            // tungstenite fails the handshake when the answer names no subprotocol.
            headers.insert("sec-websocket-protocol", MSGPACK_PROTOCOL.parse().unwrap());
        }
        let io = Inflating::new(io, compression == Compression::On);
        let (mut ws, response) = tokio_tungstenite::client_async_with_config(request, io, Some(ws_config()))
            .await
            .map_err(|e| match encoding {
                Encoding::Msgpack => format!("{e} (asked for the subprotocol {MSGPACK_PROTOCOL})"),
                Encoding::Json => e.to_string(),
            })?;
        Lane::count(&self.lane.requests);
        if response
            .headers()
            .get("sec-websocket-extensions")
            .is_some_and(|v| v.as_bytes().starts_with(b"permessage-deflate"))
        {
            Lane::count(&self.lane.compressed);
        }
        let result = self.websocket_frames(&mut ws, encoding).await;
        self.lane.compressed_messages.fetch_add(ws.get_ref().compressed_messages(), Ordering::Relaxed);
        result
    }

    async fn websocket_frames<S>(&mut self, ws: &mut WebSocketStream<S>, encoding: Encoding) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
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
                    Signal::Stall => self.sit_out().await,
                },
                frame = ws.next() => match frame {
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
        if let Some(epoch) = &self.epoch {
            // Resuming, as WebSocket does.
            self.cursor = format!("{}:{}:{epoch}", self.shared.channel, self.tally.last);
        }
        let shared = self.shared.clone();
        let quic = shared.quic.as_ref().ok_or("WebTransport was not discovered")?;
        let encoding = shared.variant.encoding;
        let format = if encoding == Encoding::Msgpack { "&format=msgpack" } else { "" };
        let mut session = quic.open(self.index, &format!("{}{format}", self.query())).await?;
        Lane::count(&self.lane.requests);
        let result = self.webtransport_frames(&mut session.recv, encoding).await;
        if result.is_ok() {
            // A normal close, as the WebSocket client's.
            session.connection.close(wtransport::VarInt::from_u32(1000), b"");
        }
        let quic = session.connection.quic_connection().stats();
        self.lane.meter.add(quic.udp_rx.bytes, quic.udp_tx.bytes);
        result
    }

    async fn webtransport_frames(
        &mut self,
        recv: &mut wtransport::RecvStream,
        encoding: Encoding,
    ) -> Result<(), String> {
        let mut frames = Frames::new(encoding);
        let mut buffer = vec![0; 4096];
        loop {
            if self.stopped() {
                return Ok(());
            }
            tokio::select! {
                signal = self.signal() => match signal {
                    Signal::End | Signal::Nothing => continue,
                    Signal::Stall => self.sit_out().await,
                },
                read = recv.read(&mut buffer) => match read {
                    Ok(Some(n)) => frames.feed(&buffer[..n], |frame| self.frame(frame, encoding))?,
                    Ok(None) => return Err("the server ended the stream".into()),
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    async fn sse(&mut self) -> Result<(), String> {
        let mut http = HttpClient::new(self.shared.target.clone(), self.index, self.lane.meter.clone());
        let mut request = self.shared.target.request(Method::GET, &format!("/sse{}", self.query()), Bytes::new());
        // unwrap: a constant, valid header value.
        request.headers_mut().insert("accept", "text/event-stream".parse().unwrap());
        self.ask_compression(&mut request);
        let response = http.send(request).await?;
        Lane::count(&self.lane.requests);
        if !response.status().is_success() {
            let why = format!("/sse answered {}", response.status());
            self.lane.failed(why.clone());
            return Err(why);
        }
        let mut gzip = self.gzip(&response)?.then(GzipStream::new);
        let mut body = response.into_body();
        let mut events = SseParser::default();
        loop {
            if self.stopped() {
                return Ok(());
            }
            tokio::select! {
                signal = self.signal() => match signal {
                    Signal::End | Signal::Nothing => continue,
                    Signal::Stall => self.sit_out().await,
                },
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else { continue };
                        let data = match &mut gzip {
                            Some(gzip) => gzip.feed(&data).map_err(|e| format!("gzip: {e}"))?,
                            None => &data[..],
                        };
                        events.feed(data, |event| {
                            self.frame(event.data.as_bytes(), Encoding::Json);
                            if let Some(id) = event.id {
                                self.cursor.clear();
                                self.cursor.push_str(id);
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
        let mut http = HttpClient::new(self.shared.target.clone(), self.index, self.lane.meter.clone());
        http.open().await.map_err(|e| e.to_string())?;
        self.announce(Ok(()));
        let path = if long { "/long-poll" } else { "/poll" };
        // Short polls start at a random phase, so that clients do not ask all at once.
        let interval = self.shared.poll_interval;
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
                        Signal::Stall => { self.sit_out().await; continue }
                        Signal::Nothing => continue,
                    },
                    _ = tick.tick() => {}
                }
            }
            let mut request = self.shared.target.request(Method::GET, &format!("{path}{}", self.query()), Bytes::new());
            self.ask_compression(&mut request);
            if self.shared.variant.encoding == Encoding::Msgpack {
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
                        Signal::Stall => self.sit_out().await,
                        Signal::Nothing => {}
                    },
                }
            };
            if let Err(e) = self.answer(answer).await {
                tracing::debug!(transport = path, error = %e, "poll failed");
                self.lane.failed(e);
                sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn answer(&mut self, response: Result<hyper::Response<hyper::body::Incoming>, String>) -> Result<(), String> {
        let response = response?;
        Lane::count(&self.lane.requests);
        let status = response.status();
        let gzip = self.gzip(&response)?;
        let msgpack =
            response.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(MSGPACK_TYPE.as_bytes()));
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status != 200 {
            return Err(format!("answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        let body = if gzip { gunzip(&body).map_err(|e| format!("gzip: {e}"))?.into() } else { body };
        let encoding = self.shared.variant.encoding;
        if encoding == Encoding::Msgpack && !msgpack {
            return Err(format!("asked for {MSGPACK_TYPE}, answered otherwise"));
        }
        let answer: Answer = encoding.decode(&body).map_err(|e| format!("not a poll answer: {e}"))?;
        if answer.messages.is_empty() {
            Lane::count(&self.lane.empty_polls);
        }
        for _ in &answer.resets {
            Lane::count(&self.lane.resets);
        }
        for message in answer.messages {
            self.lane.delivered(&mut self.tally, message.seq, message.ts);
        }
        self.cursor = answer.cursor;
        Ok(())
    }

    /// `Accept-Encoding: gzip` when the run asks for compression.
    fn ask_compression(&self, request: &mut hyper::Request<http_body_util::Full<Bytes>>) {
        if self.shared.variant.compression == Compression::On {
            // unwrap: a constant, valid header value.
            request.headers_mut().insert("accept-encoding", "gzip".parse().unwrap());
        }
    }

    /// Whether an answer comes in gzip (counted), or an error for a coding
    /// the client did not ask for.
    fn gzip<B>(&self, response: &hyper::Response<B>) -> Result<bool, String> {
        match response.headers().get("content-encoding").map(|v| v.to_str().unwrap_or("?")) {
            None | Some("identity") => Ok(false),
            Some("gzip") if self.shared.variant.compression == Compression::On => {
                Lane::count(&self.lane.compressed);
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

/// One SSE event: its `data` (lines joined) and its `id`, if any.
struct SseEvent<'a> {
    data: &'a str,
    id: Option<&'a str>,
}

/// Reads `text/event-stream` as it arrives in arbitrary pieces.
#[derive(Default)]
struct SseParser {
    /// An incomplete line.
    partial: Vec<u8>,
    data: String,
    id: Option<String>,
}

impl SseParser {
    /// Feeds bytes; calls `on_event` for each event they complete.
    fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let joined;
            let line = if self.partial.is_empty() {
                &rest[..end]
            } else {
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(&rest[..end]);
                joined = partial;
                &joined[..]
            };
            rest = &rest[end + 1..];
            self.line(&String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)), &mut on_event);
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &str, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            if !self.data.is_empty() {
                on_event(SseEvent { data: &self.data, id: self.id.as_deref() });
            }
            self.data.clear();
            self.id = None;
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            "id" => self.id = Some(value.to_string()),
            _ => {} // event (the type is in the data too), retry, comments
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_read_across_any_split() {
        let stream = b": hello\nretry: 2000\n\nevent: subscribed\ndata: {\"a\":1}\n\nid: c:1:e\r\nevent: message\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut seen = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                parser.feed(part, |e| seen.push((e.data.to_string(), e.id.map(str::to_string))));
            }
            assert_eq!(
                seen,
                [("{\"a\":1}".to_string(), None), ("{\"b\":\n2}".to_string(), Some("c:1:e".to_string()))],
                "split at {split}"
            );
        }
    }

    #[test]
    fn stopping_waits_for_the_last_seq() {
        assert!(!Stop::Running.reached(100));
        assert!(!Stop::After(10).reached(9));
        assert!(Stop::After(10).reached(10));
        assert!(Stop::Now.reached(0));
    }
}
