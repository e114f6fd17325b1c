//! Access control and origins (API.md v1.1): every 401 and 403 path on every
//! transport, the upgrade and publish; tokens expiring on live connections;
//! the dashboard's controls; redaction; CORS.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const SECRET: &str = "a test secret, long enough";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(claims: Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// A token for an hour with these grants.
fn grant(subscribe: &[&str], publish: &[&str], admin: bool) -> String {
    token(json!({"exp": now() + 3600, "sub": "tester", "subscribe": subscribe, "publish": publish, "admin": admin}))
}

async fn secured() -> TestApp {
    spawn_app_with(HubKind::Memory, |c| c.auth_secret = Some(SECRET.into())).await
}

/// Status and JSON error code of a GET with optional bearer token.
async fn get(app: &TestApp, path: &str, bearer: Option<&str>) -> (u16, Option<String>) {
    let mut request = app.http.get(app.url(path));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 401 {
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{path}");
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(String::from))
}

async fn publish(app: &TestApp, channel: &str, bearer: Option<&str>, origin: Option<&str>) -> (u16, Value) {
    let mut request = app.http.post(app.url(&format!("/channels/{channel}/messages"))).json(&json!({"x": 1}));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    if let Some(o) = origin {
        request = request.header("origin", o);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The status line answered to a WebSocket upgrade with these extra headers.
pub(crate) async fn upgrade(app: &TestApp, path_and_query: &str, extra: &str) -> String {
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        app.addr
    );
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_every_transport_and_publish_is_401() {
    let app = secured().await;
    let expired = token(json!({"exp": now() - 5, "subscribe": ["*"], "publish": ["*"]}));
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 60, "subscribe": ["*"]}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    // {"alg":"none"}: unsigned.
    let none = format!("eyJhbGciOiJub25lIn0.{}.", b64(&json!({"exp": now() + 60, "subscribe": ["*"]}).to_string()));
    for bad in [None, Some("not.a.jwt"), Some(expired.as_str()), Some(wrong_key.as_str()), Some(none.as_str())] {
        for path in ["/poll?channels=a", "/long-poll?channels=a&timeout=0", "/sse?channels=a"] {
            assert_eq!(get(&app, path, bad).await, (401, Some("unauthorized".into())), "{path} with {bad:?}");
        }
        assert_eq!(publish(&app, "a", bad, None).await.0, 401, "publish with {bad:?}");
        let auth = bad.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        assert!(upgrade(&app, "/ws?channels=a", &auth).await.starts_with("HTTP/1.1 401"), "upgrade with {bad:?}");
    }
    // Open without a token.
    for path in ["/", "/healthz", "/readyz", "/api/time", "/metrics", "/api/stats", "/static/js/pushwire.js"] {
        let status = app.http.get(app.url(path)).send().await.unwrap().status();
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_only_its_channels() {
    let app = secured().await;
    let reader = grant(&["news", "user.42.*"], &["user.42.*"], false);
    let t = Some(reader.as_str());
    for path in ["/poll?channels=news", "/poll?channels=user.42.inbox,news", "/long-poll?channels=news&timeout=0"] {
        assert_eq!(get(&app, path, t).await.0, 200, "{path}");
    }
    for path in [
        "/poll?channels=secret",
        "/poll?channels=news,secret",
        "/poll?channels=user.4",
        "/long-poll?channels=secret&timeout=0",
        "/sse?channels=news,secret",
    ] {
        assert_eq!(get(&app, path, t).await, (403, Some("forbidden".into())), "{path}");
    }
    assert_eq!(publish(&app, "user.42.inbox", t, None).await.0, 201);
    assert_eq!(publish(&app, "news", t, None).await.0, 403, "subscribe is not publish");
    let auth = format!("Authorization: Bearer {reader}\r\n");
    assert!(upgrade(&app, "/ws?channels=news", &auth).await.starts_with("HTTP/1.1 101"));
    assert!(upgrade(&app, "/ws?channels=news,secret", &auth).await.starts_with("HTTP/1.1 403"));
    // The query parameter works too; the header wins over it.
    assert_eq!(get(&app, &format!("/poll?channels=news&access_token={reader}"), None).await.0, 200);
    assert_eq!(get(&app, &format!("/poll?channels=news&access_token={reader}"), Some("bad")).await.0, 401);
    let nobody = grant(&[], &[], false);
    assert_eq!(get(&app, "/poll?channels=news&access_token=bad", Some(&nobody)).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_are_checked_against_the_token() {
    let app = secured().await;
    let t = grant(&["a", "b"], &["a"], false);
    let mut ws = Ws::connect(&app.ws_url(&format!("/ws?access_token={t}"))).await;
    ws.expect("welcome").await;
    ws.send(json!({"type": "subscribe", "channels": ["a", "secret"], "ref": "s1"})).await;
    let error = ws.expect("error").await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("forbidden"), Some("s1")));
    ws.send(json!({"type": "subscribe", "channels": ["a", "b"], "ref": "s2"})).await;
    ws.expect("subscribed").await;
    ws.expect("subscribed").await;
    assert_eq!(ws.expect("ack").await["ref"], "s2", "the refused frame subscribed nothing and got no ack");
    ws.send(json!({"type": "publish", "channel": "b", "data": 1, "ref": "p1"})).await;
    let error = ws.expect("error").await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("forbidden"), Some("p1")));
    ws.send(json!({"type": "publish", "channel": "a", "data": 1, "ref": "p2"})).await;
    // The ack and the publisher's own copy of the message come in either order.
    let mut kinds = [ws.json().await, ws.json().await].map(|f| (f["type"].clone(), f["seq"].clone()));
    kinds.sort_by_key(|(kind, _)| kind.to_string());
    assert_eq!(kinds, [(json!("ack"), json!(1)), (json!("message"), json!(1))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_ends_live_connections_within_a_second() {
    let app = secured().await;
    let exp = now() + 2;
    let t = token(json!({"exp": exp, "subscribe": ["*"]}));
    let mut ws = Ws::connect(&app.ws_url(&format!("/ws?channels=x&access_token={t}"))).await;
    ws.handshake(1).await;
    let mut sse = Sse::open(&app.http, &app.url(&format!("/sse?channels=x&access_token={t}")), None).await;
    sse.expect("subscribed").await;
    let held = {
        let (http, url) = (app.http.clone(), app.url(&format!("/long-poll?channels=x&timeout=60&access_token={t}")));
        tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    match ws.next().await {
        Err(WsEnd::Closed(code, reason)) => assert_eq!((code, reason.as_str()), (Some(1008), "token expired")),
        other => panic!("expected a 1008 close, got {other:?}"),
    }
    let ended = now();
    assert!(ended <= exp + 1, "closed within a second of exp ({ended} vs {exp})");
    while let Some(block) = sse.block().await {
        assert!(block.event.is_none(), "no event after the token expired: {block:?}");
    }
    let answer = tokio::time::timeout(PATIENCE, held).await.expect("the held poll answered").unwrap();
    assert!(answer["cursor"].as_str().unwrap().starts_with("x:0:"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_controls_need_the_admin_claim() {
    let app = secured().await;
    let user = grant(&["*"], &["*"], false);
    let admin = grant(&["*"], &["*"], true);
    // A tagged request registers the page.
    assert_eq!(get(&app, "/poll?channels=a&client=page9", Some(&admin)).await.0, 200);
    let demo = |t: Option<&str>| {
        let mut request = app.http.post(app.url("/api/demo")).json(&json!({"rate": 2, "payload": 0}));
        if let Some(t) = t {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    assert_eq!(demo(None).await.unwrap().status(), 401);
    assert_eq!(demo(Some(&user)).await.unwrap().status(), 403);
    assert_eq!(demo(Some(&admin)).await.unwrap().status(), 200);
    assert_eq!(get(&app, "/api/inspect/page9", None).await.0, 401);
    assert_eq!(get(&app, "/api/inspect/page9", Some(&user)).await.0, 403);
    assert_eq!(get(&app, "/api/inspect/page9", Some(&admin)).await.0, 200);
    let drop = |t: &str| app.http.post(app.url("/api/inspect/page9/drop")).bearer_auth(t).send();
    assert_eq!(drop(&user).await.unwrap().status(), 403);
    assert_eq!(drop(&admin).await.unwrap().status(), 202);
    assert_eq!(get(&app, "/api/demo", None).await.0, 200, "reading the demo's settings stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_never_show_credentials() {
    // Auth off: redaction is always on.
    let app = spawn_app(HubKind::Memory).await;
    let response = app
        .http
        .get(app.url("/poll?channels=a&client=page3&access_token=eyJsecret.payload.sig"))
        .header("authorization", "Bearer eyJsecret.payload.sig")
        .header("cookie", "session=topsecret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, report) = app.get("/api/inspect/page3").await;
    let head = report["transports"]["poll"]["request"].as_str().unwrap();
    assert!(head.contains("access_token=[redacted]") && head.contains("[redacted]"), "{head}");
    assert!(!head.contains("eyJsecret") && !head.contains("topsecret"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es256_public_key_verifies_and_refuses_other_algorithms() {
    let pair = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
    let dir = std::env::temp_dir().join(format!("pushwire-es256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("public.pem");
    std::fs::write(&path, pair.public_key_pem()).unwrap();
    let app = spawn_app_with(HubKind::Memory, |c| c.auth_public_key = Some(path.clone())).await;
    let claims = json!({"exp": now() + 60, "subscribe": ["*"]});
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let es256 = encode(&Header::new(Algorithm::ES256), &claims, &signing).unwrap();
    assert_eq!(get(&app, "/poll?channels=a", Some(&es256)).await.0, 200);
    // Algorithm confusion: the public key used as an HMAC secret.
    let confused =
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(pair.public_key_pem().as_bytes()))
            .unwrap();
    assert_eq!(get(&app, "/poll?channels=a", Some(&confused)).await.0, 401);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_are_refused_where_browsers_do_not_protect() {
    let app = spawn_app(HubKind::Memory).await;
    let own = format!("http://{}", app.addr);
    assert_eq!(publish(&app, "o", None, Some("http://evil.example")).await.0, 403);
    assert_eq!(publish(&app, "o", None, Some(&own)).await.0, 201, "the same origin");
    assert_eq!(publish(&app, "o", None, None).await.0, 201, "no Origin: curl, servers");
    let demo = app
        .http
        .post(app.url("/api/demo"))
        .header("origin", "http://evil.example")
        .json(&json!({"rate": 1000, "payload": 16384}))
        .send()
        .await
        .unwrap();
    assert_eq!(demo.status(), 403);
    assert_eq!(app.get("/api/demo").await.1["rate"], 0.0, "the demo was not changed");
    assert!(upgrade(&app, "/ws?channels=o", "Origin: http://evil.example\r\n").await.starts_with("HTTP/1.1 403"));
    assert!(upgrade(&app, "/ws?channels=o", &format!("Origin: {own}\r\n")).await.starts_with("HTTP/1.1 101"));
    // A text/plain publish (what a form or a simple fetch sends) is 415.
    let plain = app
        .http
        .post(app.url("/channels/o/messages"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    assert_eq!(plain.json::<Value>().await.unwrap()["error"]["code"], "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_get_cors() {
    let app = spawn_app_with(HubKind::Memory, |c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let response =
        app.http.get(app.url("/poll?channels=c")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example");
    assert!(response.headers().get_all("vary").iter().any(|v| v == "Origin"));
    let other =
        app.http.get(app.url("/poll?channels=c")).header("origin", "https://else.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/channels/c/messages"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, authorization")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    let methods = ok.headers()["access-control-allow-methods"].to_str().unwrap();
    let headers = ok.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(methods.contains("GET") && methods.contains("POST"), "{methods}");
    for h in ["authorization", "content-type", "last-event-id"] {
        assert!(headers.contains(h), "{headers}");
    }
    assert_eq!(preflight("https://else.example").await.unwrap().status(), 403);
    let any = spawn_app_with(HubKind::Memory, |c| c.allowed_origins = vec!["*".into()]).await;
    assert_eq!(publish(&any, "c", None, Some("http://anywhere.example")).await.0, 201);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// An `exp` past what the system clock can name (2^63 and beyond) is a far
/// future, not a crash: the token works on every path, live ones included.
/// One not valid yet (`nbf` ahead) is 401 everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_exp_is_valid_and_a_future_nbf_is_not_yet() {
    let app = secured().await;
    for exp in [1u64 << 63, u64::MAX] {
        let far = token(json!({"exp": exp, "subscribe": ["*"], "publish": ["*"]}));
        assert_eq!(get(&app, "/poll?channels=far", Some(&far)).await.0, 200, "exp {exp}");
        let mut ws = app.ws(&format!("?channels=far&access_token={far}")).await;
        ws.handshake(1).await;
        let (status, sent) = publish(&app, "far", Some(&far), None).await;
        assert_eq!(status, 201, "exp {exp}");
        assert_eq!(ws.expect("message").await["seq"], sent["seq"], "the live connection lives on");
    }
    let early = token(json!({"exp": now() + 3600, "nbf": now() + 600, "subscribe": ["*"], "publish": ["*"]}));
    assert_eq!(get(&app, "/poll?channels=far", Some(&early)).await, (401, Some("unauthorized".into())));
    assert_eq!(publish(&app, "far", Some(&early), None).await.0, 401);
    assert!(upgrade(&app, &format!("/ws?channels=far&access_token={early}"), "").await.starts_with("HTTP/1.1 401"));
    let started = token(json!({"exp": now() + 3600, "nbf": now() - 1, "subscribe": ["*"]}));
    assert_eq!(get(&app, "/poll?channels=far", Some(&started)).await.0, 200, "an nbf passed is fine");
    assert_eq!(app.readyz().await, 200, "the server lives on");
}

/// A page's network lab, prepared by an admin, outlives a flood of page ids:
/// refused requests register none, and accepted ones cannot push out a lab
/// changed within the hour (`inspect::MAX_CLIENTS` pages are kept at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_lab_survives_a_flood_of_page_ids() {
    let app = secured().await;
    let admin = grant(&["*"], &["*"], true);
    let lab = || async {
        let response = app.http.get(app.url("/api/inspect/prepared/impair")).bearer_auth(&admin).send().await.unwrap();
        response.json::<Value>().await.unwrap()
    };
    let change = json!({"websocket": "refuse", "latency_ms": 300});
    let response =
        app.http.post(app.url("/api/inspect/prepared/impair")).bearer_auth(&admin).json(&change).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let prepared = lab().await;
    assert_eq!(prepared["websocket"], "refuse");
    for n in 0..300 {
        assert_eq!(get(&app, &format!("/poll?channels=a&client=flood{n}"), None).await.0, 401);
    }
    assert_eq!(lab().await, prepared, "refused requests registered no page");
    let user = grant(&["*"], &[], false);
    for n in 0..300 {
        assert_eq!(get(&app, &format!("/poll?channels=a&client=page{n}"), Some(&user)).await.0, 200);
    }
    assert_eq!(lab().await, prepared, "a lab changed within the hour is kept while others come and go");
    assert_eq!(get(&app, "/api/inspect/page299", Some(&admin)).await.0, 200, "new pages are still inspected");
}
