//! A private Redis Cluster for tests: 3 primaries with 1 replica each, every
//! node a redis-server on a free port with its own directory and AOF on,
//! joined by `redis-cli --cluster create`. [`shared_cluster`] is one cluster
//! for a whole test binary (tests keep apart by key prefix); a test that
//! kills nodes starts its own with [`RedisCluster::start`].

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::PATIENCE;
use super::redis_server::{binary, debug_command, free_port};

pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    dir: PathBuf,
}

pub struct ClusterNode {
    pub port: u16,
    /// The cluster bus port (port + 10000 may not exist or be taken).
    bus: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ClusterNode {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_connection_with_timeout(Duration::from_secs(1)).ok()
    }

    /// A command's answer from this node, `None` if it cannot be asked.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        cmd.query(&mut self.connection()?).ok()
    }

    fn info(&self, section: &str) -> BTreeMap<String, String> {
        let text: String = self.query(redis::cmd("INFO").arg(section)).unwrap_or_default();
        text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
    }

    pub fn is_primary(&self) -> bool {
        self.info("replication").get("role").is_some_and(|r| r == "master")
    }

    /// SIGKILL: the node is gone, as a crashed machine is.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn launch(&mut self, die_with_thread: bool) {
        let mut command = Command::new(binary());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-port",
                &self.bus.to_string(),
            ])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(debug_command())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if die_with_thread {
            // The shared cluster outlives every test but not the test binary:
            // the kernel kills each node when the thread that started it ends.
            // SAFETY: prctl is async-signal-safe and touches no memory of ours.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        self.child = Some(command.spawn().expect("start redis-server"));
    }
}

impl RedisCluster {
    /// Starts a fresh cluster and waits until every node says it is ok and
    /// every replica is in sync with its primary.
    pub fn start() -> RedisCluster {
        Self::start_with(false)
    }

    fn start_with(die_with_thread: bool) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("pushwire-cluster-{}-{}", std::process::id(), fastrand::u64(..)));
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut node = ClusterNode { port, bus: free_port(), dir: node_dir, child: None };
            node.launch(die_with_thread);
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes, dir };
        cluster
            .wait("every node to answer", |c| c.nodes.iter().all(|n| n.query::<String>(&redis::cmd("PING")).is_some()));
        let addresses: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (it comes with redis-server: apt-get install -y redis-server)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_healthy();
        cluster
    }

    /// Waits until every running node reports the cluster ok with 3 primaries
    /// serving all slots, and every replica's link to its primary is up.
    pub fn wait_healthy(&self) {
        self.wait("cluster state ok on every node, replicas in sync", |c| {
            c.running().all(|n| {
                let info = n.query::<String>(redis::cmd("CLUSTER").arg("INFO")).unwrap_or_default();
                let replication = n.info("replication");
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (replication.get("role").is_some_and(|r| r == "master")
                        || replication.get("master_link_status").is_some_and(|s| s == "up"))
            })
        });
    }

    fn running(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Waits, without a fixed sleep, until `ready` holds.
    pub fn wait(&self, what: &str, ready: impl Fn(&RedisCluster) -> bool) {
        let deadline = Instant::now() + PATIENCE * 3;
        while !ready(self) {
            assert!(Instant::now() < deadline, "redis cluster: timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The seed URLs, comma-separated, as `--redis-url` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(ClusterNode::url).collect::<Vec<_>>().join(",")
    }

    /// The port of the node that serves `key`'s slot as primary now.
    pub fn primary_port(&self, key: &str) -> u16 {
        let slot: u16 = self.running().find_map(|n| n.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))).unwrap();
        self.running()
            .find_map(|n| {
                let slots: redis::Value = n.query(redis::cmd("CLUSTER").arg("SLOTS"))?;
                primary_port(&slots, slot)
            })
            .expect("a primary for the slot")
    }

    /// The node that serves `key`'s slot as primary now.
    pub fn primary_of(&mut self, key: &str) -> &mut ClusterNode {
        let port = self.primary_port(key);
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    /// Channel names, one served by each primary (a channel's keys are in
    /// the slot of its name).
    pub fn channel_per_shard(&self, stem: &str) -> Vec<String> {
        let mut by_primary = BTreeMap::new();
        for i in 0.. {
            let name = format!("{stem}{i}");
            by_primary.entry(self.primary_port(&name)).or_insert(name);
            if by_primary.len() == 3 {
                return by_primary.into_values().collect();
            }
        }
        unreachable!()
    }
}

/// The port of the primary serving `slot`, from a `CLUSTER SLOTS` answer.
fn primary_port(slots: &redis::Value, slot: u16) -> Option<u16> {
    let redis::Value::Array(ranges) = slots else { return None };
    ranges.iter().find_map(|range| {
        let redis::Value::Array(range) = range else { return None };
        let start: u16 = redis::from_redis_value_ref(range.first()?).ok()?;
        let end: u16 = redis::from_redis_value_ref(range.get(1)?).ok()?;
        let redis::Value::Array(node) = range.get(2)? else { return None };
        (start..=end).contains(&slot).then(|| redis::from_redis_value_ref(node.get(1)?).ok()).flatten()
    })
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One cluster for the whole test binary, started on first use by a thread
/// that lives as long as the binary, so the nodes die with it.
pub fn shared_cluster() -> &'static RedisCluster {
    static SHARED: OnceLock<&'static RedisCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cluster: &'static RedisCluster = Box::leak(Box::new(RedisCluster::start_with(true)));
            tx.send(cluster).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the shared redis cluster did not start")
    })
}

/// A key prefix no other test uses, for hubs on the shared cluster.
pub fn fresh_prefix() -> String {
    format!("pwt{}", fastrand::u64(..))
}
