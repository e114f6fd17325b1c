//! A private nginx in front of the server under test, on a free port, with a
//! configuration written by the test: the proxies a client meets in the wild.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How the proxy treats the transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// Passes WebSocket upgrades and streams responses unbuffered.
    PassThrough,
    /// Strips the upgrade, as many corporate proxies do: WebSocket fails.
    NoUpgrade,
    /// Strips the upgrade and compresses responses itself (asking the
    /// server for identity, so that it has something to compress), which
    /// holds SSE events back until its buffer fills; complete responses
    /// (polls) pass. (A response the server gzipped, event by event, nginx
    /// passes as it comes: without the stripped `Accept-Encoding`, SSE would
    /// get through this proxy.)
    Buffering,
}

impl Proxy {
    fn name(self) -> &'static str {
        match self {
            Proxy::PassThrough => "pass-through",
            Proxy::NoUpgrade => "no-upgrade",
            Proxy::Buffering => "buffering",
        }
    }

    fn directives(self) -> &'static str {
        match self {
            Proxy::PassThrough => {
                "proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection $connection_upgrade;\n        proxy_buffering off;"
            }
            Proxy::NoUpgrade => {
                "proxy_set_header Upgrade \"\";\n        proxy_set_header Connection \"\";\n        proxy_buffering off;"
            }
            Proxy::Buffering => {
                "proxy_set_header Upgrade \"\";\n        proxy_set_header Connection \"\";\n        proxy_set_header Accept-Encoding \"\";\n        proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;\n        gzip on;\n        gzip_types text/event-stream application/json;\n        gzip_min_length 1;\n        gzip_proxied any;"
            }
        }
    }
}

/// Where the proxy mounts the server: `location {at} { proxy_pass http://upstream{to}; }`.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    /// The location's prefix, ending in `/`.
    pub at: &'static str,
    /// The URI part of `proxy_pass`: what replaces `at` on the way to the
    /// server (`/pushwire/` keeps the prefix, `/` strips it); empty passes the
    /// request's URI unchanged.
    pub to: &'static str,
}

impl Mount {
    /// `location / { proxy_pass http://upstream; }`: the whole site.
    pub const ROOT: Mount = Mount { at: "/", to: "" };
}

pub struct Nginx {
    pub port: u16,
    dir: PathBuf,
    /// The server behind a proxy of [`Nginx::start`]; `None` for a site's own upstreams.
    upstream: Option<SocketAddr>,
    mount: Mount,
    child: Option<Child>,
}

impl Nginx {
    pub async fn start(upstream: SocketAddr, mode: Proxy) -> Nginx {
        Nginx::start_at(upstream, mode, Mount::ROOT).await
    }

    /// A proxy that serves the server only under `mount.at`, as a path-based gateway does.
    pub async fn start_at(upstream: SocketAddr, mode: Proxy, mount: Mount) -> Nginx {
        let mut nginx = Nginx::prepare(Some(upstream));
        nginx.mount = mount;
        nginx.write_config(mode);
        nginx.spawn();
        nginx.wait_for(mode).await;
        nginx
    }

    /// Starts nginx on `site`, a configuration of the `http` block (upstreams
    /// and a server) made for the port it is given, as a deployment ships it.
    /// The main configuration around it is the test's own: private paths.
    pub async fn start_site(site: impl FnOnce(u16) -> String) -> Nginx {
        let mut nginx = Nginx::prepare(None);
        std::fs::write(nginx.dir.join("site.conf"), site(nginx.port)).unwrap();
        nginx.write_main(&format!("include {}/site.conf;", nginx.dir.display()));
        nginx.spawn();
        nginx.wait_until("the site", |response| response.status().is_success()).await;
        nginx
    }

    /// A private prefix directory and a free port.
    fn prepare(upstream: Option<SocketAddr>) -> Nginx {
        if Command::new("nginx").arg("-v").output().is_err() {
            panic!("nginx is not installed: run `apt-get install -y nginx` (Debian) to run the proxy tests");
        }
        let dir = std::env::temp_dir().join(format!("pushwire-nginx-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Nginx { port, dir, upstream, mount: Mount::ROOT, child: None }
    }

    fn spawn(&mut self) {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Rewrites the configuration and reloads nginx (SIGHUP), as an operator would.
    pub async fn reload(&mut self, mode: Proxy) {
        self.write_config(mode);
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        self.wait_for(mode).await;
    }

    fn write_config(&self, mode: Proxy) {
        let server = format!(
            r#"map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        add_header X-Proxy-Mode {name} always;
        location {at} {{
            proxy_pass http://{upstream}{to};
            proxy_http_version 1.1;
            # The browser's Origin names the proxy: the upstream compares it with Host.
            proxy_set_header Host $http_host;
            proxy_read_timeout 120s;
            {directives}
        }}
    }}"#,
            port = self.port,
            name = mode.name(),
            upstream = self.upstream.expect("a proxy of Nginx::start"),
            at = self.mount.at,
            to = self.mount.to,
            directives = mode.directives(),
        );
        self.write_main(&server);
    }

    /// Writes nginx.conf: private paths, and `http` holding `http_body`.
    fn write_main(&self, http_body: &str) {
        let dir = self.dir.display();
        let config = format!(
            r#"worker_processes 1;
daemon off;
master_process on;
user root;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    {http_body}
}}
"#
        );
        std::fs::write(self.dir.join("nginx.conf"), config).unwrap();
    }

    /// Waits until nginx answers with `mode`'s configuration.
    async fn wait_for(&self, mode: Proxy) {
        let name = mode.name();
        self.wait_until(name, |response| response.headers().get("x-proxy-mode").is_some_and(|v| v == name)).await
    }

    /// Waits until nginx's answer to the mount's `healthz` satisfies `check`.
    async fn wait_until(&self, what: &str, check: impl Fn(&reqwest::Response) -> bool) {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let deadline = tokio::time::Instant::now() + super::PATIENCE;
        loop {
            if let Ok(response) = http.get(self.url(&format!("{}healthz", self.mount.at))).send().await
                && check(&response)
            {
                return;
            }
            let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
            assert!(tokio::time::Instant::now() < deadline, "nginx did not come up as {what}:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is nginx's fast shutdown: the master stops its workers
            // and exits (a SIGKILL would leave the workers running).
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
