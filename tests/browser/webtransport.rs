//! WebTransport in a real headless Chromium, QUIC on, the page on
//! `http://127.0.0.1:PORT` and the server's self-signed certificate trusted by
//! its hash (`serverCertificateHashes`): the pushwire.js client takes it
//! first; a firewall that drops UDP (the lab's `webtransport: blocked`) sends
//! it to WebSocket within its deadline and a probe brings it back, losing
//! nothing; the dashboard's WebTransport lane shows messages and bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chromiumoxide::page::ScreenshotParams;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{LANES, SUMMARY};
use crate::common::browser::{Chromium, eval_json, wait_json, wait_json_within as within};
use crate::common::*;

const LOG: &str = "window.clientLog ? JSON.stringify(window.clientLog) : null";
/// The client's default deadline for a session to come up.
const WT_DEADLINE: Duration = Duration::from_millis(2500);
/// The probe interval the fallback test gives the client (30 s by default).
const PROBE: Duration = Duration::from_secs(3);

fn seqs(log: &Value, channel: &str) -> Vec<u64> {
    log["seqs"][channel].as_array().map_or(vec![], |s| s.iter().map(|n| n.as_u64().unwrap()).collect())
}

fn current(log: &Value) -> Option<&str> {
    log["transports"].as_array()?.last()?.as_str()
}

/// Sets this page's network in the lab, as a teacher's curl does.
async fn impair(app: &TestApp, client: &str, change: Value) {
    let url = app.url(&format!("/api/inspect/{client}/impair"));
    let response = app.http.post(url).json(&change).send().await.unwrap();
    assert_eq!(response.status(), 200, "impair {change}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_takes_webtransport_first_and_receives_every_message_once_in_order() {
    let app = spawn_app(HubKind::Memory).await;
    let chromium = Chromium::launch(1000, 800).await;
    for (encoding, channel) in [("json", "wtjson"), ("msgpack", "wtpack")] {
        let url = app.url(&format!("/static/client.html?channels={channel}&encoding={encoding}&client=wt{encoding}"));
        let page = chromium.browser.new_page(url).await.unwrap();
        let log = wait_json(&page, LOG, "the client on WebTransport", |l| current(l) == Some("webtransport")).await;
        assert_eq!(log["transports"], json!(["webtransport"]), "WebTransport first, no detour");
        assert_eq!(log["negotiated"][0], json!({"encoding": encoding, "protocol": "h3"}), "{log:#}");
        // Published once it is up: every one must arrive, once, in order.
        for i in 1..=60u64 {
            app.publish(channel, json!({"i": i, "text": "ü".repeat(i as usize % 7)})).await;
        }
        let log = wait_json(&page, LOG, "60 messages", |l| seqs(l, channel).len() >= 60).await;
        assert_eq!(seqs(&log, channel), (1..=60).collect::<Vec<_>>(), "{encoding}: each once, in order");
        assert_eq!(log["transports"], json!(["webtransport"]), "{encoding}: it stayed on WebTransport");
        assert_eq!(log["resets"], json!([]));
        let report = app.get(&format!("/api/inspect/wt{encoding}")).await.1;
        let lane = &report["transports"]["webtransport"];
        assert!(lane["bytes_sent"].as_u64() > Some(0), "the server counted the session's UDP bytes: {lane}");
        assert!(lane["request"].as_str().unwrap().contains(":protocol: webtransport"), "{lane}");
    }
    let stats = app.stats().await;
    assert!(stats["transports"]["webtransport"]["connections_total"].as_u64() >= Some(2), "{stats:#}");
    assert_eq!(stats["transports"]["websocket"]["connections_total"].as_u64(), Some(0), "no WebSocket was needed");
    chromium.close().await;
}

/// Publishes on `channel` every 40 ms until stopped; counts what it published.
fn publisher(app: &TestApp, channel: &str) -> (Arc<AtomicBool>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (http, url) = (app.http.clone(), app.url(&format!("/channels/{channel}/messages")));
    let (s, c) = (stop.clone(), count.clone());
    let task = tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            let response = http.post(&url).json(&json!({"n": c.load(Ordering::Relaxed) + 1})).send().await.unwrap();
            assert_eq!(response.status(), 201);
            c.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    (stop, count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_udp_blocked_the_client_falls_back_to_websocket_and_a_probe_brings_it_back() {
    let app = spawn_app(HubKind::Memory).await;
    let chromium = Chromium::launch(1000, 800).await;
    // Published from before the page opens to the end; the page starts from seq 0.
    let (stop, published, task) = publisher(&app, "steady");
    let probe = PROBE.as_millis();
    let page = chromium
        .browser
        .new_page(app.url(&format!("/static/client.html?channels=steady&cursor=steady:0&client=wtblock&probe={probe}")))
        .await
        .unwrap();
    let log = wait_json(&page, LOG, "the client on WebTransport", |l| {
        current(l) == Some("webtransport") && seqs(l, "steady").len() >= 10
    })
    .await;
    assert_eq!(log["transports"], json!(["webtransport"]));

    // The firewall starts dropping UDP; the lab cuts the session, and the
    // client's next session request meets silence, not an error.
    let blocked = Instant::now();
    impair(&app, "wtblock", json!({"webtransport": "blocked"})).await;
    let log = within(&page, LOG, WT_DEADLINE + Duration::from_secs(4), "the client on WebSocket", |l| {
        current(l) == Some("websocket")
    })
    .await;
    let took = blocked.elapsed();
    assert!(took >= WT_DEADLINE, "it waited out the silence before moving on: {took:?}");
    let why = eval_json(&page, "JSON.stringify(window.pushwireClient.reasons)").await;
    assert_eq!(
        why["webtransport"], "no answer over UDP within 2.5 s (blocked by a firewall?)",
        "the reason names the silence: {why}"
    );
    assert_eq!(log["transports"], json!(["webtransport", "websocket"]), "straight to the next rung");
    let n = seqs(&log, "steady").len();
    wait_json(&page, LOG, "messages over WebSocket", |l| seqs(l, "steady").len() >= n + 20).await;

    // UDP passes again: the lab's change cuts the WebSocket, the client comes
    // back on it, and its next probe finds WebTransport working.
    let cleared = Instant::now();
    impair(&app, "wtblock", json!({"webtransport": "ok"})).await;
    let log =
        within(&page, LOG, PROBE + WT_DEADLINE + Duration::from_secs(4), "the client back on WebTransport", |l| {
            current(l) == Some("webtransport")
        })
        .await;
    assert!(cleared.elapsed() >= PROBE, "back at a probe, not at the reconnect: {:?}", cleared.elapsed());
    assert_eq!(log["transports"], json!(["webtransport", "websocket", "webtransport"]));
    let probes = log["probes"].as_array().unwrap();
    assert_eq!(probes.last(), Some(&json!({"transport": "webtransport", "ok": true, "reason": null})), "{probes:?}");

    // Everything published reached the page, once and in order, across both switches.
    let n = seqs(&log, "steady").len();
    wait_json(&page, LOG, "messages over WebTransport again", |l| seqs(l, "steady").len() >= n + 20).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let total = published.load(Ordering::Relaxed);
    let log = wait_json(&page, LOG, "every published message", |l| seqs(l, "steady").len() as u64 >= total).await;
    assert_eq!(seqs(&log, "steady"), (1..=total).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(log["resets"], json!([]), "nothing was lost, so no reset");
    chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_a_webtransport_lane_and_its_lab_switch() {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 20.0).await;
    let chromium = Chromium::launch(1440, 1400).await;
    let page = chromium.browser.new_page(app.url("/?client=wtdash")).await.unwrap();
    let s = wait_json(&page, SUMMARY, "the WebTransport lane with messages and UDP bytes", |s| {
        s["webtransport"]["received"].as_u64() >= Some(20)
            && s["webtransport"]["bytesPerMessage"].is_number()
            && s["auto"]["received"].as_u64() >= Some(20)
    })
    .await;
    let wt = &s["webtransport"];
    assert_eq!((wt["status"].as_str(), wt["protocol"].as_str()), (Some("live"), Some("h3")), "{wt}");
    assert_eq!((wt["gaps"].as_u64(), wt["dups"].as_u64()), (Some(0), Some(0)), "{wt}");
    for k in ["p50", "p95", "p99", "bytesPerMessage"] {
        let v = wt[k].as_f64().unwrap_or_else(|| panic!("webtransport.{k}: {wt}"));
        assert!(v.is_finite() && v > 0.0, "webtransport.{k} = {v}");
    }
    assert_eq!(s["auto"]["transport"], "webtransport", "the client's top rung: {s:#}");
    let text = |selector: &str| {
        let js = format!("JSON.stringify(document.querySelector('{selector}').textContent)");
        let page = &page;
        async move { eval_json(page, &js).await.as_str().unwrap_or_default().to_owned() }
    };
    assert_eq!(text("#lane-webtransport [data-field=protocol]").await, "h3");
    assert!(text("#lane-webtransport").await.contains("UDP bytes / message"), "labelled as UDP payload");
    // The teaching panel: the extended CONNECT as the server received it, and the hash.
    let request = "JSON.stringify(document.querySelector('[data-raw=webtransport-request]').textContent)";
    let connect =
        wait_json(&page, request, "the CONNECT", |t| t.as_str().is_some_and(|t| t.contains(":method: CONNECT"))).await;
    let connect = connect.as_str().unwrap();
    assert!(connect.contains(":protocol: webtransport") && connect.contains(":path: /wt?channels=demo"), "{connect}");
    let discovery = app.get("/api/webtransport").await.1;
    let hash = discovery["certificate_hashes"][0]["value"].as_str().unwrap();
    let certificate = text("[data-raw=webtransport-certificate]").await;
    assert!(certificate.contains(hash) && certificate.contains("serverCertificateHashes"), "{certificate}");
    let stats = app.stats().await;
    assert!(stats["transports"]["webtransport"]["bytes_sent"].as_u64() > Some(0), "{stats:#}");

    // The lab's switch: UDP dropped. The raw lane says so; the client moves to WebSocket.
    page.evaluate("document.querySelector('#probe-interval').value = 3; document.querySelector('#probe-interval').dispatchEvent(new Event('change'))").await.unwrap();
    page.evaluate("(() => { const s = document.querySelector('#lab-webtransport'); s.value = 'blocked'; s.dispatchEvent(new Event('change')); })()").await.unwrap();
    let s = within(&page, SUMMARY, Duration::from_secs(15), "the client on WebSocket, the raw lane explaining", |s| {
        s["auto"]["transport"] == "websocket"
            && s["webtransport"]["status"] == "unavailable"
            && s["webtransport"]["reason"].as_str().unwrap_or("").contains("drops this page's QUIC packets")
    })
    .await;
    assert!(s["auto"]["reasons"]["webtransport"].as_str().unwrap().contains("no answer over UDP"), "{s:#}");
    let on_websocket = s["auto"]["received"].as_u64().unwrap();
    within(&page, SUMMARY, Duration::from_secs(10), "messages over WebSocket", |s| {
        s["auto"]["received"].as_u64() >= Some(on_websocket + 20)
    })
    .await;
    // Cleared: at its next probe the client is back on WebTransport.
    page.evaluate("(() => { const s = document.querySelector('#lab-webtransport'); s.value = 'ok'; s.dispatchEvent(new Event('change')); })()").await.unwrap();
    let s = within(&page, SUMMARY, Duration::from_secs(15), "the client back on WebTransport", |s| {
        s["auto"]["transport"] == "webtransport" && s["webtransport"]["status"] == "live"
    })
    .await;
    let received = s["auto"]["received"].as_u64().unwrap();
    let s = within(&page, SUMMARY, Duration::from_secs(10), "messages over WebTransport again", |s| {
        s["auto"]["received"].as_u64() >= Some(received + 20)
            && s["webtransport"]["received"].as_u64() > wt["received"].as_u64()
    })
    .await;
    for lane in LANES {
        let l = &s[lane];
        assert_eq!((l["gaps"].as_u64(), l["dups"].as_u64()), (Some(0), Some(0)), "{lane}: {l}");
    }
    let (auto, _) = super::auto_timeline(&page).await;
    for (kind, label) in [("fallback", "→ websocket"), ("upgrade", "→ webtransport")] {
        let expected = (kind.to_owned(), label.to_owned());
        assert!(auto.contains(&expected), "the timeline shows {expected:?}: {auto:?}");
    }
    // A picture at 1440 px, the WebTransport tab open (the charts redraw every second:
    // 20 messages at 20/s have passed since the client came back).
    page.evaluate("document.querySelector('[data-tab=webtransport]').click()").await.unwrap();
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-webtransport.png");
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &shot).await.unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real picture");
    chromium.close().await;
}

/// Opens a raw `WebTransport` session from the page (as an application
/// without pushwire.js would), runs `then` with its writer once the server's
/// stream is up, and leaves what `closed` resolved with in `window.wtClosed`.
fn raw_session(query: &str, then: &str) -> String {
    format!(
        r#"(async () => {{
            const d = await (await fetch('/api/webtransport')).json();
            const serverCertificateHashes = d.certificate_hashes.map((h) => ({{
                algorithm: h.algorithm,
                value: Uint8Array.from(h.value.match(/../g).map((b) => parseInt(b, 16))),
            }}));
            const wt = new WebTransport(d.url + '{query}', {{ serverCertificateHashes }});
            wt.closed.then(
                (info) => (window.wtClosed = {{ closeCode: info.closeCode, reason: info.reason }}),
                (error) => (window.wtClosed = {{ error: String(error) }}),
            );
            await wt.ready;
            const {{ value: stream }} = await wt.incomingBidirectionalStreams.getReader().read();
            const reader = stream.readable.getReader();
            await reader.read(); // the welcome
            window.wtUp = true;
            const writer = stream.writable.getWriter();
            {then}
        }})().catch((error) => (window.wtClosed = window.wtClosed || {{ failed: String(error) }}))"#
    )
}

const CLOSED: &str = "JSON.stringify(window.wtClosed ?? null)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reads_the_close_code_and_reason_of_a_session_the_server_ends() {
    let app = spawn_app_with(HubKind::Memory, |c| c.max_frame = 1024).await;
    let chromium = Chromium::launch(1000, 800).await;

    // A frame over --max-frame: 1009, as a WebSocket would close.
    let page = chromium.browser.new_page(app.url("/static/client.html?channels=none")).await.unwrap();
    let script = raw_session("?channels=big", "await writer.write(new TextEncoder().encode(' '.repeat(4096)));");
    page.evaluate(script).await.unwrap();
    let closed = wait_json(&page, CLOSED, "the session closed", |_| true).await;
    assert_eq!(closed["closeCode"], 1009, "WebTransport.closed resolves with the WebSocket close code: {closed}");
    assert!(closed["reason"].as_str().is_some_and(|r| !r.is_empty()), "and its reason: {closed}");

    // The lab changing this page's network: 1012, the reason saying why.
    let page = chromium.browser.new_page(app.url("/static/client.html?channels=none")).await.unwrap();
    page.evaluate(raw_session("?channels=lab&client=wtcode", "")).await.unwrap();
    wait_json(&page, "JSON.stringify(window.wtUp ?? null)", "the session up", |_| true).await;
    impair(&app, "wtcode", json!({"webtransport": "blocked"})).await;
    let closed = wait_json(&page, CLOSED, "the session closed", |_| true).await;
    assert_eq!(closed["closeCode"], 1012, "{closed}");
    assert_eq!(app.publish("big", json!(1)).await["seq"], 1, "the server goes on");
    chromium.close().await;
}

/// A measurement, not a test (`#[ignore]`): how long pushwire.js takes from
/// its start to being live (welcome and subscribed) when WebTransport works,
/// when only WebSocket is asked for, and when the lab drops UDP (the
/// deadline, then WebSocket). `scripts/webtransport.sh` (PARTS=browser) runs
/// it and docs/benchmarks.md quotes the table it prints; `ROUNDS` pages each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/webtransport.sh runs it"]
async fn measure_time_to_live_per_ladder() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(10);
    let app = spawn_app(HubKind::Memory).await;
    let chromium = Chromium::launch(1000, 800).await;
    println!("| ladder | live on | pages | median ms | p90 ms | min ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, extra, blocked) in [
        ("default (WebTransport first)", "", false),
        ("WebSocket only", "&transports=websocket", false),
        ("default, UDP blocked by the lab", "", true),
    ] {
        let (mut took, mut on) = (Vec::new(), None);
        for round in 0..rounds {
            let client = format!("ttl{}r{round}", name.len());
            if blocked {
                impair(&app, &client, json!({"webtransport": "blocked"})).await;
            }
            let url = app.url(&format!("/static/client.html?channels=ttl&client={client}{extra}"));
            let page = chromium.browser.new_page(url).await.unwrap();
            let log = wait_json(&page, LOG, "the client live", |l| current(l).is_some()).await;
            took.push(log["switchedAt"][0].as_u64().expect("switchedAt"));
            let transport = current(&log).unwrap().to_owned();
            assert!(on.get_or_insert(transport.clone()) == &transport, "{name}: always the same rung: {log}");
            page.close().await.unwrap();
        }
        took.sort_unstable();
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
        let on = on.unwrap_or_default();
        println!("| {name} | {on} | {rounds} | {} | {} | {} | {} |", at(0.5), at(0.9), took[0], took[took.len() - 1]);
    }
    chromium.close().await;
}
