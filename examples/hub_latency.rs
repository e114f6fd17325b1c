//! Publish-to-delivery latency of the embedded hub versus the Redis hub, with
//! 1 and with 1000 WebSocket subscribers, measured in one run on one machine.
//!
//! ```sh
//! cargo run --release --example hub_latency -- [MESSAGES] [RATE_PER_SEC]
//! ```
//!
//! For each hub a pushwire server runs in this process (one worker thread)
//! on port 0; the Redis hub uses a private redis-server on a free port with a
//! temporary directory, stopped at the end. Messages are published over HTTP
//! at a steady rate; each subscriber records `now - ts` for every message it
//! receives (`ts` is stamped by the hub when it assigns the seq). Clients
//! share the machine with the server, as they would on a laptop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use pushwire::config::Config;
use pushwire::hub::{HistoryLimits, Hub, MemoryHub, RedisHub};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WARMUP: u64 = 10;

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

struct Redis {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Redis {
    async fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("pushwire-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed: apt-get install -y redis-server");
        // Owned by the guard at once, so that it is stopped on every path.
        let redis = Redis { child, dir, url: format!("redis://127.0.0.1:{port}/") };
        for _ in 0..500 {
            if let Ok(c) = redis::Client::open(redis.url.as_str())
                && c.get_multiplexed_async_connection().await.is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not start");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Row {
    hub: &'static str,
    subscribers: usize,
    deliveries: u64,
    histogram: Histogram<u64>,
}

async fn measure(hub_name: &'static str, hub: Arc<dyn Hub>, subscribers: usize, messages: u64, rate: f64) -> Row {
    let mut config = Config::defaults();
    config.demo_rate = 0.0;
    config.workers = Some(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let running = pushwire::server::start(config, hub, listener).unwrap();
    let addr = running.addr;
    let handle = running.handle.clone();
    tokio::spawn(running.server);

    let channel = format!("lat{subscribers}");
    let total = WARMUP + messages;
    let mut clients = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?channels={channel}")).await.unwrap();
        // welcome, subscribed
        for _ in 0..2 {
            ws.next().await.unwrap().unwrap();
        }
        clients.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).unwrap();
            let mut seen = 0;
            while seen < total {
                let Some(Ok(WsMessage::Text(text))) = ws.next().await else { continue };
                let received = now_micros();
                let m: serde_json::Value = serde_json::from_str(&text).unwrap();
                let (seq, ts) = (m["seq"].as_u64().unwrap(), m["ts"].as_u64().unwrap());
                seen += 1;
                if seq > WARMUP {
                    histogram.record(received.saturating_sub(ts)).unwrap();
                }
            }
            histogram
        }));
    }

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/channels/{channel}/messages");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    for i in 0..total {
        tick.tick().await;
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(format!(r#"{{"i":{i},"text":"latency probe"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for client in clients {
        histogram.add(client.await.unwrap()).unwrap();
    }
    handle.stop(false).await;
    Row { hub: hub_name, subscribers, deliveries: histogram.len(), histogram }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map_or(200, |a| a.parse().expect("MESSAGES is a number"));
    let rate: f64 = args.next().map_or(50.0, |a| a.parse().expect("RATE is a number"));
    let limits = HistoryLimits { size: 1000, max_age: Duration::from_secs(600) };
    let redis = Redis::start().await;

    let mut rows = Vec::new();
    for subscribers in [1, 1000] {
        let memory: Arc<dyn Hub> = MemoryHub::new(limits);
        rows.push(measure("memory", memory, subscribers, messages, rate).await);
        let shared: Arc<dyn Hub> = RedisHub::connect(&redis.url, "bench", limits).await.unwrap();
        rows.push(measure("redis", shared, subscribers, messages, rate).await);
    }

    println!("publish-to-delivery latency over WebSocket, {messages} messages at {rate}/s after {WARMUP} warm-up");
    println!("| hub | subscribers | deliveries | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let ms = |q: f64| row.histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row.hub,
            row.subscribers,
            row.deliveries,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            row.histogram.max() as f64 / 1000.0
        );
    }
}
