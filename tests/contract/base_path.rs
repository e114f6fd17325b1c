//! `--base-path`: every route under the prefix and nothing at the root; the
//! byte meter and the CORS policy still know which route a request is for.

use serde_json::{Value, json};

use crate::common::*;

const BASE: &str = "/pushwire";

async fn under_base() -> TestApp {
    spawn_app_with(HubKind::Memory, |c| c.base_path = BASE.parse().unwrap()).await
}

/// A GET of `path` as given (no base path added): status, and the JSON error code if any.
async fn status_at(app: &TestApp, path: &str) -> (u16, Option<String>) {
    let response = app.http.get(format!("http://{}{path}", app.addr)).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(String::from))
}

const NOT_FOUND: (u16, Option<&str>) = (404, Some("not_found"));

fn code(answer: &(u16, Option<String>)) -> (u16, Option<&str>) {
    (answer.0, answer.1.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_base_path_nothing_changes() {
    let app = spawn_app(HubKind::Memory).await;
    assert_eq!(app.base, "");
    for path in ["/poll?channels=a", "/healthz", "/api/stats", "/", "/static/js/pushwire.js"] {
        assert_eq!(status_at(&app, path).await.0, 200, "{path}");
    }
    assert_eq!(code(&status_at(&app, "/pushwire/poll?channels=a").await), NOT_FOUND);
    assert_eq!(code(&status_at(&app, "/pushwire").await), NOT_FOUND, "no redirect without a prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_base_path_every_route_is_under_it_and_none_at_the_root() {
    let app = under_base().await;
    for route in ["/poll?channels=a", "/long-poll?channels=a&timeout=0", "/healthz", "/readyz", "/metrics"] {
        assert_eq!(code(&status_at(&app, route).await), NOT_FOUND, "{route} at the root");
        assert_eq!(status_at(&app, &format!("{BASE}{route}")).await.0, 200, "{route} under {BASE}");
    }
    for route in ["/api/stats", "/api/time", "/api/demo", "/", "/static/js/pushwire.js", "/static/client.html"] {
        assert_eq!(status_at(&app, route).await.0, 404, "{route} at the root");
        assert_eq!(status_at(&app, &format!("{BASE}{route}")).await.0, 200, "{route} under {BASE}");
    }
    // Routes keep their own rules under the prefix; a near miss is no match.
    let post = app.http.post(app.url("/poll?channels=a")).send().await.unwrap();
    assert_eq!((post.status().as_u16(), post.headers()["allow"].to_str().unwrap()), (405, "GET"));
    assert_eq!(code(&status_at(&app, "/pushwirex/poll?channels=a").await), NOT_FOUND);
    assert_eq!(code(&status_at(&app, "/pushwire/nothing").await), NOT_FOUND);

    // `{base}` alone leads to `{base}/`, where the page's relative links resolve.
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (query, location) in [("", "pushwire/"), ("?access_token=t", "pushwire/?access_token=t")] {
        let response = no_redirect.get(format!("http://{}{BASE}{query}", app.addr)).send().await.unwrap();
        assert_eq!(response.status(), 308);
        assert_eq!(response.headers()["location"], location);
    }
    let page = app.http.get(format!("http://{}{BASE}", app.addr)).send().await.unwrap();
    assert_eq!(page.url().path(), "/pushwire/");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="static/js/dashboard.js""#) && !html.contains(r#"="/static"#), "relative links");

    // All four transports and publish, under the prefix.
    let mut ws = app.ws("?channels=bp").await;
    ws.handshake(1).await;
    let mut sse = app.sse("?channels=bp").await;
    sse.expect("subscribed").await;
    app.publish("bp", json!({"n": 1})).await;
    assert_eq!(ws.expect("message").await["data"], json!({"n": 1}));
    assert_eq!(sse.expect("message").await.json()["seq"], 1);
    for path in ["/long-poll?channels=bp&cursor=bp:0&timeout=0", "/poll?channels=bp&cursor=bp:0"] {
        let (status, answer) = app.get(path).await;
        assert_eq!((status, answer["messages"][0]["seq"].as_u64()), (200, Some(1)), "{path}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_base_path_stats_attribute_requests_and_bytes_to_their_transport() {
    let app = under_base().await;
    app.publish_many("bytes", 3).await;
    let before = app.stats().await;
    // One request of each kind; the poll on a raw socket, so its bytes can be counted exactly.
    let request = format!(
        "GET {BASE}/poll?channels=bytes&cursor=bytes:0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let response = raw_exchange(&app, &request).await;
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(app.get("/long-poll?channels=bytes&timeout=0").await.0, 200);
    let mut sse = app.sse("?channels=bytes").await;
    sse.expect("subscribed").await;
    let mut ws = app.ws("?channels=bytes").await;
    ws.handshake(1).await;
    app.publish("bytes", json!("one more")).await;
    ws.expect("message").await;
    sse.expect("message").await;
    assert_eq!(code(&status_at(&app, "/poll?channels=bytes").await), NOT_FOUND, "at the root: other traffic");
    let after = app.stats().await;

    let delta = |traffic: &str, name: &str| counter(&after, traffic, name) - counter(&before, traffic, name);
    assert_eq!(delta("poll", "bytes_received"), request.len() as u64, "the poll's request, byte for byte");
    assert_eq!(delta("poll", "bytes_sent"), response.len() as u64, "the poll's response, headers included");
    for (traffic, requests) in [("poll", 1), ("long_poll", 1), ("sse", 1), ("websocket", 1), ("publish", 1)] {
        assert_eq!(delta(traffic, "requests"), requests, "{traffic}: {after}");
        assert!(delta(traffic, "bytes_received") > 0 && delta(traffic, "bytes_sent") > 0, "{traffic}: {after}");
    }
    for (traffic, messages) in [("poll", 3), ("sse", 1), ("websocket", 1)] {
        assert_eq!(delta(traffic, "messages_delivered"), messages, "{traffic}");
    }
    assert_eq!(counter(&after, "sse", "connections_open"), 1);
    assert_eq!(counter(&after, "websocket", "connections_open"), 1);
    // The 404 at the root and the two stats reads are "other", not a transport.
    assert_eq!(delta("other", "requests"), 2, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_base_path_cors_follows_the_route() {
    let app = spawn_app_with(HubKind::Memory, |c| {
        c.base_path = BASE.parse().unwrap();
        c.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let cors = |path: &'static str| {
        let request = app.http.get(app.url(path)).header("origin", "https://app.example");
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
        }
    };
    for path in ["/poll?channels=a", "/long-poll?channels=a&timeout=0", "/api/stats"] {
        assert_eq!(cors(path).await.as_deref(), Some("https://app.example"), "{path}");
    }
    assert_eq!(cors("/api/time").await, None, "not a route for other origins");
}
