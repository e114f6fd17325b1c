//! API.md v1.2 "WebTransport", with a Rust client (wtransport) over real
//! QUIC: discovery, the session's frames (the WebSocket vocabulary, one JSON
//! object per line, or MessagePack), resume, refusals, limits and the close
//! codes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;
use wtransport::endpoint::ConnectOptions;
use wtransport::error::{ConnectingError, ConnectionError};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

use crate::common::{HubKind, TestApp, spawn_app, spawn_app_with};

const PATIENCE: Duration = Duration::from_secs(10);

/// `/api/webtransport`: the session URL and the certificate's hash.
async fn discovery(app: &TestApp) -> (String, Vec<Sha256Digest>) {
    let (status, body) = app.get("/api/webtransport").await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_string();
    let hashes = body["certificate_hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["algorithm"], "sha-256");
            let hex = h["value"].as_str().unwrap();
            assert_eq!(hex.len(), 64, "{hex}");
            let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            Sha256Digest::new(bytes.try_into().unwrap())
        })
        .collect();
    (url, hashes)
}

/// A session, as a browser opens one, with its server-opened stream read line by line.
struct Session {
    connection: Connection,
    send: SendStream,
    lines: BufReader<RecvStream>,
}

async fn connect(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> Result<Session, ConnectingError> {
    let (url, hashes) = discovery(app).await;
    let config = ClientConfig::builder().with_bind_default().with_server_certificate_hashes(hashes).build();
    let endpoint = Endpoint::client(config).unwrap();
    let mut options = ConnectOptions::builder(format!("{url}{query}"));
    for (name, value) in headers {
        options = options.add_header(*name, *value);
    }
    let connection = timeout(PATIENCE, endpoint.connect(options.build())).await.expect("connect in time")?;
    let (send, recv) = timeout(PATIENCE, connection.accept_bi()).await.expect("the server opens a stream").unwrap();
    Ok(Session { connection, send, lines: BufReader::new(recv) })
}

impl Session {
    async fn frame(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = timeout(PATIENCE, self.lines.read_line(&mut line)).await.expect("a frame in time").ok()?;
        (n > 0).then(|| {
            assert!(line.ends_with('\n'), "{line:?}");
            serde_json::from_str(&line).unwrap()
        })
    }

    async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.frame().await.expect("the stream ended");
        assert_eq!(frame["type"], kind, "{frame}");
        frame
    }

    async fn send(&mut self, frame: Value) {
        self.send.write_all(format!("{frame}\n").as_bytes()).await.unwrap();
    }

    /// The application code and reason the server closed the session with,
    /// from its CLOSE_WEBTRANSPORT_SESSION capsule (what a browser's
    /// `WebTransport.closed` reports). wtransport gives the capsule's code
    /// to stream calls; its `closed()` reports only the QUIC connection's end.
    async fn closed(&self) -> (u64, String) {
        match timeout(PATIENCE, self.connection.accept_uni()).await.expect("closed in time") {
            Err(ConnectionError::ApplicationClosed(close)) => {
                (close.code().into_inner(), String::from_utf8_lossy(close.reason()).into_owned())
            }
            other => panic!("not a session close: {:?}", other.map(|_| "a stream")),
        }
    }
}

#[tokio::test]
async fn discovery_names_the_udp_port_and_the_certificate_hash() {
    let app = spawn_app(HubKind::Memory).await;
    let (url, hashes) = discovery(&app).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(url.ends_with("/wt"), "{url}");
    assert_eq!(hashes.len(), 1);
    // A page on `localhost` is sent to the address the endpoint listens on:
    // browsers try `localhost` over IPv6 first.
    let response = app
        .http
        .get(app.url("/api/webtransport"))
        .header("host", format!("localhost:{}", app.addr.port()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["url"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{body}");
    // CORS like /api/stats, for a page on another allowed origin.
    let response =
        app.http.get(app.url("/api/webtransport")).header("origin", "http://other.example").send().await.unwrap();
    assert_eq!(response.headers().get("access-control-allow-origin"), None, "not an allowed origin");
    let open = spawn_app_with(HubKind::Memory, |c| c.allowed_origins = vec!["http://other.example".into()]).await;
    let response =
        open.http.get(open.url("/api/webtransport")).header("origin", "http://other.example").send().await.unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "http://other.example");
    // Off: 404, and /wt over TCP says where WebTransport is.
    let off = spawn_app_with(HubKind::Memory, |c| c.webtransport = pushwire::config::Switch::Off).await;
    let (status, body) = off.get("/api/webtransport").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.get("/wt?channels=a").await;
    assert_eq!((status, body["error"]["code"].as_str()), (426, Some("upgrade_required")));
}

#[tokio::test]
async fn a_session_speaks_the_websocket_vocabulary_line_by_line() {
    let app = spawn_app(HubKind::Memory).await;
    let mut wt = connect(&app, "?channels=w", &[]).await.unwrap();
    let welcome = wt.expect("welcome").await;
    assert!(welcome["heartbeat_ms"].as_u64().unwrap() > 0);
    let subscribed = wt.expect("subscribed").await;
    assert_eq!((subscribed["channel"].as_str(), subscribed["seq"].as_u64()), (Some("w"), Some(0)));
    for i in 1..=3 {
        app.publish("w", json!({"i": i})).await;
    }
    for i in 1..=3u64 {
        let message = wt.expect("message").await;
        assert_eq!((message["seq"].as_u64(), &message["data"]), (Some(i), &json!({"i": i})));
    }
    wt.send(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(wt.expect("pong").await["ref"], "p");
    wt.send(json!({"type": "publish", "channel": "w", "data": "from wt", "ref": 2})).await;
    let mut acked = false;
    let mut delivered = false;
    while !(acked && delivered) {
        let frame = wt.frame().await.unwrap();
        match frame["type"].as_str() {
            Some("ack") => {
                assert_eq!((frame["ref"].as_u64(), frame["seq"].as_u64()), (Some(2), Some(4)));
                acked = true;
            }
            Some("message") => {
                assert_eq!(frame["data"], "from wt");
                delivered = true;
            }
            _ => panic!("{frame}"),
        }
    }
    wt.send(json!({"type": "subscribe", "channels": ["x"], "ref": "s"})).await;
    wt.expect("subscribed").await;
    assert_eq!(wt.expect("ack").await["ref"], "s");
    wt.send_raw(b"{not json\n").await;
    assert_eq!(wt.expect("error").await["code"], "bad_json");
    wt.send(json!({"type": "nope"})).await;
    assert_eq!(wt.expect("error").await["code"], "bad_request");
    // Counted as webtransport, in UDP payload bytes.
    let stats =
        app.wait_stats("webtransport counted", |s| s["transports"]["webtransport"]["messages_delivered"] == 4).await;
    let counters = &stats["transports"]["webtransport"];
    assert_eq!(counters["connections_open"], 1);
    assert!(counters["bytes_sent"].as_u64().unwrap() > 500, "{counters}");
    assert!(counters["bytes_received"].as_u64().unwrap() > 100, "{counters}");
}

impl Session {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }
}

#[tokio::test]
async fn a_cursor_resumes_and_another_epoch_is_reset() {
    let app = spawn_app(HubKind::Memory).await;
    let last = app.publish_many("r", 5).await;
    let epoch = last["epoch"].as_str().unwrap();
    let mut wt = connect(&app, &format!("?channels=r&cursor=r:2:{epoch}"), &[]).await.unwrap();
    wt.expect("welcome").await;
    wt.expect("subscribed").await;
    for seq in 3..=5u64 {
        assert_eq!(wt.expect("message").await["seq"], seq);
    }
    let mut wt = connect(&app, "?channels=r&cursor=r:3:other", &[]).await.unwrap();
    wt.expect("welcome").await;
    wt.expect("subscribed").await;
    let reset = wt.expect("reset").await;
    assert_eq!(reset["reason"], "epoch_changed");
    assert_eq!(reset["epoch"], epoch);
    for seq in 1..=5u64 {
        assert_eq!(wt.expect("message").await["seq"], seq);
    }
}

/// The status a session request is answered with, read with
/// web-transport-quinn's client (wtransport's reports a refusal without it).
async fn session_status(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> u16 {
    use web_transport_quinn::proto::{self, ConnectRequest};
    use web_transport_quinn::{ClientBuilder, ClientError, ConnectError, http};
    let (_, body) = app.get("/api/webtransport").await;
    let hex = body["certificate_hashes"][0]["value"].as_str().unwrap();
    let hash = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let client = ClientBuilder::new().with_server_certificate_hashes(vec![hash]).unwrap();
    let url = format!("{}{query}", body["url"].as_str().unwrap());
    let mut request = ConnectRequest::new(url::Url::parse(&url).unwrap());
    for (name, value) in headers {
        request.headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    match timeout(PATIENCE, client.connect(request)).await.expect("an answer in time") {
        Ok(_) => 200,
        Err(ClientError::HttpError(
            ConnectError::ErrorStatus(status)
            | ConnectError::ProtoError(proto::ConnectError::WrongStatus(Some(status))),
        )) => status.as_u16(),
        Err(other) => panic!("{query}: {other}"),
    }
}

#[tokio::test]
async fn a_refused_session_gets_the_status_a_refused_websocket_upgrade_gets() {
    let secured = spawn_app_with(HubKind::Memory, |c| c.auth_secret = Some("s3cret".into())).await;
    let open = spawn_app(HubKind::Memory).await;
    let none: &[(&str, &str)] = &[];
    let foreign: &[(&str, &str)] = &[("origin", "http://evil.example")];
    let cases = [
        (&secured, "?channels=a", none),
        (&open, "?channels=bad%20name", none),
        (&open, "?channels=a", foreign),
        (&open, "?channels=a&cursor=nonsense", none),
    ];
    for (app, query, headers) in cases {
        let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
        let ws = crate::access::upgrade(app, &format!("/ws{query}"), &extra).await;
        let wt = session_status(app, query, headers).await;
        assert!(wt >= 400, "{query} {headers:?}: refused ({wt})");
        assert!(ws.starts_with(&format!("HTTP/1.1 {wt} ")), "{query} {headers:?}: /wt {wt}, /ws {ws:?}");
    }
    // Past the per-address limit (the discovery connection and one session): 429, as on /ws.
    let limited = spawn_app_with(HubKind::Memory, |c| c.max_connections_per_ip = 2).await;
    let _first = connect(&limited, "?channels=c", &[]).await.unwrap();
    assert_eq!(session_status(&limited, "?channels=c", &[]).await, 429);
}

#[tokio::test]
async fn refusals_get_a_status_and_the_server_stays_up() {
    let app = spawn_app_with(HubKind::Memory, |c| c.auth_secret = Some("s3cret".into())).await;
    for query in ["?channels=a", "?channels=bad%20name&access_token=x"] {
        match connect(&app, query, &[]).await {
            Err(ConnectingError::SessionRejected) => {}
            Err(other) => panic!("{query}: {other:?}"),
            Ok(_) => panic!("{query}: accepted"),
        }
    }
    let stats = app.stats().await;
    assert_eq!(stats["transports"]["webtransport"]["connections_open"], 0);
    // An origin that is not allowed, as a browser sends it.
    let open = spawn_app(HubKind::Memory).await;
    assert!(matches!(
        connect(&open, "?channels=a", &[("origin", "http://evil.example")]).await,
        Err(ConnectingError::SessionRejected)
    ));
    assert!(connect(&open, "?channels=a", &[]).await.is_ok(), "the same without a foreign origin");
}

#[tokio::test]
async fn a_frame_over_the_limit_ends_the_session_with_1009() {
    let app = spawn_app_with(HubKind::Memory, |c| c.max_frame = 1024).await;
    let mut wt = connect(&app, "?channels=big", &[]).await.unwrap();
    wt.expect("welcome").await;
    wt.send_raw(&vec![b' '; 4096]).await;
    assert_eq!(wt.closed().await.0, 1009);
    assert_eq!(app.publish("big", json!(1)).await["seq"], 1, "the server goes on");
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1012() {
    let app = spawn_app(HubKind::Memory).await;
    let mut wt = connect(&app, "?channels=s", &[]).await.unwrap();
    wt.expect("welcome").await;
    wt.expect("subscribed").await;
    app.state.ctx.shutdown.trigger();
    let (code, reason) = wt.closed().await;
    assert_eq!(code, 1012, "{reason}");
    assert_eq!(reason, "server restarting");
}

/// Consecutive MessagePack values off a stream, read as they come.
struct Maps {
    recv: RecvStream,
    buf: Vec<u8>,
}

impl Maps {
    async fn next(&mut self) -> rmpv::Value {
        loop {
            let mut rest = &self.buf[..];
            if let Ok(value) = rmpv::decode::read_value(&mut rest) {
                let used = self.buf.len() - rest.len();
                self.buf.drain(..used);
                return value;
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(PATIENCE, self.recv.read(&mut chunk)).await.expect("a frame in time").unwrap().unwrap();
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn msgpack_sessions_send_one_map_after_another() {
    let app = spawn_app(HubKind::Memory).await;
    let (url, hashes) = discovery(&app).await;
    let config = ClientConfig::builder().with_bind_default().with_server_certificate_hashes(hashes).build();
    let connection =
        Endpoint::client(config).unwrap().connect(format!("{url}?channels=m&format=msgpack")).await.unwrap();
    let (mut send, recv) = connection.accept_bi().await.unwrap();
    let mut maps = Maps { recv, buf: Vec::new() };
    assert_eq!(maps.next().await["type"].as_str(), Some("welcome"));
    assert_eq!(maps.next().await["type"].as_str(), Some("subscribed"));
    app.publish("m", json!({"k": [1, 2.5, "x"]})).await;
    let message = maps.next().await;
    assert_eq!(message["type"].as_str(), Some("message"));
    assert_eq!(message["data"]["k"][1], rmpv::Value::F64(2.5));
    assert_eq!(message["data"]["k"][0].as_u64(), Some(1));
    // A client frame in MessagePack.
    send.write_all(&rmp_serde::to_vec(&json!({"type": "ping", "ref": "mp"})).unwrap()).await.unwrap();
    let pong = maps.next().await;
    assert_eq!((pong["type"].as_str(), pong["ref"].as_str()), (Some("pong"), Some("mp")));
}

#[tokio::test]
async fn a_token_grants_the_session_and_its_expiry_ends_it_with_1008() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let app = spawn_app_with(HubKind::Memory, |c| c.auth_secret = Some("wt-secret".into())).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"exp": now + 2, "subscribe": ["t"]});
    let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"wt-secret")).unwrap();
    // A channel the token does not grant is refused like /ws's 403.
    assert!(matches!(
        connect(&app, &format!("?channels=other&access_token={token}"), &[]).await,
        Err(ConnectingError::SessionRejected)
    ));
    let mut wt = connect(&app, &format!("?channels=t&access_token={token}"), &[]).await.unwrap();
    wt.expect("welcome").await;
    wt.expect("subscribed").await;
    let (code, reason) = wt.closed().await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
}

#[tokio::test]
async fn a_tagged_session_shows_on_its_lane_and_the_lab_can_block_it() {
    let app = spawn_app(HubKind::Memory).await;
    let mut wt = connect(&app, "?channels=l&client=wtlab", &[]).await.unwrap();
    wt.expect("welcome").await;
    wt.expect("subscribed").await;
    app.publish("l", json!("seen")).await;
    wt.expect("message").await;
    let (status, report) = app.get("/api/inspect/wtlab").await;
    assert_eq!(status, 200);
    let lane = &report["transports"]["webtransport"];
    let request = lane["request"].as_str().unwrap();
    assert!(request.starts_with(":authority: "), "pseudo-headers first: {request}");
    assert!(request.contains(":protocol: webtransport"), "{request}");
    assert!(request.contains(":path: /wt?channels=l&client=wtlab"), "{request}");
    assert!(lane["response"].as_str().unwrap().starts_with(r#"{"type":"welcome""#), "{lane}");
    assert!(lane["bytes_sent"].as_u64().unwrap() > 0 && lane["bytes_received"].as_u64().unwrap() > 0, "{lane}");

    // Blocked: no answer at all, so the client's own deadline decides.
    let (status, _) = app
        .http
        .post(app.url("/api/inspect/wtlab/impair"))
        .body(r#"{"webtransport":"blocked"}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    assert!(matches!(wt.closed().await.0, 1012), "a lab change cuts the page's sessions");
    let (url, hashes) = discovery(&app).await;
    let config = ClientConfig::builder().with_bind_default().with_server_certificate_hashes(hashes).build();
    let endpoint = Endpoint::client(config).unwrap();
    let attempt = timeout(Duration::from_secs(2), endpoint.connect(format!("{url}?channels=l&client=wtlab"))).await;
    assert!(attempt.is_err(), "no answer within 2 s, not a refusal: {:?}", attempt.map(|r| r.map(|_| ())));
    // Another page is not affected.
    assert!(connect(&app, "?channels=l&client=other", &[]).await.is_ok());
}

#[tokio::test]
async fn the_connection_limits_count_webtransport_sessions() {
    // Three from this address: the kept-alive TCP connection that asks for
    // discovery, and two sessions.
    let app = spawn_app_with(HubKind::Memory, |c| c.max_connections_per_ip = 3).await;
    let mut first = connect(&app, "?channels=c", &[]).await.unwrap();
    first.expect("welcome").await;
    let mut second = connect(&app, "?channels=c", &[]).await.unwrap();
    second.expect("welcome").await;
    assert!(matches!(connect(&app, "?channels=c", &[]).await, Err(ConnectingError::SessionRejected)));
    let stats = app.stats().await;
    assert_eq!(stats["transports"]["webtransport"]["connections_open"], 2);
    // One ends: its place is free again.
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(mut again) = connect(&app, "?channels=c", &[]).await {
            again.expect("welcome").await;
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed session's place never came back");
    }
}
