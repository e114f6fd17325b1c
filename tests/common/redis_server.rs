//! A private redis-server for one test: a free port, its own data directory,
//! stopped when dropped. Never the machine's shared Redis.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    /// Append-only file with an fsync per write: data survives a SIGKILL.
    persistent: bool,
    child: Option<Child>,
}

pub(super) fn binary() -> &'static str {
    if Command::new("redis-server").arg("--version").output().is_err() {
        panic!(
            "redis-server is not installed: run `apt-get install -y redis-server` (Debian) to run the Redis hub tests"
        );
    }
    "redis-server"
}

/// Lets local clients run `DEBUG` (tests stall Redis with `DEBUG SLEEP`):
/// off by default from Redis 7 on, and an unknown option before it.
pub(super) fn debug_command() -> &'static [&'static str] {
    let version = Command::new(binary()).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    // `Redis server v=7.0.15 sha=...`
    let major: u32 = String::from_utf8_lossy(&version)
        .split_whitespace()
        .find_map(|field| field.strip_prefix("v="))
        .and_then(|v| v.split('.').next()?.parse().ok())
        .unwrap_or(0);
    if major >= 7 { &["--enable-debug-command", "local"] } else { &[] }
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a fresh, empty server that keeps nothing on disk.
    pub async fn start() -> RedisServer {
        Self::start_with(false).await
    }

    /// Starts a fresh server whose data survives being killed (AOF, fsync always).
    pub async fn start_persistent() -> RedisServer {
        Self::start_with(true).await
    }

    async fn start_with(persistent: bool) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("pushwire-redis-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer { port: free_port(), dir, persistent, child: None };
        server.launch().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn launch(&mut self) {
        let aof: &[&str] =
            if self.persistent { &["--appendonly", "yes", "--appendfsync", "always"] } else { &["--appendonly", "no"] };
        let child = Command::new(binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(aof)
            .args(debug_command())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--dbfilename", "dump.rdb", "--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + super::PATIENCE;
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<()>(&mut c).await.is_ok()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server on port {} did not come up", self.port);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the server (SIGKILL). With `keep_data` its files stay, so a
    /// persistent server restarts with its data; without, it restarts empty.
    pub async fn kill(&mut self, keep_data: bool) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !keep_data {
            let _ = std::fs::remove_dir_all(&self.dir);
            std::fs::create_dir_all(&self.dir).unwrap();
        }
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
