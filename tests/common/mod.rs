//! Test harness: a real pushwire server on port 0, and real clients for each
//! transport (tokio-tungstenite, reqwest reading the raw SSE stream).

pub mod browser;
pub mod follow;
pub mod h2raw;
pub mod nginx;
pub mod redis_cluster;
pub mod redis_server;
pub mod relay;
pub mod wsraw;
pub use redis_cluster::{RedisCluster, fresh_prefix, shared_cluster};
pub use redis_server::RedisServer;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use pushwire::config::Config;
use pushwire::hub::{HistoryLimits, Hub, MemoryHub};
use pushwire::server::Running;

/// How long a test waits for something that should happen. Generous, since
/// it only bounds a failure; nothing waits this long when things work.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Which hub the server under test runs on. Every transport test runs
/// against each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubKind {
    Memory,
    Redis,
    /// The Redis hub on the binary's shared Redis Cluster (3 shards).
    Cluster,
}

pub struct TestApp {
    /// The Redis server behind a Redis hub, stopped with the app.
    pub redis: Option<RedisServer>,
    pub addr: SocketAddr,
    /// `--base-path` as a prefix (`""` or `/pushwire`): [`TestApp::url`] adds it.
    pub base: String,
    pub handle: actix_server::ServerHandle,
    pub state: pushwire::AppState,
    pub http: reqwest::Client,
}

/// Default config for tests: no demo publisher, one worker.
pub fn test_config() -> Config {
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.demo_rate = 0.0;
    config.workers = Some(1);
    config
}

/// What a hub under test keeps its data in.
pub enum Backing {
    Memory,
    /// A private redis-server, stopped when dropped.
    Redis(RedisServer),
    /// The shared cluster, under a prefix of this hub's own.
    Cluster {
        prefix: String,
    },
}

/// A hub of `kind` with these history limits, and what backs it.
pub async fn make_hub(kind: HubKind, limits: HistoryLimits) -> (Arc<dyn Hub>, Backing) {
    match kind {
        HubKind::Memory => (MemoryHub::new(limits), Backing::Memory),
        HubKind::Redis => {
            let server = RedisServer::start().await;
            (redis_hub(&server.url(), limits).await, Backing::Redis(server))
        }
        HubKind::Cluster => {
            let prefix = fresh_prefix();
            let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
            (cluster_hub(&cluster.urls(), &prefix, limits, |_| {}).await, Backing::Cluster { prefix })
        }
    }
}

/// A Redis hub on a cluster, given its seed URLs (several apps may share one).
pub async fn cluster_hub(
    urls: &str,
    prefix: &str,
    limits: HistoryLimits,
    configure: impl FnOnce(&mut pushwire::hub::RedisOptions),
) -> Arc<dyn Hub> {
    let mut options = pushwire::hub::RedisOptions::single(urls, prefix, limits);
    options.cluster = true;
    configure(&mut options);
    pushwire::hub::RedisHub::connect_with(options).await.expect("connect the Redis cluster hub")
}

/// A Redis hub on an already running server (several apps may share one).
pub async fn redis_hub(url: &str, limits: HistoryLimits) -> Arc<dyn Hub> {
    pushwire::hub::RedisHub::connect(url, "pwtest", limits).await.expect("connect the Redis hub")
}

/// Starts a server on `hub` (for several instances sharing one Redis).
pub async fn spawn_app_on(hub: Arc<dyn Hub>, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    start_app(config, hub, None)
}

fn start_app(config: Config, hub: Arc<dyn Hub>, redis: Option<RedisServer>) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = config.base_path.prefix().to_owned();
    let Running { addr, state, handle, server, .. } = pushwire::server::start(config, hub, listener).unwrap();
    tokio::spawn(server);
    TestApp { redis, addr, base, handle, state, http: reqwest::Client::new() }
}

pub async fn spawn_app(kind: HubKind) -> TestApp {
    spawn_app_with(kind, |_| {}).await
}

pub async fn spawn_app_with(kind: HubKind, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    let (hub, redis) = match kind {
        HubKind::Memory => (MemoryHub::bounded(config.history_limits(), config.memory_bounds()) as Arc<dyn Hub>, None),
        HubKind::Redis | HubKind::Cluster => match make_hub(kind, config.history_limits()).await {
            (hub, Backing::Redis(server)) => (hub, Some(server)),
            (hub, _) => (hub, None),
        },
    };
    start_app(config, hub, redis)
}

impl TestApp {
    /// A route's URL, under the server's base path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{}", self.addr, self.base, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}{}", self.addr, self.base, path)
    }

    /// Publishes over HTTP; returns the answer (`channel`, `seq`, `ts`, `epoch`).
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        let response =
            self.http.post(self.url(&format!("/channels/{channel}/messages"))).json(&data).send().await.unwrap();
        assert_eq!(response.status(), 201, "publish on {channel}");
        response.json().await.unwrap()
    }

    /// Publishes `n` messages `{"i": k}` for k in 1..=n; returns the last answer.
    pub async fn publish_many(&self, channel: &str, n: u64) -> Value {
        let mut last = Value::Null;
        for i in 1..=n {
            last = self.publish(channel, json!({"i": i})).await;
        }
        last
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    /// The messages of a long-poll answer `first` on `channels`, and of the
    /// long polls that follow it from its cursor, until there are `n`.
    pub async fn long_poll_on(&self, channels: &str, first: Value, n: usize) -> Vec<Value> {
        let mut messages = first["messages"].as_array().unwrap().clone();
        let mut cursor = first["cursor"].as_str().unwrap().to_string();
        while messages.len() < n {
            let (_, more) = self.get(&format!("/long-poll?channels={channels}&cursor={cursor}&timeout=5")).await;
            messages.extend(more["messages"].as_array().unwrap().iter().cloned());
            cursor = more["cursor"].as_str().unwrap().to_string();
        }
        messages
    }

    /// The status `/readyz` answers.
    pub async fn readyz(&self) -> u16 {
        self.get("/readyz").await.0
    }

    /// Waits until `/readyz` answers `status`.
    pub async fn wait_ready(&self, status: u16) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.readyz().await != status {
            assert!(tokio::time::Instant::now() < deadline, "readyz never became {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One unlabelled sample of `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.split(' ').next() == Some(name));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    pub async fn stats(&self) -> Value {
        self.get("/api/stats").await.1
    }

    /// Waits until `check` holds on `/api/stats`.
    pub async fn wait_stats(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stats = self.stats().await;
            if check(&stats) {
                return stats;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {stats}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn ws(&self, query: &str) -> Ws {
        Ws::connect(&self.ws_url(&format!("/ws{query}"))).await
    }

    pub async fn sse(&self, query: &str) -> Sse {
        Sse::open(&self.http, &self.url(&format!("/sse{query}")), None).await
    }

    /// Connects and writes a hand-made WebSocket upgrade for `path_and_query`
    /// with [`WS_SAMPLE_KEY`], for tests that must count every byte or never
    /// answer a ping, which a WebSocket library would hide or do by itself.
    /// Returns the connection and the exact request sent. `path_and_query`
    /// goes on the wire as given: no base path is added.
    pub async fn raw_upgrade(&self, path_and_query: &str) -> (TcpStream, String) {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.addr
        );
        let mut tcp = timeout(PATIENCE, TcpStream::connect(self.addr)).await.expect("connect timed out").unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        (tcp, request)
    }

    /// What `reader` delivers on `channel` from `cursor` once subscribed: the
    /// first `n` frames of a stream, or all of one poll answer (its resets,
    /// then its messages, as the answer lists them).
    pub async fn read_from(&self, reader: Reader, channel: &str, cursor: &str, n: usize) -> Vec<Delivered> {
        let query = format!("?channels={channel}&cursor={cursor}");
        match reader {
            Reader::WebSocket => {
                let mut ws = self.ws(&query).await;
                ws.handshake(1).await;
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    out.push(Delivered { frame: ws.json().await, cursor: None });
                }
                out
            }
            Reader::Sse | Reader::SseLastEventId => {
                let mut sse = match reader {
                    Reader::Sse => self.sse(&query).await,
                    _ => Sse::open(&self.http, &self.url(&format!("/sse?channels={channel}")), Some(cursor)).await,
                };
                sse.expect("subscribed").await;
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    let event = sse.event().await.expect("stream ended");
                    let frame = event.json();
                    assert_eq!(event.event.as_deref(), frame["type"].as_str(), "event name = frame type: {event:?}");
                    let cursor = event.id.unwrap_or_else(|| panic!("an SSE event carries its cursor as id: {frame}"));
                    out.push(Delivered { frame, cursor: Some(cursor) });
                }
                out
            }
            Reader::LongPoll | Reader::Poll => {
                let path = if reader == Reader::LongPoll { "/long-poll" } else { "/poll" };
                let wait = if reader == Reader::LongPoll { "&timeout=0" } else { "" };
                let (status, answer) = self.get(&format!("{path}{query}{wait}")).await;
                assert_eq!(status, 200, "{path}: {answer}");
                let frames = answer["resets"].as_array().unwrap().iter().chain(answer["messages"].as_array().unwrap());
                let mut out: Vec<_> = frames.map(|f| Delivered { frame: f.clone(), cursor: None }).collect();
                let cursor = answer["cursor"].as_str().unwrap_or_else(|| panic!("{path}: no cursor in {answer}"));
                if let Some(last) = out.last_mut() {
                    last.cursor = Some(cursor.to_string());
                }
                out
            }
        }
    }
}

/// Publishes `data` with the idempotency key `key`, retrying while the
/// server answers 503 (or a proxy 502/504, or nothing answers); returns the 201 answer and how
/// many times it was refused.
pub async fn publish_until_acked(http: &reqwest::Client, url: &str, key: &str, data: &Value) -> (Value, u32) {
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "{url} refused {key} {refused} times");
        // The same key on every retry: a publish whose answer was lost is not stored twice.
        let Ok(response) = http.post(url).header("idempotency-key", key).json(data).send().await else {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match response.status().as_u16() {
            201 => return (response.json::<Value>().await.unwrap(), refused),
            // A proxy that lost the instance mid-request: the answer is lost, the key makes the retry safe.
            502 | 504 => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            503 => {
                assert!(response.headers().contains_key("retry-after"), "503 carries Retry-After");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "unavailable");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
}

/// The sample nonce of RFC 6455 section 1.3 and the accept value it must yield.
pub const WS_SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The ways a client reads a channel from a cursor: one per transport, SSE
/// twice (`?cursor=` as a script resumes, `Last-Event-ID` as a browser does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    WebSocket,
    Sse,
    SseLastEventId,
    LongPoll,
    Poll,
}

impl Reader {
    pub const ALL: [Reader; 5] =
        [Reader::WebSocket, Reader::Sse, Reader::SseLastEventId, Reader::LongPoll, Reader::Poll];
}

/// A frame as a transport delivered it, with the cursor the transport handed
/// out right after it: SSE's `id:` on every event, a poll answer's `cursor` on
/// its last frame. WebSocket hands out none.
#[derive(Debug)]
pub struct Delivered {
    pub frame: Value,
    pub cursor: Option<String>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.state.ctx.shutdown.trigger();
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// A WebSocket client reading JSON text frames.
pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What a WebSocket read ended with when it was not a text frame.
#[derive(Debug)]
pub enum WsEnd {
    Closed(Option<u16>, String),
    Gone(String),
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        let (stream, response) =
            timeout(PATIENCE, tokio_tungstenite::connect_async(url)).await.expect("connect timed out").unwrap();
        assert_eq!(response.status(), 101);
        Ws { stream }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream.send(WsMessage::text(frame.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(WsMessage::text(text.to_string())).await.unwrap();
    }

    /// The next text frame as JSON, or how the socket ended.
    pub async fn next(&mut self) -> Result<Value, WsEnd> {
        loop {
            let frame = timeout(PATIENCE, self.stream.next()).await.expect("no frame within patience");
            match frame {
                Some(Ok(WsMessage::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
                Some(Ok(WsMessage::Close(close))) => {
                    return Err(WsEnd::Closed(
                        close.as_ref().map(|c| c.code.into()),
                        close.map(|c| c.reason.to_string()).unwrap_or_default(),
                    ));
                }
                Some(Ok(_)) => continue, // pings are answered by tungstenite
                Some(Err(e)) => return Err(WsEnd::Gone(e.to_string())),
                None => return Err(WsEnd::Gone("stream ended".into())),
            }
        }
    }

    pub async fn json(&mut self) -> Value {
        self.next().await.expect("socket ended")
    }

    /// The next frame of `type`, failing on any other.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.json().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Reads `n` message frames, asserting nothing else comes between.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.expect("message").await);
        }
        out
    }

    /// Reads the welcome, then one `subscribed` per channel.
    pub async fn handshake(&mut self, channels: usize) -> Vec<Value> {
        self.expect("welcome").await;
        let mut subscribed = Vec::new();
        for _ in 0..channels {
            subscribed.push(self.expect("subscribed").await);
        }
        subscribed
    }

    /// Asserts that no text frame arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(frame) = timeout(wait, self.stream.next()).await {
            panic!("expected silence, got {frame:?}");
        }
    }
}

/// An SSE event or comment, as parsed from the raw stream.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<u64>,
    pub comments: Vec<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("event without data")).unwrap()
    }
}

/// An SSE client that reads the raw stream, comments included; a stream
/// the server gzipped (when the request accepted it) is inflated chunk by
/// chunk, as a browser does.
pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    buf: String,
    pub raw: String,
}

impl Sse {
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = timeout(PATIENCE, request.send()).await.expect("sse open timed out").unwrap();
        let gzipped = response.headers().get("content-encoding").is_some_and(|e| e == "gzip");
        Sse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            gunzip: gzipped.then(|| flate2::write::GzDecoder::new(Vec::new())),
            buf: String::new(),
            raw: String::new(),
        }
    }

    /// The next block (event or comment-only), or `None` at end of stream.
    pub async fn block(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            match timeout(PATIENCE, self.body.next()).await.expect("no SSE data within patience") {
                Some(Ok(bytes)) => {
                    let bytes = match &mut self.gunzip {
                        None => bytes.to_vec(),
                        Some(gunzip) => {
                            use std::io::Write;
                            gunzip.write_all(&bytes).unwrap();
                            gunzip.flush().unwrap();
                            std::mem::take(gunzip.get_mut())
                        }
                    };
                    let text = std::str::from_utf8(&bytes).unwrap();
                    self.raw.push_str(text);
                    self.buf.push_str(text);
                }
                Some(Err(e)) => panic!("sse read failed: {e}"),
                None => return None,
            }
        }
    }

    /// The next event with a `data:` field, skipping comment-only blocks.
    pub async fn event(&mut self) -> Option<SseEvent> {
        loop {
            let block = self.block().await?;
            if block.data.is_some() {
                return Some(block);
            }
        }
    }

    pub async fn expect(&mut self, kind: &str) -> SseEvent {
        let event = self.event().await.expect("stream ended");
        assert_eq!(event.event.as_deref(), Some(kind), "expected {kind}, got {event:?}");
        event
    }

    pub async fn messages(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.expect("message").await);
        }
        out
    }
}

fn parse_block(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "id" => event.id = Some(value),
                "event" => event.event = Some(value),
                "data" => event.data = Some(event.data.map_or(value.clone(), |d| d + "\n" + &value)),
                "retry" => event.retry = value.parse().ok(),
                _ => {}
            }
        }
    }
    event
}

/// The seqs of message objects.
pub fn seqs<'a>(messages: impl IntoIterator<Item = &'a Value>) -> Vec<u64> {
    messages.into_iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Microseconds since the Unix epoch, for checking `ts`.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Asserts a message object has the fields of API.md.
pub fn assert_message(m: &Value, channel: &str, seq: u64, data: &Value) {
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["channel"], channel, "{m}");
    assert_eq!(m["seq"], seq, "{m}");
    assert_eq!(&m["data"], data, "{m}");
    let ts = m["ts"].as_u64().expect("ts is a number");
    let now = now_micros();
    assert!(ts <= now && now - ts < 60_000_000, "ts {ts} is not a recent microsecond timestamp (now {now})");
    assert_eq!(m.as_object().unwrap().len(), 5, "exactly type, channel, seq, ts, data: {m}");
}

/// Generates one `#[tokio::test]` per hub kind for each listed test function
/// (each takes a `HubKind`).
#[macro_export]
macro_rules! for_each_hub {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::HubKind::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::HubKind::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::HubKind::Cluster).await
                }
            )*
        }
    };
}

/// The address a started pushwire binary logs for a browser ("open
/// http://…/"), read from its piped stdout; the rest of its output is drained
/// meanwhile, so that the child never blocks on a full pipe.
pub async fn announced_url(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split("open ").nth(1).and_then(|rest| rest.split(' ').next())
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    timeout(PATIENCE, rx).await.expect("no 'open http://…' log line").unwrap()
}

/// Sends raw bytes on a fresh connection and reads until the server closes it.
pub async fn raw_exchange(app: &TestApp, request: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(PATIENCE, tcp.read_to_end(&mut response)).await.expect("no answer").unwrap();
    response
}

/// One counter of `/api/stats` for a transport (or `publish`, `other`, `http2`).
pub fn counter(stats: &Value, traffic: &str, name: &str) -> u64 {
    stats["transports"][traffic][name].as_u64().unwrap()
}
