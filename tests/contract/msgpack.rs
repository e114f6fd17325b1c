//! API.md v1.2 "MessagePack encoding": the same objects as the JSON, read
//! here with rmpv (not the transcoder the server writes with), for the
//! WebSocket (subprotocol or `?format=`), the polls (`Accept` or
//! `?format=`) and publish bodies; and the refusals.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::wsraw::{BINARY, RawWs, TEXT};
use crate::common::{HubKind, TestApp, spawn_app};

/// A MessagePack value as JSON, refusing what JSON has no equal for, so
/// that equality with a JSON client's object is exact.
fn to_json(value: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match value {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => i.as_u64().map(Value::from).or_else(|| i.as_i64().map(Value::from)).unwrap(),
        M::F64(f) => json!(f),
        M::String(s) => Value::String(s.into_str().expect("UTF-8")),
        M::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        M::Map(entries) => Value::Object(
            entries.into_iter().map(|(k, v)| (k.as_str().expect("string keys").to_string(), to_json(v))).collect(),
        ),
        other => panic!("not a value JSON has: {other:?}"),
    }
}

fn decode(bytes: &[u8]) -> Value {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest).expect("one MessagePack value");
    assert!(rest.is_empty(), "{} bytes after the value", rest.len());
    to_json(value)
}

fn encode(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec(value).unwrap()
}

/// Data with every kind of value: integers of each width, floats, strings, nesting.
fn varied(i: u64) -> Value {
    json!({"i": i, "neg": -5, "big": 18446744073709551615u64, "f": 2.5, "e": 1e3, "s": "héllo", "n": null,
           "b": [true, false], "deep": {"a": [{"b": "c"}]}})
}

async fn ws_with_protocols(app: &TestApp, query: &str, protocols: &str) -> (Option<String>, WsStream) {
    let mut request = app.ws_url(&format!("/ws{query}")).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (stream, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let protocol = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (protocol, stream)
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next data frame: its kind (binary or not) and its object.
async fn next_frame(ws: &mut WsStream) -> (bool, Value) {
    loop {
        let frame =
            tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        match frame {
            WsMessage::Binary(bytes) => return (true, decode(&bytes)),
            WsMessage::Text(text) => return (false, serde_json::from_str(&text).unwrap()),
            _ => continue,
        }
    }
}

async fn frame_of(ws: &mut WsStream, kind: &str) -> (bool, Value) {
    loop {
        let (binary, value) = next_frame(ws).await;
        if value["type"] == kind {
            return (binary, value);
        }
    }
}

#[tokio::test]
async fn a_msgpack_websocket_gets_binary_frames_holding_the_objects_a_json_client_gets() {
    let app = spawn_app(HubKind::Memory).await;
    let (protocol, mut packed) = ws_with_protocols(&app, "?channels=m", "pushwire.msgpack, pushwire.json").await;
    assert_eq!(protocol.as_deref(), Some("pushwire.msgpack"), "the first of the client's list");
    let mut json_ws = app.ws("?channels=m").await;
    json_ws.handshake(1).await;
    let (binary, welcome) = next_frame(&mut packed).await;
    assert!(binary);
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome["heartbeat_ms"].is_u64());
    let (_, subscribed) = frame_of(&mut packed, "subscribed").await;
    assert_eq!(subscribed["channel"], "m");
    for i in 1..=3 {
        app.publish("m", varied(i)).await;
    }
    for _ in 0..3 {
        let (binary, message) = frame_of(&mut packed, "message").await;
        assert!(binary);
        assert_eq!(message, json_ws.expect("message").await, "the same object in both encodings");
    }
    // A client frame in MessagePack: publish with a ref, answered in MessagePack.
    let publish = json!({"type": "publish", "channel": "m", "data": varied(9), "ref": 7});
    packed.send(WsMessage::Binary(encode(&publish).into())).await.unwrap();
    let (binary, ack) = frame_of(&mut packed, "ack").await;
    assert!(binary);
    assert_eq!(ack["ref"], 7);
    assert_eq!(ack["seq"], 4);
    let delivered = json_ws.expect("message").await;
    assert_eq!(delivered["data"], varied(9), "published in MessagePack, delivered as JSON");
    // Text JSON frames are still accepted; a bad MessagePack frame is an error, not a close.
    packed.send(WsMessage::text(r#"{"type":"ping","ref":"t"}"#)).await.unwrap();
    assert_eq!(frame_of(&mut packed, "pong").await.1["ref"], "t");
    packed.send(WsMessage::Binary(vec![0xc1].into())).await.unwrap();
    let (_, error) = frame_of(&mut packed, "error").await;
    assert_eq!(error["code"], "bad_json");
    packed.send(WsMessage::Binary(encode(&json!({"type": "ping", "ref": "u"})).into())).await.unwrap();
    assert_eq!(frame_of(&mut packed, "pong").await.1["ref"], "u");
}

#[tokio::test]
async fn format_and_subprotocol_choose_the_encoding_as_api_md_says() {
    let app = spawn_app(HubKind::Memory).await;
    // ?format=msgpack without a subprotocol.
    let mut ws = RawWs::connect(app.addr, "/ws?format=msgpack", &[]).await;
    assert_eq!(ws.header("sec-websocket-protocol"), None);
    let welcome = ws.data().await;
    assert_eq!(welcome.opcode, BINARY);
    assert_eq!(decode(&welcome.payload)["type"], "welcome");
    // A subprotocol wins over ?format=.
    let mut ws = RawWs::connect(app.addr, "/ws?format=msgpack", &["Sec-WebSocket-Protocol: pushwire.json"]).await;
    assert_eq!(ws.header("sec-websocket-protocol").as_deref(), Some("pushwire.json"));
    assert_eq!(ws.data().await.opcode, TEXT);
    // A subprotocol offer naming neither: no Sec-WebSocket-Protocol, JSON.
    let mut ws = RawWs::connect(app.addr, "/ws", &["Sec-WebSocket-Protocol: chat, superchat"]).await;
    assert!(ws.head.starts_with("HTTP/1.1 101"));
    assert_eq!(ws.header("sec-websocket-protocol"), None);
    assert_eq!(ws.data().await.opcode, TEXT);
    // Bad values are 400s.
    for path in ["/ws?format=xml", "/poll?channels=a&format=", "/long-poll?channels=a&format=MSGPACK"] {
        let ws = RawWs::connect(app.addr, path, &[]).await;
        assert!(ws.head.starts_with("HTTP/1.1 400"), "{path}: {}", ws.head);
    }
    let (status, body) = app.get("/sse?channels=a&format=msgpack").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn polls_answer_in_msgpack_when_accept_or_format_asks() {
    let app = spawn_app(HubKind::Memory).await;
    for i in 1..=3 {
        app.publish("q", varied(i)).await;
    }
    for path in ["/poll?channels=q&cursor=q:0", "/long-poll?channels=q&cursor=q:0&timeout=0"] {
        let plain: Value = app.http.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        for (accept, query) in [(Some("application/msgpack"), ""), (None, "&format=msgpack")] {
            let mut request = app.http.get(app.url(&format!("{path}{query}")));
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "application/msgpack");
            assert_eq!(decode(&response.bytes().await.unwrap()), plain, "{path}{query}");
        }
        // ?format= wins over Accept; a higher q for JSON keeps JSON.
        for (accept, query) in
            [("application/msgpack", "&format=json"), ("application/json, application/msgpack;q=0.5", "")]
        {
            let response =
                app.http.get(app.url(&format!("{path}{query}"))).header("accept", accept).send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "application/json", "{accept} {query}");
        }
    }
}

#[tokio::test]
async fn publish_takes_msgpack_bodies_and_refuses_what_an_encoding_cannot_carry() {
    let app = spawn_app(HubKind::Memory).await;
    let url = app.url("/channels/r/messages");
    let response = app
        .http
        .post(&url)
        .header("content-type", "application/msgpack")
        .header("accept", "application/msgpack")
        .body(encode(&varied(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/msgpack");
    let answer = decode(&response.bytes().await.unwrap());
    assert_eq!(answer["seq"], 1);
    assert!(answer["epoch"].is_string());
    let (_, poll) = app.get("/poll?channels=r&cursor=r:0").await;
    assert_eq!(poll["messages"][0]["data"], varied(1), "published in MessagePack, read as JSON");

    let refused: [(&str, Vec<u8>); 5] = [
        ("application/json", b"{\"x\":1e400}".to_vec()),
        ("application/json", b"[1, -1e999]".to_vec()),
        ("application/msgpack", vec![0xc4, 0x01, 0x00]), // bin
        ("application/msgpack", vec![0x81, 0x01, 0x02]), // an integer key
        ("application/msgpack", vec![0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]), // infinity
    ];
    for (content_type, body) in refused {
        let response =
            app.http.post(&url).header("content-type", content_type).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 400, "{content_type} {body:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_json");
    }
    // Over a WebSocket too, and the connection stays usable.
    let mut ws = app.ws("").await;
    ws.expect("welcome").await;
    ws.send_text(r#"{"type":"publish","channel":"r","data":{"x":1e400},"ref":"big"}"#).await;
    let error = ws.expect("error").await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("bad_json"), Some("big")));
    ws.send(json!({"type": "ping", "ref": "still"})).await;
    assert_eq!(ws.expect("pong").await["ref"], "still");
    // Nothing refused was published.
    assert_eq!(app.publish("r", json!(1)).await["seq"], 2);
}
