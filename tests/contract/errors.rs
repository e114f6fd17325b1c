//! Publishing over HTTP and bad input of every kind: the JSON errors of
//! API.md, and nothing already published is harmed.

use serde_json::{Value, json};

use crate::common::*;

crate::for_each_hub!(
    publish_answers_201_with_position,
    bad_bodies_get_json_errors_and_lose_nothing,
    bad_channels_and_methods_get_json_errors,
);

async fn publish_answers_201_with_position(hub: HubKind) {
    let app = spawn_app(hub).await;
    let before = now_micros();
    let response = app
        .http
        .post(app.url("/channels/news/messages"))
        .header("content-type", "application/json")
        .body(r#"{"text":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["channel"], "news");
    assert_eq!(answer["seq"], 1);
    let ts = answer["ts"].as_u64().unwrap();
    assert!(ts >= before && ts <= now_micros(), "ts is the server's publish time in microseconds");
    let epoch = answer["epoch"].as_str().unwrap();
    assert!(!epoch.is_empty() && epoch.len() <= 16 && epoch.bytes().all(|b| b.is_ascii_alphanumeric()), "{epoch}");
    assert_eq!(app.publish("news", json!(2)).await["seq"], 2);
    // Any JSON value is data, and comes back unchanged.
    for data in [json!(null), json!("s"), json!([1, {"a": []}]), json!(-1.5e-7)] {
        let seq = app.publish("kinds", data.clone()).await["seq"].as_u64().unwrap();
        let (_, answer) = app.get(&format!("/poll?channels=kinds&cursor=kinds:{}", seq - 1)).await;
        assert_eq!(answer["messages"][0]["data"], data);
    }
}

async fn bad_bodies_get_json_errors_and_lose_nothing(hub: HubKind) {
    let app = spawn_app_with(hub, |c| c.max_body = 1024).await;
    app.publish("keep", json!({"first": true})).await;
    let post = |body: reqwest::Body| {
        app.http.post(app.url("/channels/keep/messages")).header("content-type", "application/json").body(body).send()
    };
    for (body, status, code) in [
        ("not json", 400, "bad_json"),
        ("", 400, "bad_json"),
        ("{\"a\":1} trailing", 400, "bad_json"),
        ("{\"a\":", 400, "bad_json"),
    ] {
        let response = post(body.into()).await.unwrap();
        assert_eq!(response.status(), status, "{body:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body:?}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Over the limit, declared by Content-Length...
    let big = format!("\"{}\"", "x".repeat(2000));
    let response = post(big.clone().into()).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "too_large");
    // ...and streamed without one.
    let stream =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 200]))));
    let response = post(reqwest::Body::wrap_stream(stream)).await.unwrap();
    assert_eq!(response.status(), 413);
    // Just under the limit is fine.
    let fits = format!("\"{}\"", "y".repeat(1000));
    assert_eq!(post(fits.into()).await.unwrap().status(), 201);
    let (_, answer) = app.get("/poll?channels=keep&cursor=keep:0").await;
    assert_eq!(seqs(answer["messages"].as_array().unwrap()), [1, 2], "bad requests published nothing and lost nothing");
    assert_eq!(answer["messages"][0]["data"], json!({"first": true}));
}

async fn bad_channels_and_methods_get_json_errors(hub: HubKind) {
    let app = spawn_app(hub).await;
    for path in
        ["/channels/a%20b/messages", "/channels/a:b/messages", &format!("/channels/{}/messages", "x".repeat(65))]
    {
        let response = app.http.post(app.url(path)).body("1").send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "bad_channel", "{path}");
    }
    for (method, path, allow) in [
        ("GET", "/channels/a/messages", "POST"),
        ("DELETE", "/channels/a/messages", "POST"),
        ("POST", "/poll?channels=a", "GET"),
        ("PUT", "/sse?channels=a", "GET"),
        ("POST", "/long-poll?channels=a", "GET"),
        ("HEAD", "/long-poll?channels=a", "GET"),
        ("POST", "/ws", "GET"),
        ("DELETE", "/healthz", "GET, HEAD"),
    ] {
        let response = app.http.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow);
        if method != "HEAD" {
            assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");
        }
    }
    // HEAD on a status endpoint answers like GET, without the body.
    let head = app.http.head(app.url("/readyz")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    let (status, body) = app.get("/no/such/thing").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}
