//! Behind a path-based gateway: nginx mounts the server at `/pushwire/`, the
//! way the README shows (`location /pushwire/ { proxy_pass
//! http://upstream/pushwire/; }`, the server started with `--base-path
//! /pushwire`). The transports, the dashboard and the client page all work
//! there; the pages build every URL from where they were loaded, so they
//! also work behind a gateway that strips the prefix from a server at the root.

use std::path::Path;

use chromiumoxide::page::ScreenshotParams;
use serde_json::{Value, json};

use super::*;
use common::nginx::Mount;

const BASE: &str = "/pushwire";

/// The README's block: the prefix is kept on the way to the server.
const KEEPS_PREFIX: Mount = Mount { at: "/pushwire/", to: "/pushwire/" };
/// A gateway in front of a server at the root: the prefix is taken off.
const STRIPS_PREFIX: Mount = Mount { at: "/pushwire/", to: "/" };

/// A server under `base` with the demo stream, and nginx mounting it at `mount`.
async fn gateway(base: &str, mount: Mount) -> (TestApp, Nginx) {
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.base_path = base.parse().unwrap();
        c.demo_rate = 10.0;
    })
    .await;
    let nginx = Nginx::start_at(app.addr, Proxy::PassThrough, mount).await;
    (app, nginx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_and_publish_work_through_the_gateway() {
    let (app, nginx) = gateway(BASE, KEEPS_PREFIX).await;
    let http = reqwest::Client::new();
    let mut ws = Ws::connect(&nginx.url("/pushwire/ws?channels=gw").replace("http://", "ws://")).await;
    ws.handshake(1).await;
    let mut sse = Sse::open(&http, &nginx.url("/pushwire/sse?channels=gw"), None).await;
    assert_eq!(sse.status, 200);
    sse.expect("subscribed").await;
    let published = http.post(nginx.url("/pushwire/channels/gw/messages")).json(&json!({"via": "gateway"})).send();
    let published = published.await.unwrap();
    assert_eq!(published.status(), 201);
    assert_eq!(ws.expect("message").await["data"], json!({"via": "gateway"}));
    assert_eq!(sse.expect("message").await.json()["seq"], 1);
    for path in ["/pushwire/long-poll?channels=gw&cursor=gw:0&timeout=5", "/pushwire/poll?channels=gw&cursor=gw:0"] {
        let answer: Value = http.get(nginx.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["messages"][0]["data"], json!({"via": "gateway"}), "{path}: {answer}");
    }
    assert_eq!(http.get(nginx.url("/poll?channels=gw")).send().await.unwrap().status(), 404, "nothing at the root");
    let stats = app.stats().await;
    for transport in ["websocket", "sse", "long_poll", "poll", "publish"] {
        assert_eq!(stats["transports"][transport]["requests"], 1, "{transport}: {stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_page_negotiates_websocket_under_the_prefix() {
    let (app, nginx) = gateway(BASE, KEEPS_PREFIX).await;
    let chromium = Chromium::launch(1200, 900).await;
    let url = nginx.url("/pushwire/static/client.html?channels=demo&probe=1000&deadline=2000");
    let page = chromium.browser.new_page(url).await.unwrap();
    let log = wait_on(&page, "websocket", 20).await;
    assert_eq!(log["transports"], json!(["websocket"]), "no detour: {}", reasons(&page).await);
    assert_gap_free(&log);
    assert!(app.stats().await["transports"]["websocket"]["connections_open"].as_u64() >= Some(1));
    chromium.close().await;
}

const SUMMARY: &str = "window.pushwireDashboard ? JSON.stringify(window.pushwireDashboard.summary()) : null";
const LANES: [&str; 5] = ["websocket", "sse", "long-poll", "poll", "auto"];

/// Loads the dashboard at the gateway's `/pushwire/` and waits for every lane
/// to be live, gap-free and counted; returns the summary.
async fn dashboard_through(mount: Mount, base: &str, screenshot: &str) -> Value {
    let (_app, nginx) = gateway(base, mount).await;
    let chromium = Chromium::launch(1600, 1500).await;
    let page = chromium.browser.new_page(nginx.url("/pushwire/")).await.unwrap();
    let s = wait_json(&page, SUMMARY, "five live lanes with byte counts", |s| {
        LANES.iter().all(|l| s[l]["received"].as_u64() >= Some(5) && s[l]["bytesPerMessage"].is_number())
    })
    .await;
    for lane in LANES {
        let l = &s[lane];
        assert_eq!(l["status"], "live", "{lane}: {l}");
        assert_eq!((l["gaps"].as_u64(), l["dups"].as_u64()), (Some(0), Some(0)), "{lane}: {l}");
    }
    assert_eq!(s["auto"]["transport"], "websocket", "{s:#}");
    // The clock was read through the prefix, and the stylesheet applied.
    let clock = common::browser::eval_json(&page, "JSON.stringify(document.querySelector('#clock').textContent)").await;
    assert!(clock.as_str().unwrap().starts_with("clock offset "), "{clock}");
    let styled = "JSON.stringify(getComputedStyle(document.querySelector('header.top')).display)";
    assert_eq!(common::browser::eval_json(&page, styled).await, "flex", "site.css did not load");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(screenshot);
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &shot).await.unwrap();
    chromium.close().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_under_the_prefix() {
    dashboard_through(KEEPS_PREFIX, BASE, "dashboard-base-path.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_behind_a_gateway_that_strips_the_prefix() {
    dashboard_through(STRIPS_PREFIX, "/", "dashboard-stripped-prefix.png").await;
}
