//! Command-line flags, each with an environment variable equivalent.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::hub::HistoryLimits;

/// pushwire: one notification stream over WebSocket, Server-Sent Events,
/// long polling and short polling.
#[derive(Debug, Clone, Parser)]
#[command(version, about, max_term_width = 100)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PUSHWIRE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Worker threads serving connections (default: one per CPU core).
    #[arg(long, env = "PUSHWIRE_WORKERS")]
    pub workers: Option<usize>,

    /// Redis URL (e.g. redis://127.0.0.1:6379/0): use the shared Redis hub
    /// instead of the embedded one, so several instances serve one stream.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and pub/sub channel pushwire uses.
    #[arg(long, env = "PUSHWIRE_REDIS_PREFIX", default_value = "pushwire")]
    pub redis_prefix: String,

    /// Messages per second the built-in demo publisher sends; 0 switches it off.
    #[arg(long, env = "PUSHWIRE_DEMO_RATE", default_value_t = 4.0)]
    pub demo_rate: f64,

    /// Channel the demo publisher publishes on.
    #[arg(long, env = "PUSHWIRE_DEMO_CHANNEL", default_value = "demo")]
    pub demo_channel: String,

    /// Extra bytes of padding in each demo message (to compare overheads).
    #[arg(long, env = "PUSHWIRE_DEMO_PAYLOAD", default_value_t = 0)]
    pub demo_payload: usize,

    /// Messages of history kept per channel.
    #[arg(long, env = "PUSHWIRE_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long history is kept (e.g. 10m, 90s).
    #[arg(long, env = "PUSHWIRE_HISTORY_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub history_age: Duration,

    /// Largest publish body, in bytes (HTTP body or WebSocket `data`).
    #[arg(long, env = "PUSHWIRE_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: usize,

    /// Largest WebSocket frame a client may send, in bytes; larger closes with 1009.
    #[arg(long, env = "PUSHWIRE_MAX_FRAME", default_value_t = 128 * 1024)]
    pub max_frame: usize,

    /// Most channels one connection or request may subscribe to.
    #[arg(long, env = "PUSHWIRE_MAX_CHANNELS", default_value_t = 64)]
    pub max_channels: usize,

    /// Messages a connection may have queued before it is cut as too slow.
    #[arg(long, env = "PUSHWIRE_QUEUE_SIZE", default_value_t = 1024)]
    pub queue_size: usize,

    /// Interval of WebSocket protocol pings.
    #[arg(long, env = "PUSHWIRE_WS_PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub ws_ping_interval: Duration,

    /// How long a WebSocket peer may take to answer a ping before it is closed.
    #[arg(long, env = "PUSHWIRE_WS_PONG_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ws_pong_timeout: Duration,

    /// Interval of SSE heartbeat comments.
    #[arg(long, env = "PUSHWIRE_SSE_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_heartbeat: Duration,

    /// Reconnect delay SSE clients are told with `retry:`.
    #[arg(long, env = "PUSHWIRE_SSE_RETRY", default_value = "2s", value_parser = humantime::parse_duration)]
    pub sse_retry: Duration,

    /// Most messages in one long-poll or short-poll answer.
    #[arg(long, env = "PUSHWIRE_POLL_MAX_MESSAGES", default_value_t = 1000)]
    pub poll_max_messages: usize,

    /// Directory of the dashboard's static files (default: the source tree's `static/`).
    #[arg(long, env = "PUSHWIRE_STATIC_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/static"))]
    pub static_dir: std::path::PathBuf,

    /// How long shutdown waits for connections to close.
    #[arg(long, env = "PUSHWIRE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "PUSHWIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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

    /// Checks what clap's types cannot: values that would make no sense or
    /// stall the server.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.demo_rate.is_finite() && (0.0..=10_000.0).contains(&self.demo_rate)) {
            return Err(format!("--demo-rate must be between 0 and 10000, got {}", self.demo_rate));
        }
        for (flag, value) in [
            ("--ws-ping-interval", self.ws_ping_interval),
            ("--ws-pong-timeout", self.ws_pong_timeout),
            ("--sse-heartbeat", self.sse_heartbeat),
        ] {
            if value.is_zero() {
                return Err(format!("{flag} must be longer than zero"));
            }
        }
        for (flag, value) in [
            ("--max-body", self.max_body),
            ("--max-frame", self.max_frame),
            ("--max-channels", self.max_channels),
            ("--queue-size", self.queue_size),
            ("--poll-max-messages", self.poll_max_messages),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The defaults, as if no flag were given (for tests and embedding).
    pub fn defaults() -> Config {
        // unwrap: the defaults above all parse.
        Config::try_parse_from(["pushwire"]).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert!(Config::defaults().validate().is_ok());
        for args in [
            &["pushwire", "--demo-rate", "inf"][..],
            &["pushwire", "--demo-rate=-1"],
            &["pushwire", "--ws-ping-interval", "0s"],
            &["pushwire", "--queue-size", "0"],
        ] {
            let config = Config::try_parse_from(args).unwrap();
            assert!(config.validate().is_err(), "{args:?} accepted");
        }
        let config = Config::try_parse_from(["pushwire", "--history-age", "90s", "--bind", "0.0.0.0:9000"]).unwrap();
        assert_eq!(config.history_age, Duration::from_secs(90));
        assert!(Config::try_parse_from(["pushwire", "--history-age", "soon"]).is_err());
    }
}
