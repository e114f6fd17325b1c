//! The fallback client (static/js/pushwire.js) in headless Chromium behind a
//! real nginx: it settles on the best transport the proxy lets through, and a
//! steady stream reaches it with no gap and no duplicate, across fallbacks
//! and an upgrade after the proxy is reconfigured. `base_path`: everything
//! behind a gateway that mounts the server under a path.

use pushwire_testkit as common;

mod base_path;

use chromiumoxide::Page;
use serde_json::Value;

use common::browser::{Chromium, wait_json};
use common::nginx::{Nginx, Proxy};
use common::*;

const LOG: &str = "window.clientLog ? JSON.stringify(window.clientLog) : null";

/// The server, a proxy in front of it, and the client page loaded through it.
struct Setup {
    app: TestApp,
    nginx: Nginx,
    chromium: Chromium,
    page: Page,
}

async fn setup(mode: Proxy) -> Setup {
    setup_with(mode, "").await
}

async fn setup_with(mode: Proxy, extra_query: &str) -> Setup {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 10.0).await;
    let nginx = Nginx::start(app.addr, mode).await;
    let chromium = Chromium::launch(1200, 900).await;
    // Short deadlines and probes keep the test quick; the defaults are 4 s and 30 s.
    let page = chromium
        .browser
        .new_page(nginx.url(&format!("/static/client.html?channels=demo&probe=1000&deadline=2000{extra_query}")))
        .await
        .unwrap();
    Setup { app, nginx, chromium, page }
}

fn current(log: &Value) -> Option<&str> {
    log["transports"].as_array()?.last()?.as_str()
}

fn received(log: &Value) -> usize {
    log["seqs"]["demo"].as_array().map_or(0, Vec::len)
}

/// Waits until the client is on `transport` and has received `at_least` messages.
async fn wait_on(page: &Page, transport: &str, at_least: usize) -> Value {
    wait_json(page, LOG, &format!("{at_least} messages on {transport}"), |log| {
        current(log) == Some(transport) && received(log) >= at_least
    })
    .await
}

/// Why the client left or refused each transport.
async fn reasons(page: &Page) -> Value {
    common::browser::eval_json(page, "JSON.stringify(window.pushwireClient.reasons)").await
}

/// Every message once, in order: seqs grow by exactly 1.
fn assert_gap_free(log: &Value) {
    let seqs: Vec<u64> = log["seqs"]["demo"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert!(!seqs.is_empty());
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap or a duplicate in {seqs:?}");
    }
    assert_eq!(log["resets"], serde_json::json!([]), "nothing was lost, so no reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_pass_through_proxy_the_client_settles_on_websocket() {
    let s = setup_with(Proxy::PassThrough, "&client=proxytest").await;
    let log = wait_on(&s.page, "websocket", 20).await;
    assert_eq!(log["transports"], serde_json::json!(["websocket"]), "no detour");
    // The server cuts the socket (close 1012, "reconnect"): the client comes
    // back on WebSocket and resumes from its cursor.
    let response = reqwest::Client::new().post(s.nginx.url("/api/inspect/proxytest/drop")).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let after = wait_json(&s.page, LOG, "a reconnect and more messages", |l| {
        l["states"].as_array().is_some_and(|states| states.iter().any(|x| x == "reconnecting"))
            && received(l) >= received(&log) + 20
    })
    .await;
    assert_eq!(after["transports"], serde_json::json!(["websocket"]));
    assert_gap_free(&after);
    s.chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_drops_the_upgrade_gets_sse() {
    let s = setup(Proxy::NoUpgrade).await;
    let first = wait_on(&s.page, "sse", 10).await;
    // Several probes of WebSocket fail meanwhile; the client stays on SSE.
    let log = wait_on(&s.page, "sse", received(&first) + 30).await;
    assert_eq!(log["transports"], serde_json::json!(["sse"]));
    assert_gap_free(&log);
    let why = reasons(&s.page).await;
    assert!(why["websocket"].as_str().unwrap().contains("before welcome"), "{why}");
    s.chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_also_buffers_gets_long_polling() {
    let s = setup(Proxy::Buffering).await;
    let first = wait_on(&s.page, "long-poll", 10).await;
    let log = wait_on(&s.page, "long-poll", received(&first) + 30).await;
    assert_eq!(log["transports"], serde_json::json!(["long-poll"]));
    assert_gap_free(&log);
    let why = reasons(&s.page).await;
    assert!(why["websocket"].as_str().unwrap().contains("before welcome"), "{why}");
    assert!(why["sse"].as_str().unwrap().contains("buffering proxy"), "held back, not refused: {why}");
    s.chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_upgrades_to_websocket_when_the_proxy_is_fixed() {
    let mut s = setup(Proxy::Buffering).await;
    let before = wait_on(&s.page, "long-poll", 10).await;
    s.nginx.reload(Proxy::PassThrough).await;
    let upgraded = wait_on(&s.page, "websocket", received(&before) + 5).await;
    let log = wait_on(&s.page, "websocket", received(&upgraded) + 20).await;
    // Only upgrades: straight to WebSocket, or via SSE when the reload lands
    // between a probe's WebSocket and SSE attempts.
    let rank = |t: &Value| ["websocket", "sse", "long-poll", "poll"].iter().position(|n| t == n).unwrap();
    let path: Vec<usize> = log["transports"].as_array().unwrap().iter().map(rank).collect();
    assert!(path.windows(2).all(|w| w[1] < w[0]), "only upgrades: {}", log["transports"]);
    assert_eq!((path.first(), path.last()), (Some(&2), Some(&0)), "{}", log["transports"]);
    assert_gap_free(&log);
    s.chromium.close().await;
}

/// A relay that lets WebSocket upgrades succeed and then swallows every frame
/// the server sends, as some middleboxes do; plain HTTP passes untouched.
async fn start_swallowing_relay(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
                let mut head = Vec::new();
                let mut buf = [0u8; 8192];
                let mut upgraded = false;
                loop {
                    let Ok(n) = server_read.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    if upgraded {
                        continue; // swallowed
                    }
                    head.extend_from_slice(&buf[..n]);
                    if head.starts_with(b"HTTP/1.1 101")
                        && let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n")
                    {
                        // Pass the 101 on, keep the frames.
                        if client_write.write_all(&head[..end + 4]).await.is_err() {
                            return;
                        }
                        upgraded = true;
                        continue;
                    }
                    if !head.starts_with(b"HTTP/1.1 101") && head.len() >= 12 {
                        if client_write.write_all(&head).await.is_err() {
                            return;
                        }
                        head.clear();
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_opens_but_carries_nothing_is_given_up() {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 10.0).await;
    let relay = start_swallowing_relay(app.addr).await;
    let chromium = Chromium::launch(1200, 900).await;
    let url = format!("http://{relay}/static/client.html?channels=demo&probe=1000&deadline=2000");
    let page = chromium.browser.new_page(url).await.unwrap();
    let first = wait_on(&page, "sse", 10).await;
    let log = wait_on(&page, "sse", received(&first) + 15).await;
    assert_eq!(log["transports"], serde_json::json!(["sse"]));
    assert_gap_free(&log);
    let why = reasons(&page).await;
    assert!(why["websocket"].as_str().unwrap().contains("no welcome within the deadline"), "{why}");
    chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_reaches_the_application() {
    let s = setup_with(Proxy::PassThrough, "&cursor=demo:3:OldEpoch1").await;
    let log = wait_on(&s.page, "websocket", 5).await;
    let reset = &log["resets"][0];
    assert_eq!((reset["type"].as_str(), reset["reason"].as_str()), (Some("reset"), Some("epoch_changed")), "{log}");
    let seqs: Vec<u64> = log["seqs"]["demo"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(seqs[0], reset["seq"].as_u64().unwrap() + 1, "messages continue right after the reset");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    s.chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_stops_everything() {
    let s = setup(Proxy::NoUpgrade).await;
    wait_on(&s.page, "sse", 10).await; // on SSE, probing WebSocket every second
    s.page.evaluate("window.pushwireClient.close()").await.unwrap();
    s.app.wait_stats("the stream to close", |st| st["transports"]["sse"]["connections_open"] == 0).await;
    let log = common::browser::eval_json(&s.page, LOG).await;
    let attempts = s.app.stats().await["transports"]["websocket"]["requests"].clone();
    // Three probe intervals of silence: no message, no probe, no reconnect.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = common::browser::eval_json(&s.page, LOG).await;
    assert_eq!(received(&after), received(&log), "no message after close()");
    assert_eq!(after["states"].as_array().unwrap().last().unwrap(), "closed");
    assert_eq!(s.app.stats().await["transports"]["websocket"]["requests"], attempts, "no probe after close()");
    let st = s.app.stats().await;
    for t in ["sse", "long_poll", "poll", "websocket"] {
        assert_eq!(st["transports"][t]["connections_open"], 0, "{t}");
    }
    s.chromium.close().await;
}
