//! HTTP/2 under the limits of issue 20, over real TLS (ALPN `h2`), as the
//! attacks were made, and in cleartext (prior knowledge): a connection holds at most 100 streams, its
//! held answers end with it or with their stream's reset, a client that
//! resets streams as fast as it opens them is told to go away, and a header
//! block may neither grow past 16 KiB nor take longer than `--request-timeout`.

use std::time::Duration;

use bytes::Bytes;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::h2raw::{self, RawH2};
use crate::common::*;
use crate::tls::{Cert, h2_get, read_until};

/// Long polls held open on `/api/stats`.
fn long_polls_open(stats: &serde_json::Value) -> u64 {
    counter(stats, "long_poll", "connections_open")
}

type Driver = tokio::task::JoinHandle<Result<(), h2::Error>>;

/// A server on HTTPS, and what a test reads of it beside the connections under test.
struct Secure {
    cert: Cert,
    app: TestApp,
}

impl Secure {
    async fn start(configure: impl FnOnce(&mut pushwire::config::Config)) -> Secure {
        let cert = Cert::new();
        let app = cert.app_with(configure).await;
        Secure { cert, app }
    }

    /// An HTTP/2 connection (ALPN `h2`), driven by a task of its own.
    async fn h2(&self) -> (h2::client::SendRequest<bytes::Bytes>, Driver) {
        let (sender, connection) = h2::client::handshake(self.cert.connect(&self.app, &[b"h2"]).await).await.unwrap();
        (sender, tokio::spawn(connection))
    }

    /// A GET of `path` on `sender`'s connection; its answer, once it comes.
    fn get(&self, sender: &mut h2::client::SendRequest<bytes::Bytes>, path: &str) -> h2::client::ResponseFuture {
        let request = http::Request::get(format!("https://{}{path}", self.app.addr)).body(()).unwrap();
        sender.send_request(request, true).unwrap().0
    }

    /// Waits until `check` holds on `/api/stats`.
    async fn wait_stats(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stats = serde_json::from_str(&self.cert.get(&self.app, "/api/stats").await).unwrap();
            if check(&stats) {
                return stats;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {stats}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `pushwire_limit_rejections_total` of `kind`.
    async fn rejections(&self, kind: &str) -> f64 {
        let metrics = self.cert.get(&self.app, "/metrics").await;
        let label = format!("pushwire_limit_rejections_total{{kind=\"{kind}\"}} ");
        let line = metrics.lines().find_map(|l| l.strip_prefix(&label));
        line.unwrap_or_else(|| panic!("no {label} in /metrics")).parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_announces_its_stream_and_header_limits_and_refuses_a_stream_past_them() {
    let cert = Cert::new();
    let app = cert.app().await;
    let mut raw = RawH2::start(cert.connect(&app, &[b"h2"]).await).await;
    let settings = timeout(PATIENCE, raw.until(h2raw::SETTINGS)).await.unwrap().expect("the server's SETTINGS");
    let settings = settings.settings();
    assert!(settings.contains(&(h2raw::SETTINGS_MAX_CONCURRENT_STREAMS, 100)), "{settings:?}");
    assert!(settings.contains(&(h2raw::SETTINGS_MAX_HEADER_LIST_SIZE, 16 * 1024)), "{settings:?}");
    // 101 long polls at once: the last is refused (REFUSED_STREAM), the others held.
    let authority = app.addr.to_string();
    for i in 0..101u32 {
        let block = h2raw::get(&authority, "/long-poll?channels=limit&timeout=60");
        raw.send(h2raw::HEADERS, h2raw::END_HEADERS | h2raw::END_STREAM, 2 * i + 1, &block).await.unwrap();
    }
    let refused = timeout(PATIENCE, raw.until(h2raw::RST_STREAM)).await.unwrap().expect("a refused stream");
    assert_eq!((refused.stream, refused.error_code()), (201, 0x7), "REFUSED_STREAM for the 101st");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_takes_its_held_polls_with_it() {
    let server = Secure::start(|_| {}).await;
    let (sender, driver) = server.h2().await;
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut ready = sender.clone().ready().await.unwrap();
        held.push(server.get(&mut ready, "/long-poll?channels=gone&timeout=60"));
    }
    server.wait_stats("100 polls held", |s| long_polls_open(s) == 100).await;
    // The client goes away without a word: the socket closes under its streams.
    driver.abort();
    drop((held, sender));
    let stats = server.wait_stats("the polls released", |s| long_polls_open(s) == 0).await;
    assert_eq!(counter(&stats, "long_poll", "messages_delivered"), 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stream_ends_its_poll_and_rapid_resets_get_goaway() {
    let server = Secure::start(|_| {}).await;
    let (mut sender, driver) = server.h2().await;
    let poll = server.get(&mut sender.clone().ready().await.unwrap(), "/long-poll?channels=reset&timeout=60");
    server.wait_stats("the poll held", |s| long_polls_open(s) == 1).await;
    drop(poll); // RST_STREAM (CANCEL); the connection stays
    server.wait_stats("the poll released", |s| long_polls_open(s) == 0).await;
    let (status, _) = h2_get(&mut sender, &server.app, "/healthz").await;
    assert_eq!(status, 200, "the connection still serves");

    // Streams opened and reset as soon as they answer, over and over (CVE-2023-44487).
    let mut goaway = None;
    for _ in 0..1000 {
        let answered = match sender.clone().ready().await {
            Ok(mut ready) => {
                let response = server.get(&mut ready, "/sse?channels=reset");
                timeout(PATIENCE, response).await.expect("an answer or an error")
            }
            Err(e) => Err(e),
        };
        match answered {
            Ok(response) => drop(response), // reset once its head is in
            Err(e) => {
                goaway = Some(e);
                break;
            }
        }
    }
    goaway.expect("told to go away");
    // Streams the server had taken end with the connection; the connection
    // itself ends with the server's reason.
    let ended = timeout(PATIENCE, driver).await.expect("the connection ends").unwrap();
    let reason = ended.as_ref().err().and_then(|e| e.reason());
    assert_eq!(reason, Some(h2::Reason::ENHANCE_YOUR_CALM), "{ended:?}");
    server.wait_stats("no stream left", |s| counter(s, "sse", "connections_open") == 0).await;
    assert_eq!(server.rejections("http2_resets").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_list_over_16_kib_is_refused_with_431() {
    let cert = Cert::new();
    let app = cert.app().await;
    let (mut sender, connection) = h2::client::handshake(cert.connect(&app, &[b"h2"]).await).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("https://{}/healthz", app.addr))
        .header("x-padding", "p".repeat(20 * 1024))
        .body(())
        .unwrap();
    let (response, _) = sender.clone().ready().await.unwrap().send_request(request, true).unwrap();
    let response = timeout(PATIENCE, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 431);
    let (status, _) = h2_get(&mut sender, &app, "/healthz").await;
    assert_eq!(status, 200, "the connection still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_growing_past_the_limit_ends_the_connection() {
    let cert = Cert::new();
    let app = cert.app().await;
    let mut raw = RawH2::start(cert.connect(&app, &[b"h2"]).await).await;
    let mut block = h2raw::get(&app.addr.to_string(), "/healthz");
    block.extend(h2raw::literal("x-padding", &"p".repeat(8000)));
    raw.send(h2raw::HEADERS, 0, 1, &block).await.unwrap();
    // CONTINUATION frames of 16 KiB, up to 16 MiB, with no end: the server
    // stops reading long before.
    let filler = h2raw::literal("x-more", &"m".repeat(16_000));
    let mut sent = 0;
    for _ in 0..1024 {
        if raw.send(h2raw::CONTINUATION, 0, 1, &filler).await.is_err() {
            break;
        }
        sent += filler.len();
    }
    assert!(sent < 16 * 1024 * 1024, "the server took all {sent} bytes");
    // Its GOAWAY may be lost to the reset of a socket closed with unread bytes.
    let end = timeout(PATIENCE, raw.until(h2raw::GOAWAY)).await.expect("the connection ends");
    assert!(end.is_none_or(|goaway| goaway.error_code() != 0), "an error, not a graceful close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_header_block_is_cut_at_the_request_timeout() {
    let server = Secure::start(|c| c.request_timeout = Duration::from_millis(500)).await;
    let mut raw = RawH2::start(server.cert.connect(&server.app, &[b"h2"]).await).await;
    let block = h2raw::get(&server.app.addr.to_string(), "/healthz");
    // A whole HEADERS frame announced, its bytes sent one at a time, slowly.
    let mut frame = h2raw::frame(h2raw::HEADERS, h2raw::END_HEADERS | h2raw::END_STREAM, 1, &block);
    frame.pop(); // never its last byte
    // The server's SETTINGS, answered before the trickle (an answer must not land inside it).
    timeout(PATIENCE, raw.until(h2raw::SETTINGS)).await.unwrap().expect("the server's SETTINGS");
    let closed = timeout(PATIENCE, async {
        for byte in frame {
            if raw.send_raw(&[byte]).await.is_err() {
                break;
            }
            if let Ok(None) = timeout(Duration::from_millis(50), raw.frame()).await {
                break; // closed
            }
        }
        raw.frame().await.is_none() || raw.until(h2raw::GOAWAY).await.is_some()
    });
    assert!(closed.await.expect("the connection closed"));
    assert_eq!(server.rejections("request_timeout").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_with_prior_knowledge_is_served() {
    let app = spawn_app(HubKind::Memory).await;
    let (mut sender, connection) = h2::client::handshake(TcpStream::connect(app.addr).await.unwrap()).await.unwrap();
    tokio::spawn(connection);
    let (status, mut stream) = h2_get(&mut sender, &app, "/sse?channels=h2c").await;
    assert_eq!(status, 200);
    read_until(&mut stream, "event: subscribed").await;
    app.publish("h2c", serde_json::json!("clear")).await;
    assert!(read_until(&mut stream, "event: message").await.contains(r#""data":"clear""#));
    let stats = app.stats().await;
    assert!(counter(&stats, "http2", "bytes_received") > 0, "{stats}");
    assert_eq!(counter(&stats, "sse", "requests"), 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_http2_streams_and_their_connection() {
    let app = spawn_app(HubKind::Memory).await;
    let (mut sender, mut connection) =
        h2::client::handshake(TcpStream::connect(app.addr).await.unwrap()).await.unwrap();
    let (status, mut stream) = tokio::select! {
        answer = h2_get(&mut sender, &app, "/sse?channels=bye") => answer,
        _ = &mut connection => panic!("the connection ended first"),
    };
    assert_eq!(status, 200);
    let driver = tokio::spawn(connection);
    read_until(&mut stream, "event: subscribed").await;
    app.state.ctx.shutdown.trigger();
    let rest = timeout(PATIENCE, async {
        let mut rest = Vec::new();
        while let Some(Ok(chunk)) = stream.data().await {
            rest.extend_from_slice(&chunk);
        }
        rest
    });
    rest.await.expect("the stream ends");
    timeout(PATIENCE, driver).await.expect("the connection ends").unwrap().expect("without an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_refused_unread_still_gets_its_answer() {
    let app = spawn_app(HubKind::Memory).await;
    let (mut sender, connection) = h2::client::handshake(TcpStream::connect(app.addr).await.unwrap()).await.unwrap();
    tokio::spawn(connection);
    // More than the body limit (64 KiB), announced: the route answers 413
    // without reading it, and the client is told to stop sending.
    let big = Bytes::from(format!("\"{}\"", "x".repeat(300_000)));
    let request = http::Request::post(format!("http://{}/channels/big/messages", app.addr))
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(())
        .unwrap();
    let (response, mut body) = sender.clone().ready().await.unwrap().send_request(request, false).unwrap();
    body.reserve_capacity(big.len());
    let _ = body.send_data(big, true);
    let response = timeout(PATIENCE, response).await.expect("an answer").expect("an answer, not a reset");
    assert_eq!(response.status(), 413);
    let mut text = Vec::new();
    let mut answer = response.into_body();
    while let Some(chunk) = timeout(PATIENCE, answer.data()).await.unwrap() {
        text.extend_from_slice(&chunk.unwrap());
    }
    let error: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(error["error"]["code"], "too_large");
    let (status, _) = h2_get(&mut sender, &app, "/healthz").await;
    assert_eq!(status, 200, "the connection still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_even_if_its_client_ignores_the_goaway() {
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.keep_alive = Duration::from_millis(300);
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    let mut raw = RawH2::start(TcpStream::connect(app.addr).await.unwrap()).await;
    // The server's SETTINGS, acknowledged; then nothing is answered again.
    timeout(PATIENCE, raw.until(h2raw::SETTINGS)).await.unwrap().expect("the server's SETTINGS");
    let kinds = timeout(PATIENCE, raw.ignore_until_closed()).await.expect("the server closes");
    assert!(kinds.contains(&h2raw::GOAWAY), "told to go away first: {kinds:?}");
    assert!(kinds.contains(&h2raw::PING), "and asked to acknowledge it: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_window_never_opens_is_reset_at_the_write_timeout() {
    let app = spawn_app_with(HubKind::Memory, |c| c.write_timeout = Duration::from_millis(500)).await;
    // A window of 0: the server may send heads, and no data at all.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let mut raw = RawH2::start_with(tcp, &[(h2raw::SETTINGS_INITIAL_WINDOW_SIZE, 0)]).await;
    let block = h2raw::get(&app.addr.to_string(), "/sse?channels=shut");
    raw.send(h2raw::HEADERS, h2raw::END_HEADERS | h2raw::END_STREAM, 1, &block).await.unwrap();
    let reset = timeout(PATIENCE, raw.until(h2raw::RST_STREAM)).await.unwrap().expect("the stream reset");
    assert_eq!((reset.stream, reset.error_code()), (1, 0x8), "CANCEL");
    app.wait_stats("the stream ended", |s| counter(s, "sse", "connections_open") == 0).await;
    assert_eq!(app.metric("pushwire_limit_rejections_total{kind=\"write_timeout\"}").await, 1.0);
    let (mut sender, connection) = h2::client::handshake(TcpStream::connect(app.addr).await.unwrap()).await.unwrap();
    tokio::spawn(connection);
    let (status, _) = h2_get(&mut sender, &app, "/healthz").await;
    assert_eq!(status, 200, "the server still serves");
}
