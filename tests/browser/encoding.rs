//! API.md v1.2 in the browser: the dashboard's lanes negotiate compression and
//! show what it saves, and the pushwire.js client with `encoding: "msgpack"`
//! receives every message once, its MessagePack codec agreeing with the
//! server's byte for byte and value for value.

use chromiumoxide::Page;
use serde_json::{Value, json};

use super::wait_for;
use crate::common::browser::{Chromium, eval_json, wait_json};
use crate::common::*;

const CLIENT_LOG: &str = "window.clientLog ? JSON.stringify(window.clientLog) : null";

/// Chooses `value` in one of the dashboard's selects, as a user does.
async fn choose(page: &Page, select: &str, value: &str) {
    let js = format!(
        "(() => {{ const s = document.querySelector('{select}'); s.value = '{value}'; s.dispatchEvent(new Event('change')); }})()"
    );
    page.evaluate(js).await.unwrap();
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_negotiates_deflate_and_shows_bytes_on_the_wire_and_before_compression() {
    // 1 KB of repetitive JSON a message: above the 256 B minimum, and it deflates well.
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.demo_rate = 20.0;
        c.demo_payload = 1000;
    })
    .await;
    let chromium = Chromium::launch(1440, 1200).await;
    let page = chromium.browser.new_page(app.url("/?client=deflate")).await.unwrap();

    let s = wait_for(&page, "the lanes compressed, with both byte counts", |s| {
        s["websocket"]["negotiated"]["extensions"].as_str().is_some_and(|e| e.contains("permessage-deflate"))
            && s["sse"]["negotiated"]["contentEncoding"] == "gzip"
            && ["webtransport", "websocket", "sse", "long-poll", "poll", "auto"]
                .iter()
                .all(|l| s[l]["received"].as_u64() >= Some(10) && s[l]["uncompressedBytesPerMessage"].is_number())
    })
    .await;
    // The browser's own view of the handshake: the server's answer to its offer.
    let extensions = s["websocket"]["negotiated"]["extensions"].as_str().unwrap();
    assert!(extensions.starts_with("permessage-deflate; server_no_context_takeover"), "{extensions}");
    assert_eq!(s["websocket"]["negotiated"]["subprotocol"], "", "JSON asks for no subprotocol");
    for lane in ["long-poll", "poll"] {
        assert_eq!(s[lane]["negotiated"]["contentEncoding"], "gzip", "{lane}: {s:#}");
    }
    for lane in ["websocket", "sse"] {
        let (wire, before) =
            (number(&s[lane]["bytesPerMessage"], lane), number(&s[lane]["uncompressedBytesPerMessage"], lane));
        assert!(wire * 3.0 < before, "{lane}: {wire} B a message on the wire against {before} B before compression");
        assert!(before > 1000.0, "{lane}: a 1 KB message is over 1 KB before compression: {before}");
    }
    // The client is on WebTransport, whose stream is not compressed (API.md v1.2): the
    // same bytes before and after, all of the 1 KB and QUIC's own besides.
    assert_eq!(s["auto"]["transport"], "webtransport", "{s:#}");
    for lane in ["webtransport", "auto"] {
        let (wire, before) =
            (number(&s[lane]["bytesPerMessage"], lane), number(&s[lane]["uncompressedBytesPerMessage"], lane));
        assert!(wire > 1000.0 && (wire - before).abs() < 1.0, "{lane}: {wire} B on the wire, {before} B before");
    }
    let shown = eval_json(
        &page,
        "JSON.stringify(document.querySelector('#lane-websocket [data-field=negotiated]').textContent)",
    )
    .await;
    assert!(
        shown.as_str().unwrap().contains("permessage-deflate; server_no_context_takeover"),
        "the lane says it: {shown}"
    );
    let stats = app.stats().await;
    assert_eq!(stats["compression"]["websocket"], "on", "{stats}");
    let ws = &stats["transports"]["websocket"];
    assert!(ws["bytes_sent_uncompressed"].as_u64() > ws["bytes_sent"].as_u64().map(|b| b * 2), "{ws}");

    // The teaching panel: a frame before and after, and the message in MessagePack.
    let text = |name: &'static str| {
        let page = &page;
        async move {
            let js = format!("JSON.stringify(document.querySelector('[data-raw=\"{name}\"]').textContent)");
            wait_json(page, &js, name, |t| !t.as_str().unwrap_or("").starts_with("waiting"))
                .await
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let frame = text("deflate-frame").await;
    for expected in ["RSV1 1 (compressed)", "00 00 ff ff", "gives back", "its frames go as \"after\""] {
        assert!(frame.contains(expected), "{expected:?} in {frame}");
    }
    let packed = text("msgpack-message").await;
    assert!(packed.contains("fixmap of 5 entries") && packed.contains("\"message\"  (fixstr, 7 bytes)"), "{packed}");

    // Compression off for this page's lanes: the browser still offers deflate, the server declines.
    choose(&page, "#compression", "off").await;
    let s = wait_for(&page, "the lanes back, uncompressed", |s| {
        s["websocket"]["negotiated"]["extensions"] == ""
            && s["long-poll"]["negotiated"]["contentEncoding"] == "identity"
            && s["websocket"]["status"] == "live"
    })
    .await;
    let before = s["websocket"]["received"].as_u64().unwrap();
    let s = wait_for(&page, "20 messages uncompressed, counted", |s| {
        s["websocket"]["received"].as_u64() >= Some(before + 20) && s["websocket"]["bytesPerMessage"].is_number()
    })
    .await;
    let (wire, plain) = (
        number(&s["websocket"]["bytesPerMessage"], "wire"),
        number(&s["websocket"]["uncompressedBytesPerMessage"], "plain"),
    );
    // Counted from the lane's reconnection on: nothing of it compressed.
    assert!(wire > 1000.0 && wire >= plain * 0.98, "uncompressed, the wire carries it all: {wire} against {plain}");
    for lane in super::LANES {
        let l = &s[lane];
        assert_eq!((l["gaps"].as_u64(), l["dups"].as_u64()), (Some(0), Some(0)), "{lane} after the switch: {l}");
    }
    let inspected = app.get("/api/inspect/deflate").await.1;
    let request = inspected["transports"]["websocket"]["request"].as_str().unwrap().to_lowercase();
    assert!(
        request.contains("compression=off") && request.contains("sec-websocket-extensions: permessage-deflate"),
        "{request}"
    );

    // The decode cost, measured in this browser: three sizes, every figure a time.
    let cost =
        wait_json(&page, "JSON.stringify(window.pushwireDashboard.decodeCost())", "the decode cost", |c| c.is_array())
            .await;
    for row in cost.as_array().unwrap() {
        for k in ["jsonParseUs", "bytesJsonParseUs", "msgpackUs"] {
            let us = number(&row[k], k);
            assert!(us > 0.0 && us < 1000.0, "{k} {us} µs: {row}");
        }
        assert!(row["msgpackBytes"].as_u64() < row["jsonBytes"].as_u64(), "MessagePack is the smaller: {row}");
        eprintln!(
            "decode cost {}: JSON.parse {:.2} µs, TextDecoder+JSON.parse {:.2} µs, MessagePack {:.2} µs ({} B JSON, {} B MessagePack)",
            row["label"],
            row["jsonParseUs"],
            row["bytesJsonParseUs"],
            row["msgpackUs"],
            row["jsonBytes"],
            row["msgpackBytes"]
        );
    }
    chromium.close().await;
}

/// Opens client.html with `encoding=msgpack` on one transport, tagged `client`,
/// and waits until that transport delivers.
async fn msgpack_client(chromium: &Chromium, app: &TestApp, channel: &str, transport: &str, client: &str) -> Page {
    let url = app.url(&format!(
        "/static/client.html?channels={channel}&encoding=msgpack&transports={transport}&client={client}"
    ));
    let page = chromium.browser.new_page(url).await.unwrap();
    let log = wait_json(&page, CLIENT_LOG, &format!("the client on {transport}"), |l| {
        l["transports"].as_array().is_some_and(|t| !t.is_empty())
            && l["states"].as_array().unwrap().contains(&json!("open"))
    })
    .await;
    assert_eq!(log["transports"], json!([transport]), "{log}");
    assert_eq!(log["negotiated"][0]["encoding"], "msgpack", "{log}");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_with_msgpack_receives_every_message_once_over_websocket_and_long_polling() {
    const N: u64 = 60;
    let app = spawn_app(HubKind::Memory).await;
    let chromium = Chromium::launch(1000, 800).await;
    for (transport, channel) in [("websocket", "mpws"), ("long-poll", "mplp")] {
        let id = format!("{}client", channel);
        let page = msgpack_client(&chromium, &app, channel, transport, &id).await;
        // Big enough to be compressed on the way, with integers of several widths.
        for i in 1..=N {
            let data = json!({"i": i, "big": (1u64 << 40) + i, "neg": -(i as i64) * 1000, "text": "ü".repeat(150)});
            app.publish(channel, data).await;
        }
        let log = wait_json(&page, CLIENT_LOG, &format!("{N} messages over {transport}"), |l| {
            l["seqs"][channel].as_array().is_some_and(|s| s.len() as u64 >= N)
        })
        .await;
        let seqs: Vec<u64> = serde_json::from_value(log["seqs"][channel].clone()).unwrap();
        assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "{transport}: every message once, in order");
        assert_eq!(log["transports"], json!([transport]), "{transport}: it never fell back: {log}");

        // What went over the wire, as the server saw it: MessagePack asked for (and, by
        // the client's `negotiated`, read from the answers' Content-Type, sent).
        let inspected = app.get(&format!("/api/inspect/{id}")).await.1;
        let lane = &inspected["transports"][if transport == "websocket" { "websocket" } else { "long_poll" }];
        let request = lane["request"].as_str().unwrap().to_lowercase();
        if transport == "websocket" {
            assert!(request.contains("sec-websocket-protocol: pushwire.msgpack"), "{request}");
            let response = lane["response"].as_str().unwrap().to_lowercase();
            assert!(response.contains("sec-websocket-protocol: pushwire.msgpack"), "the 101: {response}");
            assert_eq!(log["negotiated"][0]["subprotocol"], "pushwire.msgpack", "{log}");
        } else {
            // The latest request is held, its answer not yet written: its head is what there is.
            assert!(request.contains("accept: application/msgpack"), "{request}");
        }
        page.close().await.unwrap();
    }
    chromium.close().await;
}

/// MessagePack the server never sends (float 32, bin, headers wider than needed) and
/// the shortest forms the encoder must write, checked against the spec's bytes.
const CODEC_VECTORS: &str = r#"(() => {
  const { encode, decode } = globalThis.pushwire.msgpack;
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const show = (v) =>
    typeof v === "bigint" ? `${v}n` : typeof v === "number" ? `number ${Object.is(v, -0) ? "-0" : v}` : v instanceof Uint8Array ? `bin ${hex(v)}` : JSON.stringify(v);
  const failures = [];
  const ff = (n) => Array(n).fill(0xff);
  const decoded = [
    [[0xc0], null], [[0xc2], false], [[0xc3], true], [[0x7f], 127], [[0xe0], -32],
    [[0xcc, 0xff], 255], [[0xcd, 1, 0], 256], [[0xce, ...ff(4)], 4294967295], [[0xcf, 0, 0, 0, 1, 0, 0, 0, 0], 4294967296],
    [[0xcf, 0, 0x1f, ...ff(6)], 9007199254740991], [[0xcf, 0, 0x20, 0, 0, 0, 0, 0, 1], 9007199254740993n], [[0xcf, ...ff(8)], 18446744073709551615n],
    [[0xd0, 0x80], -128], [[0xd1, 0x80, 0], -32768], [[0xd2, 0x80, 0, 0, 0], -2147483648], [[0xd3, ...ff(8)], -1],
    [[0xd3, 0xff, 0xe0, 0, 0, 0, 0, 0, 1], -9007199254740991], [[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], -9223372036854775808n],
    [[0xca, 0x3f, 0xc0, 0, 0], 1.5], [[0xca, 0xff, 0x80, 0, 0], -Infinity], [[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0], 1.5],
    [[0xa3, 0x61, 0x62, 0x63], "abc"], [[0xd9, 3, 0x61, 0x62, 0x63], "abc"], [[0xda, 0, 3, 0x61, 0x62, 0x63], "abc"],
    [[0xdb, 0, 0, 0, 3, 0x61, 0x62, 0x63], "abc"], [[0xa2, 0xc3, 0xa9], "é"], [[0xa4, 0xf0, 0x9d, 0x84, 0x9e], "𝄞"],
    [[0xc4, 2, 1, 2], new Uint8Array([1, 2])], [[0xc5, 0, 1, 9], new Uint8Array([9])], [[0xc6, 0, 0, 0, 0], new Uint8Array([])],
    [[0x92, 1, 2], [1, 2]], [[0xdc, 0, 2, 1, 2], [1, 2]], [[0xdd, 0, 0, 0, 2, 1, 2], [1, 2]],
    [[0x81, 0xa1, 0x61, 1], { a: 1 }], [[0xde, 0, 1, 0xa1, 0x61, 1], { a: 1 }], [[0xdf, 0, 0, 0, 1, 0xa1, 0x61, 1], { a: 1 }],
    [[0x81, 0xa9, ...new TextEncoder().encode("__proto__"), 1], JSON.parse('{"__proto__": 1}')],
  ];
  for (const [bytes, expected] of decoded) {
    let got;
    try { got = decode(new Uint8Array(bytes)); } catch (e) { got = `error: ${e.message}`; }
    if (show(got) !== show(expected) || Object.getPrototypeOf(got ?? 0) !== Object.getPrototypeOf(expected ?? 0)) failures.push(`decode ${hex(bytes)}: ${show(got)}, not ${show(expected)}`);
  }
  const shortest = [[127, "7f"], [128, "cc80"], [-32, "e0"], [-33, "d0df"], [65535, "cdffff"], [65536, "ce00010000"], [4294967296, "cf0000000100000000"],
    [-2147483649, "d3ffffffff7fffffff"], [2n ** 64n - 1n, "cfffffffffffffffff"], [5n, "05"], [0.5, "cb3fe0000000000000"], ["", "a0"],
    ["x".repeat(31), "bf" + "78".repeat(31)], ["x".repeat(32), "d920" + "78".repeat(32)], ["é".repeat(16), "d920" + "c3a9".repeat(16)],
    [new Uint8Array([7]), "c40107"], [[], "90"], [{}, "80"], [{ a: undefined, b: 1 }, "81a16201"], [[undefined], "91c0"]];
  for (const [value, expected] of shortest) {
    const got = hex(encode(value));
    if (got !== expected) failures.push(`encode ${show(value)}: ${got}, not ${expected}`);
  }
  for (const bad of [[0xc1], [0xd4, 1, 1], [0xa5, 0x61], [0xdd, 0xff, 0xff, 0xff, 0xff], [0x91], [0xc0, 0xc0]]) {
    try { failures.push(`decode ${hex(bad)} gave ${show(decode(new Uint8Array(bad)))}, not an error`); } catch {}
  }
  try { failures.push(`encode 2^64 gave ${hex(encode(2n ** 64n))}, not an error`); } catch {}
  return JSON.stringify(failures);
})()"#;

/// Publishes each value MessagePack-encoded by the page, receives it back over
/// the page's MessagePack WebSocket, and compares; returns the failures and each
/// value as exact JSON (BigInts as raw numbers), for the server's JSON view.
const ROUND_TRIP: &str = r#"(async () => {
  const { encode } = globalThis.pushwire.msgpack;
  const client = window.pushwireClient;
  const values = [
    null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 9007199254740991,
    -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9007199254740991,
    18446744073709551615n, 9223372036854775807n, 9007199254740993n, -9223372036854775808n,
    0.5, 1.1, -1e300, 5e-324, 1.7976931348623157e308,
    "", "x".repeat(31), "x".repeat(32), "y".repeat(255), "z".repeat(256), "w".repeat(65535), "v".repeat(70000), "héllo wörld ✓ 𝄞 日本",
    [], [1, [2, [3, []]]], Array.from({ length: 16 }, (_, i) => i), new Array(65536).fill(0),
    {}, { nested: { a: [1, { b: null }], "": "empty key", "ключ": "значение" } },
    Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i])), Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, -i])),
    JSON.parse('{"__proto__": {"polluted": true}}'),
  ];
  const same = (a, b) => {
    if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return a === b || (Number.isNaN(a) && Number.isNaN(b));
    if (Array.isArray(a) !== Array.isArray(b) || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
    // A map's order is not part of its value (the server may sort its keys).
    const [ka, kb] = [Object.keys(a).sort(), Object.keys(b).sort()];
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
  };
  const received = new Map();
  let allIn;
  const done = new Promise((resolve) => (allIn = resolve));
  client.on("message", (m) => {
    received.set(m.seq, m.data);
    if (received.size === values.length) allIn();
  });
  const failures = [];
  const seqs = [];
  for (const value of values) {
    const response = await fetch("../channels/codec/messages", { method: "POST", headers: { "content-type": "application/msgpack" }, body: encode(value) });
    const answer = await response.json();
    if (response.status !== 201) failures.push(`publish ${String(value).slice(0, 40)}: ${response.status} ${JSON.stringify(answer)}`);
    seqs.push(answer.seq);
  }
  const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 10000));
  if ((await Promise.race([done, timeout])) === "timeout") failures.push(`only ${received.size} of ${values.length} came back`);
  values.forEach((value, i) => {
    const back = received.get(seqs[i]);
    if (!same(back, value)) failures.push(`seq ${seqs[i]}: sent ${String(value).slice(0, 40)}, got ${String(back).slice(0, 40)} (${typeof back})`);
  });
  const exact = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? JSON.rawJSON(String(x)) : x));
  return JSON.stringify({ failures, json: values.map(exact), seqs });
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_msgpack_codec_round_trips_every_type_through_the_server() {
    // Room for the str 32 and array 32 values (over 64 KiB each).
    let app = spawn_app_with(HubKind::Memory, |c| c.max_body = 1 << 20).await;
    let chromium = Chromium::launch(1000, 800).await;
    let page = msgpack_client(&chromium, &app, "codec", "websocket", "codec").await;

    let failures = eval_json(&page, CODEC_VECTORS).await;
    assert_eq!(failures, json!([]), "the codec against the spec's bytes");

    let result = eval_json(&page, ROUND_TRIP).await;
    assert_eq!(result["failures"], json!([]), "page → server → page");
    // The server's own decoder agrees: its JSON of each message is the value the page encoded.
    let sent: Vec<Value> =
        result["json"].as_array().unwrap().iter().map(|j| serde_json::from_str(j.as_str().unwrap()).unwrap()).collect();
    let (status, answer) = app.get("/poll?channels=codec&cursor=codec:0").await;
    assert_eq!(status, 200);
    let delivered: Vec<&Value> = answer["messages"].as_array().unwrap().iter().map(|m| &m["data"]).collect();
    assert_eq!(delivered.len(), sent.len(), "every value in one answer");
    for (i, (got, want)) in delivered.iter().zip(&sent).enumerate() {
        assert_eq!(*got, want, "value {i} as the server reads it");
    }
    chromium.close().await;
}
