//! deploy/nginx.conf in front of pushwire-a and pushwire-b, configured as
//! docker-compose.yml configures them, on one Redis: all four transports pass,
//! a client resumes on either instance with its cursor, and a page stays on
//! one instance. Clients come from distinct loopback addresses (127.0.0.x),
//! since nginx picks the instance by client address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT_ENCODING, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use pushwire::config::Config;
use pushwire::hub::{Hub, RedisHub};

use crate::common::nginx::Nginx;
use crate::common::*;
use crate::deployment;

/// How long an SSE event may take through the proxy. A compressing proxy
/// holds small events until its buffer fills, that is, here, for ever.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A client on its own loopback address: nginx sticks each address to one instance.
struct Client {
    addr: IpAddr,
    http: reqwest::Client,
}

impl Client {
    fn on(addr: IpAddr) -> Client {
        // Asks for compression as browsers do: a proxy that compressed SSE itself
        // would hold its events; pushwire's own gzip, flushed per event, must pass.
        let headers = HeaderMap::from_iter([(ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br"))]);
        let http = reqwest::Client::builder().local_address(addr).default_headers(headers).build().unwrap();
        Client { addr, http }
    }
}

struct Cluster {
    nginx: Nginx,
    a: TestApp,
    b: TestApp,
    /// A client that nginx sends to `a`, and one it sends to `b`.
    via_a: Client,
    via_b: Client,
    /// Stopped last, after the instances.
    _redis: RedisServer,
}

impl Cluster {
    async fn start() -> Cluster {
        let image = deployment::image();
        let compose = deployment::compose();
        let redis = RedisServer::start().await;
        let a = instance(&redis, deployment::pushwire_config(&image, &compose.services["pushwire-a"])).await;
        let b = instance(&redis, deployment::pushwire_config(&image, &compose.services["pushwire-b"])).await;
        let upstreams = [("pushwire-a", a.addr), ("pushwire-b", b.addr)];
        let nginx = Nginx::start_site(|port| deployment::nginx_site(port, &upstreams)).await;
        let via_a = client_reaching(&nginx, &a, "a").await;
        let via_b = client_reaching(&nginx, &b, "b").await;
        Cluster { nginx, a, b, via_a, via_b, _redis: redis }
    }

    /// The origin of pages loaded through the proxy.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.port)
    }

    async fn get(&self, client: &Client, path: &str) -> (u16, Value) {
        let response = client.http.get(self.nginx.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Publishes on `news` through the proxy from a page of the proxy's origin.
    async fn publish(&self, client: &Client, data: Value) -> Value {
        let response = client
            .http
            .post(self.nginx.url("/channels/news/messages"))
            .header("origin", self.origin())
            .json(&data)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "the origin check saw the proxy's Host");
        response.json().await.unwrap()
    }

    /// A WebSocket through the proxy, opened as a page of the proxy's origin.
    async fn ws(&self, client: &Client, path_and_query: &str) -> Ws {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(client.addr, 0)).unwrap();
        let nginx = SocketAddr::from(([127, 0, 0, 1], self.nginx.port));
        let tcp = timeout(PATIENCE, socket.connect(nginx)).await.expect("connect timed out").unwrap();
        let mut request = format!("ws://127.0.0.1:{}{path_and_query}", self.nginx.port).into_client_request().unwrap();
        request.headers_mut().insert("origin", self.origin().parse().unwrap());
        let (stream, response) =
            timeout(PATIENCE, tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)))
                .await
                .expect("upgrade timed out")
                .expect("the upgrade passes the proxy");
        assert_eq!(response.status(), 101);
        Ws { stream }
    }

    async fn sse(&self, client: &Client, path_and_query: &str, last_event_id: Option<&str>) -> Sse {
        let mut sse = Sse::open(&client.http, &self.nginx.url(path_and_query), last_event_id).await;
        assert_eq!(sse.status, 200);
        // Compressed by pushwire, event by event; nginx passes it as it comes.
        assert_eq!(sse.headers.get("content-encoding").map(|e| e.to_str().unwrap()), Some("gzip"));
        sse.expect("subscribed").await;
        sse
    }

    /// Requests per transport on each instance: what it served.
    async fn requests(&self) -> [Value; 2] {
        let served = |stats: Value| {
            let t = &stats["transports"];
            json!([t["websocket"]["requests"], t["sse"]["requests"], t["long_poll"]["requests"], t["poll"]["requests"]])
        };
        [served(self.a.stats().await), served(self.b.stats().await)]
    }
}

/// An instance as Compose configures it, on a free port, with this tree's static files.
async fn instance(redis: &RedisServer, deployed: Config) -> TestApp {
    let hub: Arc<dyn Hub> = RedisHub::connect(&redis.url(), &deployed.redis_prefix, deployed.history_limits())
        .await
        .expect("connect the Redis hub");
    spawn_app_on(hub, |config| {
        let local = config.clone();
        *config = deployed;
        config.bind = local.bind;
        config.workers = local.workers;
        config.static_dir = local.static_dir;
    })
    .await
}

/// A client on the first loopback address (127.0.0.2, .3, …) that nginx sends to `app`.
async fn client_reaching(nginx: &Nginx, app: &TestApp, name: &str) -> Client {
    for last in 2..=200 {
        let client = Client::on(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)));
        let probe = format!("probe{name}{last}");
        let response =
            client.http.get(nginx.url(&format!("/poll?channels=probe&client={probe}"))).send().await.unwrap();
        assert_eq!(response.status(), 200);
        if app.get(&format!("/api/inspect/{probe}")).await.0 == 200 {
            return client;
        }
    }
    panic!("nginx sends no loopback address to {}", app.addr);
}

fn answer_seqs(answer: &Value) -> Vec<u64> {
    seqs(answer["messages"].as_array().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_transports_pass_through_the_deployed_proxy() {
    let c = Cluster::start().await;
    let before = c.requests().await;

    let mut ws = c.ws(&c.via_a, "/ws?channels=news").await;
    ws.handshake(1).await;
    let mut sse = c.sse(&c.via_b, "/sse?channels=news", None).await;
    let long_poll = {
        let request = c.via_a.http.get(c.nginx.url("/long-poll?channels=news&cursor=news:0&timeout=10"));
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    c.a.wait_stats("the long poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;

    // Published through b, delivered by both instances.
    c.publish(&c.via_b, json!({"n": 1})).await;
    let event = timeout(PROMPTLY, sse.expect("message")).await.expect("the proxy held the SSE event back");
    assert_eq!(event.json()["data"], json!({"n": 1}));
    assert_eq!(ws.expect("message").await["data"], json!({"n": 1}));
    let answer = timeout(PATIENCE, long_poll).await.expect("the long poll was answered").unwrap();
    assert_eq!(answer_seqs(&answer), [1]);

    // Through a: the SSE stream stays open and delivers event by event.
    c.publish(&c.via_a, json!({"n": 2})).await;
    let event = timeout(PROMPTLY, sse.expect("message")).await.expect("the proxy held the SSE event back");
    assert_eq!(event.json()["data"], json!({"n": 2}));
    assert_eq!(ws.expect("message").await["data"], json!({"n": 2}));
    let (status, answer) = c.get(&c.via_b, "/poll?channels=news&cursor=news:0").await;
    assert_eq!((status, answer_seqs(&answer)), (200, vec![1, 2]));

    // The check that passed above is live: another page's origin is refused.
    let response = c
        .via_a
        .http
        .post(c.nginx.url("/channels/news/messages"))
        .header("origin", "http://elsewhere.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Each instance served its own clients' transports:
    // [websocket, sse, long poll, poll] requests.
    let after = c.requests().await;
    let served = |i: usize| -> Vec<u64> {
        (0..4).map(|t| after[i][t].as_u64().unwrap() - before[i][t].as_u64().unwrap()).collect()
    };
    assert_eq!(served(0), [1, 0, 1, 0], "pushwire-a");
    assert_eq!(served(1), [0, 1, 0, 1], "pushwire-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_the_other_instance_with_its_cursor() {
    let c = Cluster::start().await;
    for n in 1..=5 {
        c.publish(&c.via_a, json!({"n": n})).await;
    }
    // Three messages over SSE from b...
    let mut sse = c.sse(&c.via_b, "/sse?channels=news&cursor=news:0", None).await;
    let read = sse.messages(3).await;
    assert_eq!(seqs(read.iter().map(|e| e.json()).collect::<Vec<_>>().iter()), [1, 2, 3]);
    let cursor = read[2].id.clone().expect("an SSE event carries its cursor");
    drop(sse);

    // ...and the rest on a, over every transport, from that cursor.
    let mut ws = c.ws(&c.via_a, &format!("/ws?channels=news&cursor={cursor}")).await;
    ws.handshake(1).await;
    assert_eq!(seqs(&ws.messages(2).await), [4, 5]);
    let mut sse = c.sse(&c.via_a, "/sse?channels=news", Some(&cursor)).await;
    assert_eq!(seqs(sse.messages(2).await.iter().map(|e| e.json()).collect::<Vec<_>>().iter()), [4, 5]);
    let (status, answer) = c.get(&c.via_a, &format!("/poll?channels=news&cursor={cursor}")).await;
    assert_eq!((status, answer_seqs(&answer)), (200, vec![4, 5]));

    // Back on b with the poll's cursor: held until the next message.
    let next = answer["cursor"].as_str().unwrap().to_string();
    let long_poll = {
        let request = c.via_b.http.get(c.nginx.url(&format!("/long-poll?channels=news&cursor={next}&timeout=10")));
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    c.b.wait_stats("the long poll to be held", |s| s["transports"]["long_poll"]["connections_open"] == 1).await;
    c.publish(&c.via_a, json!({"n": 6})).await;
    let answer = timeout(PATIENCE, long_poll).await.expect("the long poll was answered").unwrap();
    assert_eq!(answer_seqs(&answer), [6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sticks_to_one_instance_and_its_demo_controls_reach_the_publisher() {
    let c = Cluster::start().await;
    let publisher = c.a.get("/api/demo").await.1;
    assert!(publisher["rate"].as_f64().unwrap() > 0.0, "pushwire-a publishes the demo: {publisher}");
    assert_eq!(c.b.get("/api/demo").await.1["rate"], 0.0);
    for client in [&c.via_a, &c.via_b] {
        for path in ["/", "/static/js/pushwire.js"] {
            let response = client.http.get(c.nginx.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
        }
        // Whichever instance holds the page, its demo controls reach the publisher.
        assert_eq!(c.get(client, "/api/demo").await, (200, publisher.clone()));
    }
    // A page's requests all reach one instance, the one its inspection asks.
    for (n, client) in [&c.via_a, &c.via_b].into_iter().enumerate() {
        for _ in 0..4 {
            assert_eq!(c.get(client, &format!("/poll?channels=news&client=page{n}")).await.0, 200);
        }
        let (status, report) = c.get(client, &format!("/api/inspect/page{n}")).await;
        assert_eq!((status, &report["transports"]["poll"]["requests"]), (200, &json!(4)), "{report}");
    }
}
