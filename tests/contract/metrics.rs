//! `/metrics` as a Prometheus server reads it: a short stream received on all
//! four transports, scraped, checked line by line against the text format,
//! parsed with `prometheus-parse`, and compared with what the clients got.

use std::collections::HashSet;

use prometheus_parse::{HistogramCount, LineInfo, Sample, Scrape, Value as Metric};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use futures_util::{SinkExt, StreamExt};

use crate::common::*;

crate::for_each_hub!(a_short_stream_is_counted_as_the_clients_received_it);

const MESSAGES: usize = 20;
const LATENCY: &str = "pushwire_delivery_latency_seconds";

async fn a_short_stream_is_counted_as_the_clients_received_it(hub: HubKind) {
    // A server learns that an SSE client vanished on its next write: a short
    // heartbeat bounds how long that takes (the test waits on the count).
    let app = spawn_app_with(hub, |c| c.sse_heartbeat = std::time::Duration::from_millis(100)).await;
    let mut ws = app.ws("?channels=m").await;
    ws.handshake(1).await;
    let mut sse = app.sse("?channels=m").await;
    sse.expect("subscribed").await;
    // A long poll held from before the first publish, then caught up.
    let long_polls = {
        let (http, url) = (app.http.clone(), app.url(""));
        tokio::spawn(async move { poll_until(&http, &url, "/long-poll", "&timeout=5", MESSAGES).await })
    };
    app.wait_stats("the long poll held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;

    app.publish_many("m", MESSAGES as u64).await;
    let received = [
        ("websocket", ws.messages(MESSAGES).await.len()),
        ("sse", sse.messages(MESSAGES).await.len()),
        ("long_poll", long_polls.await.unwrap()),
        ("poll", poll_until(&app.http, &app.url(""), "/poll", "", MESSAGES).await),
    ];

    // Refusals by limits, on HTTP and on a WebSocket (which stays open).
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    let many = many.join(",");
    assert_eq!(app.get(&format!("/poll?channels={many}")).await.0, 400, "over --max-channels");
    ws.send(json!({"type": "ping", "ref": "r".repeat(200)})).await;
    assert_eq!(ws.expect("error").await["code"], "bad_request", "a ref over 128 bytes");
    // The client closes its WebSocket: the server answers and counts a normal end.
    ws.stream.send(WsMessage::Close(None)).await.unwrap();
    while let Some(Ok(_)) = ws.stream.next().await {}
    // A foreign page's POST is refused (API.md v1.1 "Origins").
    let refused = app
        .http
        .post(app.url("/channels/m/messages"))
        .header("origin", "http://evil.example")
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let metrics = wait_metrics(&app, "the websocket's end is counted", |m| {
        m.value("pushwire_connections_closed_total", &[("transport", "websocket"), ("reason", "normal")]) == 1.0
    })
    .await;
    for (transport, n) in received {
        assert_eq!(n, MESSAGES, "{transport} received the stream");
        let delivered = metrics.value("pushwire_messages_delivered_total", &[("transport", transport)]);
        assert_eq!(delivered, n as f64, "{transport}: messages delivered = messages received");
        let (buckets, count, sum) = metrics.histogram(LATENCY, transport);
        assert_eq!(count, n as f64, "{transport}: one latency per message delivered");
        assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count), "{buckets:?}");
        let last = buckets.last().unwrap();
        assert_eq!((last.less_than, last.count), (f64::INFINITY, count), "+Inf bucket = _count for {transport}");
        assert!(sum >= 0.0 && sum < 60.0 * n as f64, "{transport}: sum {sum} is in seconds");
    }
    for kind in ["origin", "channels", "ref"] {
        assert_eq!(metrics.value("pushwire_limit_rejections_total", &[("kind", kind)]), 1.0, "{kind}");
    }
    assert_eq!(
        metrics.value("pushwire_hub_publishes_total", &[]),
        MESSAGES as f64,
        "the refused POST never reached it"
    );
    assert_eq!(metrics.value("pushwire_hub_ready", &[]), 1.0);
    let pubsub = if hub == HubKind::Memory { 0.0 } else { 1.0 };
    assert_eq!(metrics.value("pushwire_hub_pubsub_channels", &[]), pubsub, "the SSE stream's channel, on Redis");
    assert_eq!(metrics.value("pushwire_requests_total", &[("transport", "publish")]), MESSAGES as f64 + 1.0);
    assert_eq!(metrics.value("pushwire_connections_open", &[("transport", "sse")]), 1.0);

    drop(sse);
    wait_metrics(&app, "the SSE client's disappearance is counted", |m| {
        m.value("pushwire_connections_closed_total", &[("transport", "sse"), ("reason", "client_gone")]) == 1.0
            && m.value("pushwire_connections_open", &[("transport", "sse")]) == 0.0
    })
    .await;
}

/// Polls `path` from the channel's start, following each answer's cursor,
/// until `n` messages arrived; returns how many did.
async fn poll_until(http: &reqwest::Client, base: &str, path: &str, extra: &str, n: usize) -> usize {
    let (mut cursor, mut received) = ("m:0".to_string(), 0);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while received < n {
        assert!(tokio::time::Instant::now() < deadline, "{path}: {received} of {n} messages");
        let url = format!("{base}{path}?channels=m&cursor={cursor}{extra}");
        let answer: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        received += answer["messages"].as_array().unwrap().len();
        cursor = answer["cursor"].as_str().unwrap().to_string();
    }
    received
}

/// Scrapes until `check` holds (counts of connections that just ended are
/// made by the server's own tasks, a moment after the client saw the end).
async fn wait_metrics(app: &TestApp, what: &str, check: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = scrape(app).await;
        if check(&metrics) {
            return metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}:\n{}", metrics.text);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

async fn scrape(app: &TestApp) -> Metrics {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    check_text_format(&text);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    Metrics { text, samples: scrape.samples }
}

impl Metrics {
    /// The value of the counter or gauge `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = self.find(name, labels);
        match sample.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
            ref other => panic!("{name} is not a single value: {other:?}"),
        }
    }

    /// The buckets (in the order served), `_count` and `_sum` of a histogram.
    fn histogram(&self, name: &str, transport: &str) -> (Vec<HistogramCount>, f64, f64) {
        let labels = [("transport", transport)];
        let Metric::Histogram(buckets) = &self.find(name, &labels).value else { panic!("{name} is no histogram") };
        (buckets.clone(), self.value(&format!("{name}_count"), &labels), self.value(&format!("{name}_sum"), &labels))
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> &Sample {
        let mut found = self.samples.iter().filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        });
        let sample = found.next().unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text));
        assert!(found.next().is_none(), "{name}{labels:?} twice");
        sample
    }
}

/// What `prometheus-parse` lets pass silently, checked strictly: every line
/// is a HELP, a TYPE, a sample or empty; label values are quoted; every value
/// is a number; each family is typed before its samples and stays together.
fn check_text_format(text: &str) {
    let mut types: Vec<(String, String)> = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Empty | LineInfo::Doc { .. } => {}
            LineInfo::Type { sample_type, .. } => {
                let mut words = line.split_whitespace().skip(2);
                let (name, kind) = (words.next().unwrap().to_string(), words.next().unwrap().to_string());
                assert!(!types.iter().any(|(n, _)| *n == name), "{name} typed twice");
                assert_ne!(sample_type, prometheus_parse::SampleType::Untyped, "{line}");
                types.push((name, kind));
            }
            LineInfo::Sample { metric_name, labels, value, timestamp } => {
                assert!(timestamp.is_none(), "{line}");
                assert!(value.parse::<f64>().is_ok() || value == "+Inf", "value of {line}");
                if let Some(labels) = labels {
                    check_labels(labels, line);
                }
                let family = types
                    .iter()
                    .find(|(name, kind)| {
                        *name == metric_name
                            || (kind == "histogram"
                                && ["_bucket", "_sum", "_count"].iter().any(|s| metric_name == format!("{name}{s}")))
                    })
                    .map(|(name, _)| name.clone())
                    .unwrap_or_else(|| panic!("{metric_name} has no TYPE before it"));
                if current.as_ref() != Some(&family) {
                    assert!(done.insert(family.clone()), "{family}'s samples are split up");
                    current = Some(family);
                }
            }
            LineInfo::Ignored => panic!("not Prometheus text: {line:?}"),
        }
    }
    assert!(text.ends_with('\n'));
}

/// `name="value"` pairs, comma-separated, names `[a-zA-Z_][a-zA-Z0-9_]*`,
/// values with `\\`, `\"` and `\n` as the only escapes.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label without =\" in {line}"));
        assert!(
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label name {name:?} in {line}"
        );
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n'))), "escape in {line}"),
                Some((i, '"')) => break i,
                Some(_) => {}
                None => panic!("unterminated label value in {line}"),
            }
        };
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}
