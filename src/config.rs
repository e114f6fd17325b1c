//! Command-line flags, each with an environment variable equivalent.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::base_path::BasePath;
use crate::hub::memory::Bounds;
use crate::hub::{HistoryLimits, RedisOptions};
use crate::lab::demo;
use crate::message::ChannelName;

/// The server's flags.
#[derive(Debug, Clone, Parser)]
#[command(version, about, max_term_width = 100)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PUSHWIRE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Path prefix every route is served under (e.g. /pushwire), for a gateway that mounts pushwire at a path.
    #[arg(long, env = "PUSHWIRE_BASE_PATH", default_value = "/")]
    pub base_path: BasePath,

    /// Worker threads serving connections (default: one per CPU core).
    #[arg(long, env = "PUSHWIRE_WORKERS")]
    pub workers: Option<usize>,

    /// Redis URL (e.g. redis://127.0.0.1:6379/0): use the shared Redis hub
    /// instead of the embedded one, so several instances serve one stream.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Run on Redis Cluster (sharded pub/sub): --redis-url is then a comma-separated list of seed node URLs.
    /// Its environment variable takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "PUSHWIRE_REDIS_CLUSTER", requires = "redis_url", value_parser = BoolishValueParser::new())]
    pub redis_cluster: bool,

    /// Interval of the Redis pub/sub canary: a heartbeat through the live link that must come back within it.
    #[arg(long, env = "PUSHWIRE_REDIS_CANARY", default_value = "5s", value_parser = positive_duration)]
    pub redis_canary: Duration,

    /// Prefix of every Redis key and pub/sub channel pushwire uses.
    #[arg(long, env = "PUSHWIRE_REDIS_PREFIX", default_value = "pushwire")]
    pub redis_prefix: String,

    /// Messages per second the built-in demo publisher sends (at most 1000); 0 switches it off.
    #[arg(long, env = "PUSHWIRE_DEMO_RATE", default_value_t = 4.0, value_parser = demo_rate)]
    pub demo_rate: f64,

    /// Channel the demo publisher publishes on.
    #[arg(long, env = "PUSHWIRE_DEMO_CHANNEL", default_value = "demo")]
    pub demo_channel: ChannelName,

    /// Extra bytes of padding in each demo message (to compare overheads; at most 16384).
    #[arg(long, env = "PUSHWIRE_DEMO_PAYLOAD", default_value_t = 0, value_parser = demo_payload)]
    pub demo_payload: usize,

    /// Messages of history kept per channel.
    #[arg(long, env = "PUSHWIRE_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long history is kept (e.g. 10m, 90s).
    #[arg(long, env = "PUSHWIRE_HISTORY_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub history_age: Duration,

    /// Largest publish body, in bytes (HTTP body or WebSocket `data`).
    #[arg(long, env = "PUSHWIRE_MAX_BODY", default_value_t = 64 * 1024, value_parser = at_least_one)]
    pub max_body: usize,

    /// Largest WebSocket frame a client may send, in bytes; larger closes with 1009.
    #[arg(long, env = "PUSHWIRE_MAX_FRAME", default_value_t = 128 * 1024, value_parser = at_least_one)]
    pub max_frame: usize,

    /// Most channels one connection or request may subscribe to.
    #[arg(long, env = "PUSHWIRE_MAX_CHANNELS", default_value_t = 64, value_parser = at_least_one)]
    pub max_channels: usize,

    /// Messages a connection may have queued before it is cut as too slow.
    #[arg(long, env = "PUSHWIRE_QUEUE_SIZE", default_value_t = 1024, value_parser = at_least_one)]
    pub queue_size: usize,

    /// Interval of WebSocket protocol pings.
    #[arg(long, env = "PUSHWIRE_WS_PING_INTERVAL", default_value = "25s", value_parser = positive_duration)]
    pub ws_ping_interval: Duration,

    /// How long a WebSocket peer may take to answer a ping before it is closed.
    #[arg(long, env = "PUSHWIRE_WS_PONG_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub ws_pong_timeout: Duration,

    /// Interval of SSE heartbeat comments.
    #[arg(long, env = "PUSHWIRE_SSE_HEARTBEAT", default_value = "15s", value_parser = positive_duration)]
    pub sse_heartbeat: Duration,

    /// Reconnect delay SSE clients are told with `retry:`.
    #[arg(long, env = "PUSHWIRE_SSE_RETRY", default_value = "2s", value_parser = humantime::parse_duration)]
    pub sse_retry: Duration,

    /// Most messages in one long-poll or short-poll answer.
    #[arg(long, env = "PUSHWIRE_POLL_MAX_MESSAGES", default_value_t = 1000, value_parser = at_least_one)]
    pub poll_max_messages: usize,

    /// Serve the dashboard's static files from this directory instead of those built into the binary
    /// (for working on the page without rebuilding).
    #[arg(long, env = "PUSHWIRE_STATIC_DIR")]
    pub static_dir: Option<std::path::PathBuf>,

    /// How long shutdown waits for connections to close.
    #[arg(long, env = "PUSHWIRE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "PUSHWIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// PEM certificate chain: serve HTTPS and WSS (HTTP/2 by ALPN) on the bound port.
    #[arg(long, env = "PUSHWIRE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "PUSHWIRE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// HS256 secret that signs access tokens (JWT); switches access control on.
    #[arg(long, env = "PUSHWIRE_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// PEM file of the RS256 or ES256 public key that verifies access tokens; switches access control on.
    #[arg(long, env = "PUSHWIRE_AUTH_PUBLIC_KEY", conflicts_with = "auth_secret")]
    pub auth_public_key: Option<std::path::PathBuf>,

    /// Origins allowed besides the server's own, comma-separated (https://app.example.com), or `*`.
    #[arg(long, env = "PUSHWIRE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Open client connections, all transports (default: the open-file limit minus 1024).
    #[arg(long, env = "PUSHWIRE_MAX_CONNECTIONS", value_parser = at_least_one)]
    pub max_connections: Option<usize>,

    /// Open connections from one client address; 0: no limit.
    #[arg(long, env = "PUSHWIRE_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Publishes per second per client address (HTTP and WebSocket, burst twice that); 0: no limit.
    #[arg(long, env = "PUSHWIRE_PUBLISH_RATE", default_value_t = 0.0, value_parser = non_negative_rate)]
    pub publish_rate: f64,

    /// Time to receive a whole request, head and body, for every request on a connection.
    #[arg(long, env = "PUSHWIRE_REQUEST_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub request_timeout: Duration,

    /// Idle time allowed between requests on a connection.
    #[arg(long, env = "PUSHWIRE_KEEP_ALIVE", default_value = "30s", value_parser = positive_duration)]
    pub keep_alive: Duration,

    /// Time a client may take to read what is being written to it (a response, a WebSocket frame).
    #[arg(long, env = "PUSHWIRE_WRITE_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub write_timeout: Duration,

    /// How long a message may be held so that what is published after it leaves in the same
    /// write, SSE chunk or long-poll answer (0: at once; at most 1s). Latency for fewer writes.
    #[arg(long, env = "PUSHWIRE_WRITE_DELAY", default_value = "0s", value_parser = write_delay)]
    pub write_delay: Duration,

    /// Bytes of messages in one poll or long-poll answer (it always holds at least one).
    #[arg(long, env = "PUSHWIRE_POLL_MAX_BYTES", default_value_t = 1024 * 1024, value_parser = at_least_one)]
    pub poll_max_bytes: usize,

    /// Channels the memory hub holds; publishing to one more answers 503.
    #[arg(long, env = "PUSHWIRE_HUB_MAX_CHANNELS", default_value_t = 100_000, value_parser = at_least_one)]
    pub hub_max_channels: usize,

    /// Bytes of history the memory hub retains; the oldest messages are trimmed past it.
    #[arg(long, env = "PUSHWIRE_HUB_MAX_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = at_least_one)]
    pub hub_max_bytes: usize,

    /// WebSocket permessage-deflate, for clients that offer it (every browser does).
    #[arg(long, env = "PUSHWIRE_WS_COMPRESSION", value_enum, default_value_t = Switch::On)]
    pub ws_compression: Switch,

    /// gzip on SSE, long polling and short polling, for requests whose Accept-Encoding allows it.
    #[arg(long, env = "PUSHWIRE_HTTP_COMPRESSION", value_enum, default_value_t = Switch::On)]
    pub http_compression: Switch,

    /// WebTransport (HTTP/3 over QUIC) on the UDP port of the same number as --bind.
    #[arg(long, env = "PUSHWIRE_WEBTRANSPORT", value_enum, default_value_t = Switch::On)]
    pub webtransport: Switch,

    /// UDP address for WebTransport, when not the --bind address.
    #[arg(long, env = "PUSHWIRE_WEBTRANSPORT_BIND")]
    pub webtransport_bind: Option<SocketAddr>,

    /// Frames and answers smaller than this many bytes are sent uncompressed.
    #[arg(long, env = "PUSHWIRE_COMPRESSION_MIN_SIZE", default_value_t = 256)]
    pub compression_min_size: usize,
}

/// A feature switched on or off (`on`|`off`; `true`/`false`, `yes`/`no`, `1`/`0` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    #[value(alias = "true", alias = "yes", alias = "1")]
    On,
    #[value(alias = "false", alias = "no", alias = "0")]
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Long-poll `timeout` when the request gives none, and the largest honoured (API.md).
pub const LONG_POLL_DEFAULT_SECS: u64 = 25;
pub const LONG_POLL_MAX_SECS: u64 = 60;

impl Config {
    pub fn history_limits(&self) -> HistoryLimits {
        HistoryLimits { size: self.history_size, max_age: self.history_age }
    }

    /// How to connect the Redis hub, when `--redis-url` is given.
    pub fn redis_options(&self) -> Option<RedisOptions> {
        Some(RedisOptions {
            urls: self.redis_url.clone()?,
            cluster: self.redis_cluster,
            prefix: self.redis_prefix.clone(),
            limits: self.history_limits(),
            canary_interval: self.redis_canary,
        })
    }

    pub fn memory_bounds(&self) -> Bounds {
        Bounds { max_channels: self.hub_max_channels, max_bytes: self.hub_max_bytes }
    }

    /// The defaults, as if no flag and no environment variable were given
    /// (for tests and embedding: the shell's `PUSHWIRE_*` do not leak in).
    pub fn defaults() -> Config {
        let command = Config::command().mut_args(|arg| arg.env(None::<&str>));
        // unwrap: the defaults above all parse.
        Config::from_arg_matches(&command.get_matches_from(["pushwire"])).unwrap()
    }
}

/// A duration longer than zero (`25s`, `10m`, `500ms`).
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Longest `--write-delay`: past it, latency is no longer the price of
/// fewer writes but a stall.
pub const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

/// A duration from zero (off) to [`MAX_WRITE_DELAY`].
fn write_delay(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d > MAX_WRITE_DELAY => Err("must be at most 1s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A rate of zero (off) or more per second.
fn non_negative_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        Ok(_) => Err("must be a number of at least 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A count of at least one.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn demo_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|e| format!("{e}"))?;
    demo::validate_rate(rate).map(|()| rate)
}

fn demo_payload(s: &str) -> Result<usize, String> {
    let payload: usize = s.parse().map_err(|e| format!("{e}"))?;
    demo::validate_payload(payload).map(|()| payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert_eq!(Config::defaults().demo_channel.as_str(), "demo");
        for args in [
            &["pushwire", "--demo-rate", "inf"][..],
            &["pushwire", "--demo-rate=-1"],
            &["pushwire", "--demo-rate=1001"],
            &["pushwire", "--demo-payload=16385"],
            &["pushwire", "--demo-channel", "no spaces"],
            &["pushwire", "--ws-ping-interval", "0s"],
            &["pushwire", "--write-delay", "2s"],
            &["pushwire", "--write-delay", "soon"],
            &["pushwire", "--queue-size", "0"],
            &["pushwire", "--base-path", "pushwire"],
            &["pushwire", "--base-path", "/pushwire/"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?} accepted");
        }
        let config = Config::try_parse_from(["pushwire", "--history-age", "90s", "--bind", "0.0.0.0:9000"]).unwrap();
        assert_eq!(config.history_age, Duration::from_secs(90));
        assert!(Config::try_parse_from(["pushwire", "--history-age", "soon"]).is_err());
        assert!(Config::defaults().base_path.is_root());
        let config = Config::try_parse_from(["pushwire", "--base-path", "/pushwire"]).unwrap();
        assert_eq!(config.base_path.prefix(), "/pushwire");
    }
}
