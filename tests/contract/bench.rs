//! `pushwire bench`, the real binary: a small run receives every message
//! exactly once on every transport and writes its report; its byte counts
//! agree with the server's own socket counters; it asks for compression and
//! MessagePack as API.md v1.2 says and reads what comes; it follows a channel
//! over WebTransport too, and reports a server without it as unavailable;
//! bad input is one line on stderr and exit code 2.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;

/// The small load of these tests: 3 clients per transport, 20 msg/s for 2 s.
const SMALL: [&str; 7] = ["--clients", "3", "--rate", "20", "--duration", "2s", "--no-progress"];
const PUBLISHED: u64 = 40;

async fn bench(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pushwire"))
            .arg("bench")
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run pushwire bench")
    })
    .await
    .unwrap()
}

fn small(extra: &[&str]) -> Vec<String> {
    SMALL.iter().chain(extra).map(|a| a.to_string()).collect()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pushwire-bench-test-{}-{name}", std::process::id()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &PathBuf) -> Value {
    let json = std::fs::read_to_string(path).expect("the JSON report was written");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

#[tokio::test]
async fn a_small_run_delivers_every_message_once_on_every_transport_and_writes_its_report() {
    let (json, svg) = (temp("run.json"), temp("run.svg"));
    // Uncompressed, so that every delivery carries its 100 B payload on the wire.
    let args = ["--compression", "off", "--json", json.to_str().unwrap(), "--svg", svg.to_str().unwrap()];
    let out = bench(small(&args)).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}; stderr: {}; stdout: {stdout}", out.status, text(&out.stderr));

    let report = read_json(&json);
    assert_eq!(report["in_process"], true);
    assert_eq!(report["published"], PUBLISHED, "{report}");
    let rows = report["transports"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|t| t["transport"].as_str().unwrap()).collect();
    assert_eq!(names, ["websocket", "sse", "long-poll", "poll"]);
    for t in rows {
        let name = &t["transport"];
        assert_eq!(t["connected"], 3, "{name}: {t}");
        assert_eq!(t["deliveries"], 3 * PUBLISHED, "{name}: deliveries = clients × published: {t}");
        assert_eq!(t["missing"], 0, "{name}: {t}");
        assert_eq!(t["duplicates"], 0, "{name}: {t}");
        let latency = &t["latency_us"];
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(latency[p].as_u64().is_some(), "{name}: latency {p} in {t}");
        }
        assert!(latency["p50"].as_u64() <= latency["max"].as_u64(), "{name}: {t}");
        assert!(t["wire_bytes_per_delivery"].as_f64().unwrap() > 100.0, "{name}: a 100 B payload and more: {t}");
        assert!(t["requests_per_delivery"].as_f64().unwrap() > 0.0, "{name}: {t}");
        assert!(t["empty_polls"].as_u64().is_some(), "{name}: {t}");
        assert!(stdout.lines().any(|l| l.starts_with(name.as_str().unwrap())), "{name}: a table row: {stdout}");
    }
    // Short polls ask once a second: their median is hundreds of ms, the streams' is not.
    assert!(rows[3]["latency_us"]["p50"].as_u64() > rows[0]["latency_us"]["p50"].as_u64(), "{report}");
    assert!(report["server_usage"]["cpu_seconds"].as_f64().unwrap() > 0.0, "in-process CPU is measured: {report}");
    let usage = &report["server_usage"];
    let split = usage["user_seconds"].as_f64().unwrap() + usage["system_seconds"].as_f64().unwrap();
    assert!((split - usage["cpu_seconds"].as_f64().unwrap()).abs() < 1e-6, "user + system is the total: {usage}");

    let svg = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    for name in names {
        assert!(svg.contains(name), "the chart labels {name}");
    }
    let _ = std::fs::remove_file(json);
}

#[tokio::test]
async fn its_byte_counts_agree_with_the_servers_socket_counters() {
    let app = spawn_app(HubKind::Memory).await;
    let json = temp("bytes.json");
    let url = app.url("");
    let out = bench(small(&["--url", &url, "--json", json.to_str().unwrap()])).await;
    assert!(out.status.success(), "exit {:?}; stderr: {}", out.status, text(&out.stderr));
    let report = read_json(&json);
    let rows = report["transports"].as_array().unwrap().clone();
    let setup = report["setup_wire_bytes"].as_u64().unwrap();
    // Zero where a count is missing: the comparison below then fails, naming both sides.
    let bytes = |side: &Value, sent: &str, received: &str| {
        side[sent].as_u64().unwrap_or(0) + side[received].as_u64().unwrap_or(0)
    };
    // Per transport: what the bench counted on its sockets, and what the server
    // counted on its own. Both count at the socket, heads and framing included,
    // so they are the same bytes but for two things: the bench's setup request
    // (a `GET /poll` the server counts as short polling, which the bench reports
    // apart) and answers written as a client gave up its request at the end.
    let compare = |stats: &Value| -> Vec<(String, u64, u64)> {
        rows.iter()
            .map(|t| {
                let name = t["transport"].as_str().unwrap().to_string();
                let server = bytes(&stats["transports"][name.replace('-', "_")], "bytes_sent", "bytes_received");
                let client =
                    bytes(t, "wire_bytes_sent", "wire_bytes_received") + if name == "poll" { setup } else { 0 };
                (name, client, server)
            })
            .collect()
    };
    let close = |(_, client, server): &(String, u64, u64)| client.abs_diff(*server) as f64 <= 0.02 * *server as f64;
    // The bytes a client wrote last (a WebSocket close) may be read after the
    // bench has gone: give the server time to read them.
    let counted: Vec<String> =
        compare(&Value::Null).iter().map(|(name, client, _)| format!("{name} {client} B")).collect();
    let what = format!("the server's byte counts within 2% of the bench's ({})", counted.join(", "));
    let stats = app.wait_stats(&what, |s| compare(s).iter().all(close)).await;
    for (name, client, server) in compare(&stats) {
        assert!(client > 0 && server > 0, "{name}: {client} B counted by the bench, {server} B by the server");
    }
    let publish = &stats["transports"]["publish"];
    let server_publish = publish["bytes_sent"].as_u64().unwrap() + publish["bytes_received"].as_u64().unwrap();
    assert_eq!(report["publish_wire_bytes"], server_publish, "{report}");
    let _ = std::fs::remove_file(json);
}

#[tokio::test]
async fn bad_input_is_one_line_on_stderr_and_exit_code_2() {
    // A port nothing listens on: bound, then let go.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = format!("http://{free}");
    let json = temp("never-written.json");
    let json_arg = format!("--json={}", json.display());
    let cases: [(&[&str], &str); 12] = [
        (&["--transports", "ws,pigeon"], "unknown transport 'pigeon'"),
        (&["--clients", "0"], "--clients"),
        (&["--clients", "2", "--stall", "3"], "--stall 3: more stalled clients than --clients 2"),
        (&["--stall", "3:soon"], "--stall"),
        (&["--url", &unreachable, &json_arg], "cannot reach"),
        (&["--json", "/no/such/dir/run.json"], "cannot write /no/such/dir/run.json"),
        (&["--url", "ftp://example.com"], "--url"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--compression", "maybe"], "--compression"),
        (&["--encoding", "json,xml"], "--encoding"),
        (&["--payload-kind", "/no/such/payload.json"], "cannot read '/no/such/payload.json'"),
        (&["--transports", "sse", "--encoding", "msgpack"], "SSE has no MessagePack encoding"),
    ];
    for (args, expected) in cases {
        let out = bench(args.iter().map(|a| a.to_string()).collect()).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line, got: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    assert!(!json.exists(), "a failed run leaves no empty report behind");
}

#[test]
fn the_server_flags_are_still_the_top_level_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_pushwire")).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("--bind") && help.contains("--demo-rate") && help.contains("bench"), "{help}");
}

#[tokio::test]
async fn stalled_clients_are_cut_and_resume_without_loss() {
    // One of two clients per stream stops reading for 2 s while 40 messages of
    // 1 MB go by: more than loopback's socket buffers hold, so the server's
    // 4-message queue overflows and it cuts them. History (1000 messages)
    // still holds everything, so they resume without a gap.
    let json = temp("stall.json");
    let server = ["--queue-size", "4", "--max-body", "1048576", "bench"];
    let load = [
        // Uncompressed: 1 MB a message, whatever the payload compresses to.
        "--compression",
        "off",
        "--transports",
        "ws,sse,long-poll",
        "--clients",
        "2",
        "--rate",
        "20",
        "--payload",
        "1000000",
        "--duration",
        "3s",
        "--stall",
        "1:2s",
        "--no-progress",
        "--json",
        json.to_str().unwrap(),
    ];
    let args: Vec<String> = server.iter().chain(&load).map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pushwire")).args(&args).env_remove("RUST_LOG").output().unwrap()
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}; stderr: {}; stdout: {stdout}", out.status, text(&out.stderr));
    assert!(stdout.contains("stalled: 1 of 2 clients per transport"), "{stdout}");

    let report = read_json(&json);
    assert_eq!(report["parameters"]["stall"]["clients"], 1, "{report}");
    assert_eq!(report["parameters"]["stall"]["duration_s"], 2.0, "{report}");
    for t in report["transports"].as_array().unwrap() {
        let (name, stall) = (t["transport"].as_str().unwrap(), &t["stall"]);
        assert_eq!(t["deliveries"], 2 * 60, "{name}: every client got every message: {t}");
        assert_eq!((&t["missing"], &t["duplicates"]), (&Value::from(0), &Value::from(0)), "{name}: {t}");
        assert_eq!((&stall["missing"], &stall["duplicates"]), (&Value::from(0), &Value::from(0)), "{name}: {t}");
        assert_eq!(stall["clients"], 1, "{name}: {t}");
        for latency in ["healthy_latency_us", "stalled_latency_us"] {
            assert!(stall[latency]["p99"].as_u64() <= stall[latency]["max"].as_u64(), "{name}: {t}");
        }
        let server_cuts = t["server_slow_disconnects"].as_u64().expect("a pushwire tells its slow_disconnects");
        if name == "long-poll" {
            // Nothing is queued for a poller between requests: a stall is a pause.
            assert_eq!((server_cuts, &stall["cut"]), (0, &Value::from(0)), "{name}: {t}");
        } else {
            assert!(server_cuts > 0, "{name}: the server cut a slow consumer: {t}");
            assert_eq!(stall["cut"], 1, "{name}: the stalled client saw its connection end: {t}");
            assert!(stall["reconnects"].as_u64() >= Some(1), "{name}: and resumed: {t}");
        }
    }
    let _ = std::fs::remove_file(json);
}

#[tokio::test]
async fn it_asks_for_compression_and_msgpack_and_reads_what_comes() {
    // One run per combination, on one in-process server that compresses
    // whatever is at least 256 bytes (its defaults): 1 KB notifications.
    let (json, svg) = (temp("matrix.json"), temp("matrix.svg"));
    let extra = [
        "--payload",
        "1024",
        "--payload-kind",
        "repetitive",
        "--compression",
        "on,off",
        "--encoding",
        "json,msgpack",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    let out = bench(small(&extra)).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}; stderr: {}; stdout: {stdout}", out.status, text(&out.stderr));
    assert!(stdout.contains("== compression off, msgpack (4 of 4)"), "{stdout}");

    let report = read_json(&json);
    let runs = report["runs"].as_array().expect("a run per combination");
    let variants: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["parameters"]["compression"].as_str().unwrap(), r["parameters"]["encoding"].as_str().unwrap()))
        .collect();
    assert_eq!(variants, [("on", "json"), ("on", "msgpack"), ("off", "json"), ("off", "msgpack")]);
    // Server → client bytes per delivery, before compression, per (transport, run).
    let mut raw = std::collections::HashMap::new();
    for (run, (compression, encoding)) in runs.iter().zip(&variants) {
        let rows = run["transports"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|t| t["transport"].as_str().unwrap()).collect();
        let expected: &[&str] = match *encoding {
            "json" => &["websocket", "sse", "long-poll", "poll"],
            _ => &["websocket", "long-poll", "poll"], // SSE is text only
        };
        assert_eq!(names, expected, "{compression} {encoding}");
        for t in rows {
            let name = t["transport"].as_str().unwrap();
            let what = format!("{name}, compression {compression}, {encoding}: {t}");
            assert_eq!(
                (&t["deliveries"], &t["missing"], &t["errors"]),
                (&Value::from(3 * PUBLISHED), &Value::from(0), &Value::from(0)),
                "{what}"
            );
            let sent = t["server_bytes_sent"].as_u64().expect(&what);
            let uncompressed = t["server_bytes_sent_uncompressed"].as_u64().expect(&what);
            let compressed = t["compressed"].as_u64().unwrap();
            if *compression == "on" {
                assert!(compressed > 0, "answers came compressed: {what}");
                // Short polls answer "nothing new" too, small and uncompressed: still well below.
                assert!((sent as f64) < 0.8 * uncompressed as f64, "compression saved bytes: {what}");
            } else {
                assert_eq!(compressed, 0, "{what}");
                assert_eq!(sent, uncompressed, "nothing compressed, nothing saved: {what}");
            }
            if name == "websocket" {
                let messages = t["compressed_messages"].as_u64().unwrap();
                assert_eq!(messages > 0, *compression == "on", "{what}");
            }
            raw.insert(
                (name, *compression, *encoding),
                t["server_bytes_sent_uncompressed_per_delivery"].as_f64().unwrap(),
            );
        }
    }
    for name in ["websocket", "long-poll"] {
        let (json, msgpack) = (raw[&(name, "off", "json")], raw[&(name, "off", "msgpack")]);
        assert!(msgpack < json, "{name}: MessagePack is smaller than JSON ({msgpack:.0} B and {json:.0} B)");
    }
    let svg = std::fs::read_to_string(&svg).expect("the SVG was written");
    for label in ["ws compr json", "ws plain msgpack", "sse compr json", "long-poll plain json"] {
        assert!(svg.contains(label), "the chart labels {label}");
    }
    let _ = std::fs::remove_file(json);
}

#[tokio::test]
async fn webtransport_follows_its_channel_beside_websocket_and_receives_every_message_once() {
    // JSON lines and MessagePack maps over the stream the server opens, each a run of its own.
    let json = temp("webtransport.json");
    let extra = [
        "--transports",
        "webtransport,ws",
        "--encoding",
        "json,msgpack",
        "--compression",
        "off",
        "--json",
        json.to_str().unwrap(),
    ];
    let out = bench(small(&extra)).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}; stderr: {}; stdout: {stdout}", out.status, text(&out.stderr));
    let report = read_json(&json);
    let runs = report["runs"].as_array().expect("a run per encoding");
    assert_eq!(runs.len(), 2, "{report}");
    for run in runs {
        let encoding = run["parameters"]["encoding"].as_str().unwrap();
        let rows = run["transports"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|t| t["transport"].as_str().unwrap()).collect();
        assert_eq!(names, ["webtransport", "websocket"], "{encoding}");
        for t in rows {
            let what = format!("{}, {encoding}: {t}", t["transport"]);
            assert_eq!(t["unavailable"], Value::Null, "{what}");
            assert_eq!(t["connected"], 3, "{what}");
            assert_eq!(t["deliveries"], 3 * PUBLISHED, "deliveries = clients × published: {what}");
            assert_eq!((&t["missing"], &t["duplicates"]), (&Value::from(0), &Value::from(0)), "{what}");
            assert_eq!((&t["errors"], &t["reconnects"]), (&Value::from(0), &Value::from(0)), "{what}");
            // One session (or upgrade) a client, none lost.
            assert_eq!(t["requests"], 3, "{what}");
            let latency = &t["latency_us"];
            assert!(latency["p50"].as_u64() > Some(0) && latency["p50"].as_u64() <= latency["max"].as_u64(), "{what}");
            // The 100 B payload, and QUIC's encryption and headers around it (or WebSocket's framing).
            assert!(t["wire_bytes_per_delivery"].as_f64().unwrap() > 100.0, "{what}");
            // The server counted what it sent this transport's sessions (UDP payload for webtransport).
            assert!(t["server_bytes_sent_per_delivery"].as_f64().unwrap() > 100.0, "{what}");
        }
        let wt = &rows[0];
        // Bytes both ways from quinn's counts: the client's acks go up, the stream comes down.
        assert!(wt["wire_bytes_received"].as_u64() > wt["wire_bytes_sent"].as_u64(), "{wt}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("webtransport ")), "a table row: {stdout}");
    let _ = std::fs::remove_file(json);
}

#[tokio::test]
async fn a_server_without_webtransport_leaves_its_row_unavailable_and_the_rest_runs() {
    // As against the Node reference, which has no WebTransport: /api/webtransport is a 404.
    let json = temp("no-webtransport.json");
    let mut args: Vec<String> =
        ["--webtransport", "off", "bench", "--transports", "webtransport,ws"].iter().map(|a| a.to_string()).collect();
    args.extend(small(&["--json", json.to_str().unwrap()]));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pushwire")).args(&args).env_remove("RUST_LOG").output().unwrap()
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}; stderr: {}; stdout: {stdout}", out.status, text(&out.stderr));
    assert!(stdout.contains("webtransport: n/a: the server offers no WebTransport"), "{stdout}");
    let report = read_json(&json);
    let rows = report["transports"].as_array().unwrap();
    let (wt, ws) = (&rows[0], &rows[1]);
    assert_eq!(wt["transport"], "webtransport", "{report}");
    assert!(wt["unavailable"].as_str().unwrap().contains("404"), "{wt}");
    assert_eq!(
        (&wt["connected"], &wt["deliveries"], &wt["requests"]),
        (&Value::from(0), &Value::from(0), &Value::from(0))
    );
    assert_eq!((&ws["deliveries"], &ws["missing"]), (&Value::from(3 * PUBLISHED), &Value::from(0)), "{ws}");
    // Only the WebSocket clients were held: the memory per connection is theirs.
    assert_eq!(report["server_usage"]["connections"], 3, "{report}");
    let _ = std::fs::remove_file(json);
}

#[tokio::test]
async fn its_webtransport_byte_counts_agree_with_the_servers_udp_counts() {
    // Both sides count UDP payload from quinn's connection stats: what one sent, the other
    // received, on loopback. The server adds a session's bytes when it ends.
    let app = spawn_app(HubKind::Memory).await;
    let json = temp("wt-bytes.json");
    let url = app.url("");
    let out = bench(small(&["--url", &url, "--transports", "webtransport", "--json", json.to_str().unwrap()])).await;
    assert!(out.status.success(), "exit {:?}; stderr: {}", out.status, text(&out.stderr));
    let report = read_json(&json);
    let row = &report["transports"][0];
    assert_eq!((&row["deliveries"], &row["missing"]), (&Value::from(3 * PUBLISHED), &Value::from(0)), "{row}");
    let (sent, received) = (row["wire_bytes_sent"].as_u64().unwrap(), row["wire_bytes_received"].as_u64().unwrap());
    assert!(received > 3 * PUBLISHED * 100, "{row}");
    // Each session's first datagram (the client's Initial, at least 1200 B) reaches the
    // server's endpoint before the connection exists, and is not in that connection's stats.
    let first_datagrams = 3 * 1200;
    let close = |ours: u64, theirs: u64| ours.abs_diff(theirs) as f64 <= 0.02 * ours as f64;
    let agree = |stats: &Value| {
        let wt = &stats["transports"]["webtransport"];
        let (server_sent, server_received) = (wt["bytes_sent"].as_u64(), wt["bytes_received"].as_u64());
        server_sent.is_some_and(|s| close(received, s))
            && server_received.is_some_and(|r| sent >= r + first_datagrams && close(sent, r + first_datagrams))
    };
    let what =
        format!("the server's webtransport bytes to agree with the bench's ({sent} B sent, {received} B received)");
    let stats = app.wait_stats(&what, agree).await;
    assert_eq!(stats["transports"]["webtransport"]["connections_total"], 3, "{stats}");
    let _ = std::fs::remove_file(json);
}
