//! The dashboard in a real headless Chromium (Debian's `chromium`), driven
//! over the DevTools protocol, against a server started by the test.

use pushwire_testkit as common;
mod encoding;
mod lab;
mod webtransport;

use std::path::Path;
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::page::ScreenshotParams;
use serde_json::Value;

use common::browser::{Chromium, eval_json, wait_json};
use common::*;

const SUMMARY: &str = "window.pushwireDashboard ? JSON.stringify(window.pushwireDashboard.summary()) : null";

async fn summary(page: &Page) -> Value {
    common::browser::eval_json(page, SUMMARY).await
}

/// Waits until `check` holds on the page's summary of the lanes.
async fn wait_for(page: &Page, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_json(page, SUMMARY, what, check).await
}

async fn text(page: &Page, selector: &str) -> String {
    page.find_element(selector).await.unwrap().inner_text().await.unwrap().unwrap_or_default()
}

/// The five transports' lanes and the sixth, the pushwire.js client's.
/// The auto lane's timeline, as (kind, label) pairs, and the whole timeline.
async fn auto_timeline(page: &Page) -> (Vec<(String, String)>, Value) {
    let timeline = eval_json(page, "JSON.stringify(window.pushwireDashboard.timeline())").await;
    let auto = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["lane"] == "auto")
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["label"].as_str().unwrap().to_owned()))
        .collect();
    (auto, timeline)
}

const LANES: [&str; 6] = ["webtransport", "websocket", "sse", "long-poll", "poll", "auto"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_five_live_lanes_and_survives_a_drop() {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 20.0).await;
    let chromium = Chromium::launch(1600, 1500).await;
    let page = chromium.browser.new_page(app.url("/")).await.unwrap();

    // Every lane receives the demo stream, with numbers for latency and bytes.
    let s = wait_for(&page, "every lane with messages and byte counts", |s| {
        LANES.iter().all(|l| s[l]["received"].as_u64() >= Some(5) && s[l]["bytesPerMessage"].is_number())
    })
    .await;
    for lane in LANES {
        let l = &s[lane];
        assert_eq!(l["status"], "live", "{lane}: {l}");
        for k in ["p50", "p95", "p99", "bytesPerMessage"] {
            let v = l[k].as_f64().unwrap_or_else(|| panic!("{lane}.{k} is not a number: {l}"));
            assert!(v.is_finite() && v >= 0.0, "{lane}.{k} = {v}");
        }
        assert_eq!((l["gaps"].as_u64(), l["dups"].as_u64()), (Some(0), Some(0)), "{lane}: {l}");
    }
    for lane in ["webtransport", "websocket", "sse", "long-poll", "poll"] {
        assert!(s[lane]["requests"].as_u64() >= Some(1), "{lane}");
    }
    assert_eq!(s["auto"]["transport"], "webtransport", "with nothing in the way, the client negotiates WebTransport");
    assert_eq!(s["webtransport"]["protocol"], "h3", "{s:#}");
    // Polling pays headers on every request: it must cost more per message than a socket.
    // (Before compression: gzip on a poll's batch of small messages can beat frames too
    // small for the server to deflate.)
    let before_compression = |lane: &str| s[lane]["uncompressedBytesPerMessage"].as_f64();
    assert!(before_compression("poll") > before_compression("websocket"), "{s:#}");

    // The teaching panel shows the real handshake, worked out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let accept = text(&page, r#"[data-raw="websocket-accept"]"#).await;
        if accept.contains("match") {
            assert!(accept.contains("✓ match"), "{accept}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no Sec-WebSocket-Accept derivation: {accept}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text(&page, r#"[data-raw="websocket-response"]"#).await.starts_with("HTTP/1.1 101 Switching Protocols"));
    assert!(text(&page, r#"[data-raw="websocket-request"]"#).await.to_lowercase().contains("sec-websocket-key:"));
    assert!(text(&page, r#"[data-raw="websocket-frame"]"#).await.contains("frame header"));
    // The other panels (hidden tabs keep their text) show raw HTTP as exchanged.
    let raw = |name: &str| format!(r#"[data-raw="{name}"]"#);
    let inner = |selector: String| {
        let page = &page;
        async move {
            let js = format!("document.querySelector('{}').textContent", selector.replace('\'', "\\'"));
            page.evaluate(js).await.unwrap().into_value::<String>().unwrap()
        }
    };
    assert!(inner(raw("sse-event")).await.contains("event: message"));
    assert!(inner(raw("sse-response")).await.contains("text/event-stream"));
    assert!(inner(raw("long-poll-request")).await.starts_with("GET /long-poll?channels=demo"));
    assert!(inner(raw("poll-response")).await.starts_with("HTTP/1.1 200 OK"));

    // Drop every connection; each lane comes back and resumes without a gap.
    let before = summary(&page).await;
    page.find_element("#drop").await.unwrap().click().await.unwrap();
    let after = wait_for(&page, "every lane to resume after the drop", |s| {
        s["websocket"]["reconnects"].as_u64() >= Some(1)
            && s["webtransport"]["reconnects"].as_u64() >= Some(1)
            && s["sse"]["reconnects"].as_u64() >= Some(1)
            && s["auto"]["reconnects"].as_u64() >= Some(1)
            && LANES.iter().all(|l| s[l]["received"].as_u64() >= before[l]["received"].as_u64().map(|n| n + 20))
    })
    .await;
    for lane in LANES {
        let l = &after[lane];
        assert_eq!((l["gaps"].as_u64(), l["dups"].as_u64()), (Some(0), Some(0)), "{lane} after the drop: {l}");
        assert_eq!(l["status"], "live", "{lane}: {l}");
    }
    let stats = app.stats().await;
    assert!(stats["transports"]["websocket"]["connections_total"].as_u64() >= Some(2), "the socket was really cut");
    assert!(stats["transports"]["sse"]["connections_total"].as_u64() >= Some(2), "the stream was really cut");
    // The raw lane's session and the client's, each cut and opened again.
    assert!(
        stats["transports"]["webtransport"]["connections_total"].as_u64() >= Some(4),
        "the sessions were really cut"
    );

    // Let the charts catch up, then keep a picture for people to look at.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &shot).await.unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real picture");

    chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_transport_is_shown_as_unavailable_with_the_reason() {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 20.0).await;
    let chromium = Chromium::launch(1600, 1500).await;
    let page = chromium.browser.new_page("about:blank").await.unwrap();
    // As a browser (or an extension, or a policy) without WebSocket would be.
    page.evaluate_on_new_document("delete window.WebSocket").await.unwrap();
    page.goto(app.url("/")).await.unwrap();
    let s = wait_for(&page, "the other lanes to run", |s| {
        ["sse", "long-poll", "poll"].iter().all(|l| s[l]["received"].as_u64() >= Some(3))
    })
    .await;
    assert_eq!(s["websocket"]["status"], "unavailable", "{s:#}");
    assert!(s["websocket"]["reason"].as_str().unwrap().contains("no WebSocket"), "{s:#}");
    assert_eq!(text(&page, "#lane-websocket [data-field=status]").await.to_lowercase(), "unavailable");
    chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_access_control_on_the_page_passes_its_token_on() {
    let secret = "browser test secret";
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.demo_rate = 20.0;
        c.auth_secret = Some(secret.into());
    })
    .await;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims = serde_json::json!({"exp": exp, "subscribe": ["*"], "publish": ["*"], "admin": true});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let chromium = Chromium::launch(1600, 1500).await;
    let page = chromium.browser.new_page(app.url(&format!("/?access_token={token}"))).await.unwrap();
    // Every lane gets data, and the byte counts (an admin-only endpoint) arrive.
    let s = wait_for(&page, "five live lanes with byte counts", |s| {
        LANES.iter().all(|l| s[l]["received"].as_u64() >= Some(3) && s[l]["bytesPerMessage"].is_number())
    })
    .await;
    for lane in LANES {
        assert_eq!((s[lane]["gaps"].as_u64(), s[lane]["dups"].as_u64()), (Some(0), Some(0)), "{lane}: {s:#}");
    }
    // The teaching panel shows the request, but never the token.
    let request = common::browser::eval_json(
        &page,
        "JSON.stringify(document.querySelector('[data-raw=\"sse-request\"]').textContent)",
    )
    .await;
    let request = request.as_str().unwrap();
    assert!(request.contains("access_token=[redacted]"), "{request}");
    assert!(!request.contains(&token), "{request}");
    chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_lanes_run_on_http2_and_websocket_on_http1() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("pushwire-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let app = spawn_app_with(HubKind::Memory, move |c| {
        c.demo_rate = 20.0;
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    let chromium = Chromium::launch(1600, 1500).await;
    let page = chromium.browser.new_page(format!("https://{}/", app.addr)).await.unwrap();
    // The configured certificate serves QUIC too, without hashes (API.md v1.2): the
    // browser checks it against its CAs, which `ignore-certificate-errors` does not
    // cover for WebTransport. A self-signed one is refused; the lane says why.
    let tcp_lanes = || LANES.iter().filter(|l| **l != "webtransport");
    let s = wait_for(&page, "the TCP lanes live over HTTPS, each with its protocol", |s| {
        tcp_lanes().all(|l| s[l]["received"].as_u64() >= Some(5))
            && ["long-poll", "poll"].iter().all(|l| s[l]["protocol"] == "h2")
            && s["webtransport"]["status"] == "unavailable"
    })
    .await;
    let refused = s["webtransport"]["reason"].as_str().unwrap();
    assert!(refused.starts_with("session refused or failed") && refused.contains("no certificate hashes"), "{s:#}");
    assert_eq!(s["webtransport"]["received"], 0, "{s:#}");
    for lane in tcp_lanes() {
        assert_eq!((s[lane]["gaps"].as_u64(), s[lane]["dups"].as_u64()), (Some(0), Some(0)), "{lane}: {s:#}");
    }
    assert_eq!(s["websocket"]["protocol"], "http/1.1", "{s:#}");
    assert_eq!(s["sse"]["protocol"], "h2", "{s:#}");
    assert_eq!(s["auto"]["transport"], "websocket", "wss works through the client too");
    let why = s["auto"]["reasons"]["webtransport"].as_str().unwrap_or("");
    assert!(why.starts_with("session refused or failed"), "the client says why it is not on WebTransport: {s:#}");
    assert_eq!(text(&page, "#lane-poll [data-field=protocol]").await, "HTTP/2");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-https.png");
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &shot).await.unwrap();
    chromium.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}
