//! The network lab as a teacher uses it: three clicks on the dashboard of a
//! page opened as `/?client=ID`, and the auto lane falls back from
//! WebTransport to SSE (the corporate network drops UDP and strips Upgrade),
//! to long polling, and comes back to WebTransport, losing nothing; a
//! swallowing relay makes the client give WebSocket up at its deadline;
//! another page keeps its transport throughout. Screenshots of each state go to `target/lab/`
//! (the README's come from there).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::Viewport;
use chromiumoxide::page::ScreenshotParams;
use serde_json::Value;
use tokio::time::Instant;

use super::{LANES, SUMMARY, auto_timeline, summary};
use crate::common::browser::{Chromium, eval_json, wait_json, wait_json_within};
use crate::common::*;

/// The auto lane's client opens a transport only once data flows within this.
const OPEN_DEADLINE: Duration = Duration::from_secs(4);
/// The probe interval the lab sets (the page's default).
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// Waits at most `limit` for `check` to hold on the page's summary.
async fn within(page: &Page, limit: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_json_within(page, SUMMARY, limit, what, check).await
}

fn no_gaps_or_duplicates(s: &Value, when: &str) {
    for lane in LANES {
        let l = &s[lane];
        assert_eq!((l["gaps"].as_u64(), l["dups"].as_u64()), (Some(0), Some(0)), "{lane} {when}: {l}");
    }
}

fn shot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lab");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

async fn screenshot(page: &Page, name: &str, full_page: bool) {
    // The charts and the timeline redraw every second: show the latest.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let shot = shot_path(name);
    page.save_screenshot(ScreenshotParams::builder().full_page(full_page).build(), &shot).await.unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real picture: {shot:?}");
}

/// Clicks a preset of the lab, and waits until the server applied it (`key` is `value`).
async fn preset(page: &Page, name: &str, (key, value): (&str, &str)) {
    let button = page.find_element(format!("[data-preset={name}]")).await.unwrap();
    button.click().await.unwrap();
    network_is(page, key, value).await;
}

/// Chooses `value` in a lab switch, as a user does.
async fn choose(page: &Page, select: &str, value: &str) {
    let js = format!(
        "(() => {{ const s = document.querySelector('{select}'); s.value = '{value}'; s.dispatchEvent(new Event('change')); }})()"
    );
    page.evaluate(js).await.unwrap();
}

/// Waits until the lab's state says `key` is `value` (the server answered the change).
async fn network_is(page: &Page, key: &str, value: &str) {
    let network = "JSON.stringify(window.pushwireDashboard.network())";
    wait_json(page, network, &format!("the lab to apply {key}={value}"), |n| n[key] == value).await;
}

/// Waits until the element shows `expected` (lanes render four times a second).
async fn shows(page: &Page, selector: &str, expected: &str) {
    let text = format!("JSON.stringify(document.querySelector('{selector}').innerText)");
    wait_json(page, &text, &format!("{selector} to show {expected:?}"), |t| t == expected).await;
}

fn reason<'a>(s: &'a Value, lane: &str) -> &'a str {
    s[lane]["reason"].as_str().unwrap_or("")
}

fn left_because<'a>(s: &'a Value, transport: &str) -> &'a str {
    s["auto"]["reasons"][transport].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clicks_make_the_client_fall_back_and_come_back_losing_nothing() {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 10.0).await;
    let chromium = Chromium::launch(1440, 1500).await;
    let page = chromium.browser.new_page(app.url("/?client=lab1")).await.unwrap();
    // Another tagged page, under another host name, so that the two pages do
    // not share the browser's six HTTP/1.1 connections per host.
    let other_url = format!("http://localhost:{}/?client=lab2", app.addr.port());
    let other = chromium.browser.new_page(other_url).await.unwrap();

    // Ten seconds of a normal network first, so that the charts show the change.
    let s = within(&page, PATIENCE * 3, "every lane live, the client on WebTransport", |s| {
        LANES.iter().all(|l| s[l]["received"].as_u64() >= Some(100)) && s["auto"]["transport"] == "webtransport"
    })
    .await;
    let other_start = summary(&other).await;
    no_gaps_or_duplicates(&s, "at the start");
    let id = eval_json(&page, "JSON.stringify(window.pushwireDashboard.clientId)").await;
    assert_eq!(id, "lab1", "the page took the id it was opened with");
    screenshot(&page, "1-normal", true).await;

    // Click 1: a corporate network: the firewall drops UDP, the proxy strips Upgrade.
    preset(&page, "proxy", ("websocket", "refuse")).await;
    network_is(&page, "webtransport", "blocked").await;
    let s = within(&page, Duration::from_secs(20), "the client on SSE, the raw lanes explaining", |s| {
        s["auto"]["transport"] == "sse"
            && s["websocket"]["status"] == "unavailable"
            && s["webtransport"]["status"] == "unavailable"
            && s["sse"]["status"] == "live"
    })
    .await;
    assert!(left_because(&s, "websocket").contains("before welcome"), "{s:#}");
    assert!(left_because(&s, "webtransport").contains("no answer over UDP within 2.5 s"), "{s:#}");
    assert!(reason(&s, "webtransport").contains("drops this page's QUIC packets"), "says why: {s:#}");
    assert!(reason(&s, "websocket").contains("426"), "says why: {s:#}");
    assert!(reason(&s, "websocket").contains("strips Upgrade"), "says why: {s:#}");
    shows(&page, "#lane-auto .negotiated", "negotiated transport: sse").await;
    no_gaps_or_duplicates(&s, "without WebSocket");
    screenshot(&page, "2-no-websocket", true).await;

    // Click 2: and an antivirus that buffers event streams.
    preset(&page, "antivirus", ("sse", "buffer")).await;
    let s = within(&page, Duration::from_secs(25), "the client on long polling", |s| {
        s["auto"]["transport"] == "long-poll" && s["sse"]["status"] == "stalled"
    })
    .await;
    assert!(left_because(&s, "sse").contains("no event within the deadline"), "{s:#}");
    assert!(left_because(&s, "websocket").contains("before welcome"), "both reasons shown: {s:#}");
    assert!(reason(&s, "sse").contains("holds it until 64 KiB or 30 s"), "{s:#}");
    no_gaps_or_duplicates(&s, "with SSE buffered too");
    // Let the client probe once, so that the picture shows it trying.
    let probes = s["auto"]["probes"].as_u64().unwrap();
    let s = within(&page, PROBE_INTERVAL + OPEN_DEADLINE * 3, "a failed probe", |s| {
        s["auto"]["probes"].as_u64() > Some(probes)
    })
    .await;
    assert_eq!(s["auto"]["transport"], "long-poll", "probes fail while the network is bad: {s:#}");
    screenshot(&page, "3-buffered-sse-too", true).await;

    // Click 3: back to normal; the next probe finds WebTransport again.
    preset(&page, "normal", ("websocket", "ok")).await;
    let s = within(&page, PROBE_INTERVAL + Duration::from_secs(15), "the client back on WebTransport", |s| {
        s["auto"]["transport"] == "webtransport"
            && s["webtransport"]["status"] == "live"
            && s["websocket"]["status"] == "live"
            && s["sse"]["status"] == "live"
    })
    .await;
    no_gaps_or_duplicates(&s, "after recovering");
    // The raw WebSocket lane was refused for two clicks: back, it resumes from its
    // cursor, and what it missed comes as a replay, counted apart from its latency.
    let replayed =
        within(&page, PATIENCE, "the WebSocket lane's replay", |s| s["websocket"]["replayed"].as_u64() >= Some(10))
            .await;
    let ws = &replayed["websocket"];
    let catch_up = ws["catchUpMs"].as_f64().unwrap_or_else(|| panic!("a catch-up delay: {ws}"));
    assert!(catch_up > 2000.0, "the replay waited out the outage: {ws}");
    let p99 = ws["p99"].as_f64().unwrap_or_else(|| panic!("live deliveries: {ws}"));
    assert!(p99 < 2000.0 && p99 < catch_up / 2.0, "live latency, not the outage's: {ws}");
    let (auto_events, timeline) = auto_timeline(&page).await;
    for (kind, label) in [("fallback", "→ sse"), ("fallback", "→ long-poll"), ("upgrade", "→ webtransport")] {
        let expected = (kind.to_owned(), label.to_owned());
        assert!(auto_events.contains(&expected), "the timeline shows {expected:?}: {auto_events:?}");
    }
    // The lab's cuts: a WebSocket is told 1012, and so is the client's WebTransport
    // session (its CLOSE_WEBTRANSPORT_SESSION capsule).
    let closed = |lane: &str, label: &str| {
        timeline.as_array().unwrap().iter().any(|e| e["lane"] == lane && e["kind"] == "close" && e["label"] == label)
    };
    assert!(closed("websocket", "1012") && closed("auto", "1012"), "{timeline:#}");
    // A moment on WebSocket, so that the latency chart shows it again.
    within(&page, PATIENCE, "messages over WebSocket again", |n| {
        n["auto"]["received"].as_u64() >= s["auto"]["received"].as_u64().map(|r| r + 10)
    })
    .await;
    screenshot(&page, "4-recovered", true).await;

    // A relay that swallows frames: with UDP dropped, the client is on WebSocket,
    // and gives it up at its deadline.
    choose(&page, "#lab-webtransport", "blocked").await;
    network_is(&page, "webtransport", "blocked").await;
    within(&page, PATIENCE, "the client on WebSocket", |s| s["auto"]["transport"] == "websocket").await;
    let changed = Instant::now(); // before the change, so that its cut comes after
    choose(&page, "#lab-websocket", "swallow").await;
    network_is(&page, "websocket", "swallow").await;
    let s = within(&page, PATIENCE * 2, "the client off a silent WebSocket", |s| s["auto"]["transport"] == "sse").await;
    assert!(changed.elapsed() >= OPEN_DEADLINE, "it waited for its deadline: {:?}", changed.elapsed());
    assert!(left_because(&s, "websocket").contains("no welcome within the deadline"), "{s:#}");
    let s = within(&page, PATIENCE, "the raw lane explaining the silence", |s| {
        reason(s, "websocket").contains("upgraded (101), then silence")
    })
    .await;
    assert_eq!(s["websocket"]["status"], "unavailable", "{s:#}");
    no_gaps_or_duplicates(&s, "with a swallowing relay");
    preset(&page, "normal", ("websocket", "ok")).await;

    // The other page never noticed. (It is on `localhost`, which Chromium resolves
    // to ::1 first for QUIC, where the server does not listen: it may be on
    // WebSocket, having found WebTransport refused at once.)
    let o = summary(&other).await;
    assert_eq!(o["auto"]["transport"], other_start["auto"]["transport"], "{o:#}");
    assert_eq!((o["auto"]["reconnects"].as_u64(), o["websocket"]["reconnects"].as_u64()), (Some(0), Some(0)), "{o:#}");
    assert_eq!(o["websocket"]["status"], "live", "{o:#}");
    assert!(o["websocket"]["received"].as_u64() >= Some(100), "it kept receiving: {o:#}");
    no_gaps_or_duplicates(&o, "on the other page");
    chromium.close().await;
}

/// The parts of each lane (the auto lane's, then the four others') and of the
/// compression panel that overlap another or overflow themselves, as text; and
/// whether the page scrolls sideways.
const LAYOUT_FAULTS: &str = r#"(() => {
  const faults = [];
  const check = (root, selector) => {
    const parts = [...root.querySelectorAll(selector)].filter((e) => e.textContent.trim() !== "");
    const boxes = parts.map((e) => [e, e.getBoundingClientRect()]);
    for (const [i, [a, ra]] of boxes.entries()) {
      if (a.scrollWidth > a.clientWidth + 1 && getComputedStyle(a).display !== "inline" && getComputedStyle(a).overflowX !== "auto") faults.push(`${root.id}: ${a.className || a.tagName} overflows itself`);
      for (const [b, rb] of boxes.slice(i + 1)) {
        if (a.contains(b) || b.contains(a)) continue;
        const x = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
        const y = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
        if (x > 0.5 && y > 0.5) faults.push(`${root.id}: ${a.tagName}.${a.className} "${a.textContent}" over ${b.tagName}.${b.className} "${b.textContent}"`);
      }
    }
  };
  check(document.getElementById("lane-auto"), "h2, .status, .negotiated, .reasons li, .probe, .wire-terms, .big > div > *");
  for (const lane of document.querySelectorAll(".lane:not(.auto)")) check(lane, "h2, .status, .reason, .big > div > *, dt, dd, .wire-terms, .recent");
  const encoding = document.querySelector(".encoding");
  encoding.id = encoding.id || "encoding";
  check(encoding, "figure, figcaption, table, #decode-verdict, #decode-again");
  check(document.querySelector(".controls"), "form, label, #wire-choice, #drop");
  // Five transport lanes, side by side or wrapped, none over another.
  const lanes = [...document.querySelectorAll(".lane:not(.auto)")];
  if (lanes.length !== 5) faults.push(`${lanes.length} transport lanes, not 5`);
  const rects = lanes.map((l) => [l.id, l.getBoundingClientRect()]);
  for (const [i, [a, ra]] of rects.entries()) {
    if (ra.width < 150) faults.push(`${a} is ${ra.width} px wide`);
    for (const [b, rb] of rects.slice(i + 1)) {
      if (Math.min(ra.right, rb.right) > Math.max(ra.left, rb.left) && Math.min(ra.bottom, rb.bottom) > Math.max(ra.top, rb.top)) faults.push(`${a} over ${b}`);
    }
  }
  if (document.documentElement.scrollWidth > innerWidth + 1) faults.push(`the page is ${document.documentElement.scrollWidth} px wide at ${innerWidth}`);
  return JSON.stringify(faults);
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_the_lanes_overlaps_from_1000_px_up() {
    let app = spawn_app_with(HubKind::Memory, |c| c.demo_rate = 10.0).await;
    // A prepared lab: the page opens with UDP dropped and WebSocket refused, so
    // the auto lane shows its longest content (two reasons and the probes).
    let body = r#"{"websocket": "refuse", "webtransport": "blocked"}"#;
    let response = app.http.post(app.url("/api/inspect/layout/impair")).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let chromium = Chromium::launch(1920, 1200).await;
    let page = chromium.browser.new_page(app.url("/?client=layout")).await.unwrap();
    within(&page, PATIENCE * 2, "the client on SSE with figures", |s| {
        s["auto"]["transport"] == "sse" && s["auto"]["p50"].is_number() && s["auto"]["bytesPerMessage"].is_number()
    })
    .await;
    // The compression panel at its fullest too: the decode cost measured, a frame shown.
    wait_json(&page, "JSON.stringify(window.pushwireDashboard.decodeCost())", "the decode cost", |c| c.is_array())
        .await;
    for width in [1000, 1440, 1920] {
        page.execute(SetDeviceMetricsOverrideParams::new(width, 1200, 1.0, false)).await.unwrap();
        // Two frames, so that layout has followed the new width.
        page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))").await.unwrap();
        let faults = eval_json(&page, LAYOUT_FAULTS).await;
        assert_eq!(faults, Value::Array(vec![]), "at {width} px");
        // The auto lane, and all the lanes, where they are on the page (clip coordinates are the document's).
        for (selector, name) in [("#lane-auto", "auto-lane"), (".lanes", "lanes")] {
            let bounds = format!(
                "JSON.stringify((() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
                 return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }})())"
            );
            let b: Vec<f64> = serde_json::from_value(eval_json(&page, &bounds).await).unwrap();
            let clip = Viewport { x: b[0], y: b[1], width: b[2], height: b[3], scale: 1.0 };
            let params = ScreenshotParams::builder().clip(clip).capture_beyond_viewport(true).build();
            let shot = shot_path(&format!("{name}-{width}"));
            page.save_screenshot(params, &shot).await.unwrap();
            assert!(std::fs::metadata(&shot).unwrap().len() > 5_000, "a real picture of {selector}: {shot:?}");
        }
    }
    chromium.close().await;
}
