//! The network lab (`/api/inspect/{id}/impair`): its validation, its state,
//! who may use it, and what each impairment does on the wire to that page's
//! connections, and to nobody else's.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use crate::common::*;

const NORMAL: &str = r#"{"latency_ms":0,"sse":"ok","websocket":"ok","webtransport":"ok"}"#;

/// POSTs `body` (raw) to `/api/inspect/{page}/impair`: status and JSON answer.
async fn impair_raw(app: &TestApp, page: &str, body: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = app.http.post(app.url(&format!("/api/inspect/{page}/impair"))).body(body.to_string());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.header("content-type", "application/json").send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn impair(app: &TestApp, page: &str, change: Value) -> Value {
    let (status, state) = impair_raw(app, page, &change.to_string(), None).await;
    assert_eq!(status, 200, "impair {page} with {change}: {state}");
    state
}

/// The status line and body of a raw WebSocket upgrade.
async fn upgrade_answer(app: &TestApp, query: &str) -> (String, String) {
    let (mut tcp, _) = app.raw_upgrade(&format!("/ws?channels=lab{query}")).await;
    let mut buf = vec![0; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(PATIENCE, tcp.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed before an answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap().to_string();
    if status.contains(" 101 ") {
        return (status, String::new());
    }
    // A JSON error body follows the head (small, so read until it parses).
    let mut body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    while serde_json::from_str::<Value>(&body).is_err() {
        let n = timeout(PATIENCE, tcp.read(&mut buf)).await.expect("the body").unwrap();
        assert!(n > 0, "body cut short: {body}");
        body.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impairments_are_validated_and_answered_with_the_whole_state() {
    let app = spawn_app(HubKind::Memory).await;
    // A page not seen yet has a normal network; reading it registers nothing.
    let (status, state) = app.get("/api/inspect/lab1/impair").await;
    assert_eq!((status, state.to_string()), (200, NORMAL.to_string()));
    assert_eq!(app.get("/api/inspect/lab1").await.0, 404, "a GET prepares no lab");

    let state = impair(&app, "lab1", json!({"websocket": "refuse"})).await;
    assert_eq!(
        state,
        json!({"websocket": "refuse", "sse": "ok", "webtransport": "ok", "latency_ms": 0}),
        "the whole state"
    );
    impair(&app, "lab1", json!({"sse": "buffer", "latency_ms": 600})).await;
    let state = impair(&app, "lab1", json!({"webtransport": "blocked"})).await;
    assert_eq!(
        state,
        json!({"websocket": "refuse", "sse": "buffer", "webtransport": "blocked", "latency_ms": 600}),
        "missing means unchanged"
    );
    assert_eq!(impair(&app, "lab1", json!({})).await, state, "an empty change changes nothing");
    assert_eq!(app.get("/api/inspect/lab1/impair").await, (200, state.clone()));

    for (body, code) in [
        ("not json", "bad_json"),
        (r#"{"websocket": "maybe"}"#, "bad_request"),
        (r#"{"sse": "gzip"}"#, "bad_request"),
        (r#"{"webtransport": "slow"}"#, "bad_request"),
        (r#"{"latency_ms": 5001}"#, "bad_request"),
        (r#"{"latency_ms": -1}"#, "bad_request"),
        (r#"{"latency_ms": "600"}"#, "bad_request"),
        (r#"{"dns": "slow"}"#, "bad_request"),
        ("[]", "bad_request"),
    ] {
        let (status, answer) = impair_raw(&app, "lab1", body, None).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some(code)), "{body}: {answer}");
    }
    let (status, answer) = impair_raw(&app, "lab1", &format!(r#"{{"pad": "{}"}}"#, "x".repeat(2000)), None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("too_large")));
    assert_eq!(app.get("/api/inspect/lab1/impair").await, (200, state), "refused changes change nothing");

    let (status, answer) = impair_raw(&app, "bad-id", "{}", None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")));
    assert_eq!(app.get("/api/inspect/bad-id/impair").await.0, 400);
    let response = app.http.put(app.url("/api/inspect/lab1/impair")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    assert_eq!(
        impair(&app, "lab1", json!({"websocket": "ok", "sse": "ok", "webtransport": "ok", "latency_ms": 0}))
            .await
            .to_string(),
        NORMAL
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_needs_the_admin_claim_when_access_control_is_on() {
    let secret = "a lab secret, long enough";
    let app = spawn_app_with(HubKind::Memory, |c| c.auth_secret = Some(secret.into())).await;
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let token = |admin: bool| {
        let claims = json!({"exp": exp, "subscribe": ["*"], "admin": admin});
        encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    let change = r#"{"websocket": "refuse"}"#;
    let code = |answer: Value| answer["error"]["code"].as_str().map(String::from);
    let (status, answer) = impair_raw(&app, "lab2", change, None).await;
    assert_eq!((status, code(answer)), (401, Some("unauthorized".into())));
    let (status, answer) = impair_raw(&app, "lab2", change, Some(&token(false))).await;
    assert_eq!((status, code(answer)), (403, Some("forbidden".into())));
    let reader = app.http.get(app.url("/api/inspect/lab2/impair")).bearer_auth(token(false)).send().await.unwrap();
    assert_eq!(reader.status(), 403, "reading it needs the claim too");
    let (status, answer) = impair_raw(&app, "lab2", change, Some(&token(true))).await;
    assert_eq!((status, answer["websocket"].as_str()), (200, Some("refuse")));
    let reader = app.http.get(app.url("/api/inspect/lab2/impair")).bearer_auth(token(true)).send().await.unwrap();
    assert_eq!(reader.json::<Value>().await.unwrap()["websocket"], "refuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_answers_the_upgrade_as_a_plain_get_for_that_page_only() {
    let app = spawn_app(HubKind::Memory).await;
    impair(&app, "lab3", json!({"websocket": "refuse"})).await;
    // What /ws answers a plain GET, with no proxy in the way:
    let response = app.http.get(app.url("/ws?channels=lab")).send().await.unwrap();
    let plain = (response.status().as_u16(), response.json::<Value>().await.unwrap());
    assert_eq!((plain.0, plain.1["error"]["code"].as_str()), (426, Some("upgrade_required")));
    for query in ["&client=lab3", "&client=lab3&lane=auto"] {
        let (status, body) = upgrade_answer(&app, query).await;
        assert!(status.starts_with("HTTP/1.1 426 "), "{query}: {status}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), plain.1, "{query}: the plain GET's answer");
    }
    for query in ["&client=other", ""] {
        let (status, _) = upgrade_answer(&app, query).await;
        assert_eq!(status, "HTTP/1.1 101 Switching Protocols", "{query:?} is not that page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swallow_upgrades_then_passes_no_frame_until_the_lab_changes() {
    let app = spawn_app(HubKind::Memory).await;
    impair(&app, "lab4", json!({"websocket": "swallow"})).await;
    let mut swallowed = app.ws("?channels=s&client=lab4").await; // asserts the 101
    let mut other = app.ws("?channels=s&client=lab5").await;
    other.handshake(1).await;
    swallowed.send(json!({"type": "ping", "ref": 1})).await;
    app.publish("s", json!("into the void")).await;
    assert_eq!(other.expect("message").await["data"], "into the void", "another page is untouched");
    swallowed.assert_quiet(Duration::from_secs(1)).await;
    // Back to normal: the swallowed socket is cut, and a new one works.
    impair(&app, "lab4", json!({"websocket": "ok"})).await;
    assert!(matches!(swallowed.next().await, Err(WsEnd::Gone(_)) | Err(WsEnd::Closed(..))), "cut on change");
    let mut fresh = app.ws("?channels=s&client=lab4").await;
    fresh.handshake(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_holds_that_pages_sse_bytes_until_64_kib_are_ready() {
    let app = spawn_app_with(HubKind::Memory, |c| c.max_body = 16 * 1024).await;
    impair(&app, "lab6", json!({"sse": "buffer"})).await;
    let mut held = app.sse("?channels=b&client=lab6").await;
    assert_eq!(held.status, 200, "the headers pass, as through a compressing proxy");
    let mut other = app.sse("?channels=b&client=lab7").await;
    other.expect("subscribed").await;
    let pad = "x".repeat(10 * 1024);
    for i in 0..6 {
        app.publish("b", json!({"i": i, "pad": pad})).await;
    }
    assert_eq!(other.messages(6).await.len(), 6, "another page gets each event at once");
    assert!(timeout(Duration::from_secs(1), held.block()).await.is_err(), "62 KiB published, nothing passed");
    // Past 64 KiB held, everything goes together.
    app.publish("b", json!({"i": 6, "pad": pad})).await;
    held.expect("subscribed").await;
    let seqs: Vec<u64> = held.messages(7).await.iter().map(|e| e.json()["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert!(held.raw.starts_with(": pushwire stream open\n"), "the stream's own start was held too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_every_delivery_to_that_page() {
    let app = spawn_app(HubKind::Memory).await;
    let latency = Duration::from_millis(400);
    impair(&app, "lab8", json!({"latency_ms": 400})).await;
    let mut ws = app.ws("?channels=l&client=lab8").await;
    ws.handshake(1).await;
    let mut sse = app.sse("?channels=l&client=lab8").await;
    sse.expect("subscribed").await;
    let published = app.publish("l", json!("late")).await;
    let received = [ws.expect("message").await, sse.expect("message").await.json()];
    let arrived = now_micros();
    for message in received {
        assert_eq!(message["seq"], published["seq"]);
    }
    let ts = published["ts"].as_u64().unwrap();
    assert!(arrived - ts >= latency.as_micros() as u64, "delivered {} µs after publishing", arrived - ts);
    // Messages published together are each held their full latency (none rides along early).
    app.publish_many("l", 5).await;
    for _ in 0..5 {
        let message = ws.expect("message").await;
        let late = now_micros() - message["ts"].as_u64().unwrap();
        assert!(late >= latency.as_micros() as u64, "seq {} came {late} µs after publishing", message["seq"]);
    }
    for path in ["/poll?channels=l&cursor=l:0&client=lab8", "/long-poll?channels=l&cursor=l:0&client=lab8"] {
        let asked = Instant::now();
        let (status, answer) = app.get(path).await;
        assert_eq!((status, answer["messages"][0]["data"].as_str()), (200, Some("late")), "{path}");
        assert!(asked.elapsed() >= latency, "{path} answered after {:?}", asked.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_cuts_that_pages_connections_and_its_auto_lane_only() {
    let app = spawn_app(HubKind::Memory).await;
    let mut raw = app.ws("?channels=c&client=lab9").await;
    raw.handshake(1).await;
    let mut auto = app.ws("?channels=c&client=lab9&lane=auto").await;
    auto.handshake(1).await;
    let mut other = app.ws("?channels=c&client=lab10").await;
    other.handshake(1).await;
    impair(&app, "lab9", json!({"latency_ms": 100})).await;
    for ws in [&mut raw, &mut auto] {
        match ws.next().await {
            Err(WsEnd::Closed(Some(code), _)) => assert_eq!(code, 1012, "reconnect now, under the new conditions"),
            end => panic!("expected a close, got {end:?}"),
        }
    }
    app.publish("c", json!("still here")).await;
    assert_eq!(other.expect("message").await["data"], "still here", "another page is untouched");
    // The same settings again change nothing, so cut nothing.
    let mut again = app.ws("?channels=c&client=lab9").await;
    again.handshake(1).await;
    impair(&app, "lab9", json!({"latency_ms": 100})).await;
    app.publish("c", json!("kept")).await;
    assert_eq!(again.expect("message").await["data"], "kept");
    // The auto lane's bytes are counted apart from the page's raw lanes.
    let (_, page) = app.get("/api/inspect/lab9").await;
    let (_, auto_lane) = app.get("/api/inspect/lab9auto").await;
    assert_eq!(page["transports"]["websocket"]["requests"], 2);
    assert_eq!(auto_lane["transports"]["websocket"]["requests"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_takes_a_chosen_client_id() {
    let app = spawn_app(HubKind::Memory).await;
    let page = app.http.get(app.url("/?client=lab11")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#""clientId":"lab11""#), "the page's script is told its id");
    let page = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#""clientId":null"#), "without one, the page picks a random id");
    for bad in ["bad-id", "%3Cscript%3E", &"x".repeat(33)] {
        let (status, body) = app.get(&format!("/?client={bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
}
