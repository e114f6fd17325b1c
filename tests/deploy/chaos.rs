//! Chaos behind deploy/nginx.conf: two pushwire processes on one Redis, a
//! couple of hundred clients over all four transports, each from its own
//! loopback address (nginx keeps an address on one instance). One instance
//! is killed with SIGKILL, then Redis is killed and restarted with its data;
//! every client ends with every acknowledged message exactly once and in
//! order, or an explicit reset. The figures are printed for docs/scaling.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::common::follow::*;
use crate::common::nginx::Nginx;
use crate::common::*;
use crate::deployment;

/// A pushwire process on one Redis, killed when dropped.
struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Instance {
    async fn start(redis_url: &str) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushwire"))
            .args(["--bind", &addr.to_string(), "--redis-url", redis_url, "--demo-rate", "0", "--workers", "1"])
            .args(["--redis-canary", "1s", "--sse-heartbeat", "2s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the pushwire binary");
        announced_url(&mut child).await;
        Instance { child, addr }
    }

    /// SIGKILL: no close frames, no answers, sockets reset by the kernel.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_lose_nothing_silently_when_an_instance_is_killed_and_redis_restarts() {
    const CLIENTS: usize = 200;
    const TOTAL: u64 = 240;
    let mut redis = RedisServer::start_persistent().await;
    let mut a = Instance::start(&redis.url()).await;
    let b = Instance::start(&redis.url()).await;
    let upstreams = [("pushwire-a", a.addr), ("pushwire-b", b.addr)];
    let nginx = Nginx::start_site(|port| deployment::nginx_site(port, &upstreams)).await;
    let base = nginx.url("");
    let base = base.trim_end_matches('/').to_string();
    let channels: Vec<String> = (0..4).map(|i| format!("chaos{i}")).collect();

    let followers: Vec<(Transport, Vec<String>, Arc<Follower>)> = (0..CLIENTS)
        .map(|k| (Transport::TCP[k % 4], vec![channels[k % 4].clone(), channels[(k + 1) % 4].clone()], Arc::default()))
        .collect();
    let tasks: Vec<_> = followers
        .iter()
        .enumerate()
        .map(|(k, (transport, mine, me))| {
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (k / 200) as u8, (k % 200 + 2) as u8));
            tokio::spawn(follow(*transport, base.clone(), from, mine.clone(), me.clone()))
        })
        .collect();
    wait_started(followers.iter().map(|(_, mine, me)| (me, mine.len()))).await;

    // One publisher through the proxy, retrying each message with its key.
    let (mut published, publisher) = publish_steadily(base.clone(), channels.clone(), TOTAL, "chaos");
    published.wait_for(|&n| n >= TOTAL / 3).await.unwrap();
    let instance_killed = Instant::now();
    a.kill();
    published.wait_for(|&n| n >= 2 * TOTAL / 3).await.unwrap();
    let redis_killed = Instant::now();
    redis.kill(true).await;
    redis.restart().await;
    let acked = tokio::time::timeout(PATIENCE * 6, publisher).await.expect("the publisher finished").unwrap();
    let first_ack_after = |t: Instant| acked.iter().find(|(at, _)| *at > t).map(|(at, _)| *at - t).unwrap();
    let (after_instance, after_redis) = (first_ack_after(instance_killed), first_ack_after(redis_killed));
    let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();

    let started = Instant::now();
    wait_caught_up(followers.iter().map(|(_, mine, me)| (me, mine.as_slice())), &acked).await;
    let caught_up_in = started.elapsed();
    for task in tasks {
        task.abort();
    }
    let (mut delivered, mut resets, mut reconnects) = (0, 0, 0);
    for (k, (transport, mine, me)) in followers.iter().enumerate() {
        let (d, r) = assert_nothing_lost_silently(&format!("client {k} ({transport:?})"), me, mine, &acked);
        delivered += d;
        resets += r;
        reconnects += me.reconnects.load(Ordering::Relaxed);
    }
    assert!(reconnects > 0, "the kill did cut clients");
    eprintln!(
        "chaos: {CLIENTS} clients (4 transports), {TOTAL} messages acknowledged, {delivered} deliveries, \
         {resets} resets, {reconnects} reconnects; publishes resumed {} ms after the instance kill and {} ms \
         after the Redis kill; every client caught up {} ms after the last publish",
        after_instance.as_millis(),
        after_redis.as_millis(),
        caught_up_in.as_millis()
    );
}
