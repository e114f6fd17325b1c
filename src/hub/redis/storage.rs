//! What the Redis hub keeps: a channel's keys, the two scripts that publish
//! and read history atomically (`publish.lua`, `history.lua`), and the frame
//! that both the history list and the live link carry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::{ErrorKind, RedisError, Script};
use serde_json::value::RawValue;

use super::connection::{RedisConnection, unavailable};
use crate::hub::{History, HistoryLimits, HubError, IDEMPOTENCY_WINDOW};
use crate::message::{ChannelName, Epoch, IdempotencyKey, Message};

const PUBLISH: &str = concat!(include_str!("shared.lua"), include_str!("publish.lua"));
const HISTORY: &str = concat!(include_str!("shared.lua"), include_str!("history.lua"));

/// The names of a hub's keys, all under its prefix. On a cluster every key
/// and the live channel of a channel carry its name as hash tag
/// (`{prefix}:ch:{name}:meta`), so that they share its slot and one script
/// can touch them all.
#[derive(Clone)]
pub(super) struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub(super) fn new(prefix: &str, cluster: bool) -> Keys {
        Keys { prefix: prefix.to_string(), cluster }
    }
    /// A channel's name as it appears in its keys.
    fn tag(&self, channel: &ChannelName) -> String {
        if self.cluster { format!("{{{channel}}}") } else { channel.to_string() }
    }
    fn meta(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{}:meta", self.prefix, self.tag(channel))
    }
    fn frames(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{}:frames", self.prefix, self.tag(channel))
    }
    /// The hub's epoch; on a cluster, where one key cannot be in every
    /// channel's slot, each channel has its own.
    fn epoch(&self, channel: &ChannelName) -> String {
        if self.cluster {
            format!("{}:ch:{}:epoch", self.prefix, self.tag(channel))
        } else {
            format!("{}:epoch", self.prefix)
        }
    }
    /// The record of a publish with this key (channel names hold no `:`,
    /// so the key may).
    fn idempotency(&self, channel: &ChannelName, key: &IdempotencyKey) -> String {
        format!("{}:ch:{}:idem:{}", self.prefix, self.tag(channel), key.as_str())
    }
    pub(super) fn live(&self, channel: &ChannelName) -> String {
        format!("{}:live:{}", self.prefix, self.tag(channel))
    }
    pub(super) fn channel_of_live<'a>(&self, live: &'a str) -> Option<&'a str> {
        let tag = live.strip_prefix(self.prefix.as_str())?.strip_prefix(":live:")?;
        if self.cluster { tag.strip_prefix('{')?.strip_suffix('}') } else { Some(tag) }
    }
    /// A canary channel of this instance (see `live::canary`), always hash-tagged
    /// so that its slot can be chosen.
    pub(super) fn canary(&self, tag: &str) -> String {
        format!("{}:canary:{{{tag}}}", self.prefix)
    }
    pub(super) fn is_canary(&self, live: &str) -> bool {
        live.strip_prefix(self.prefix.as_str()).is_some_and(|rest| rest.starts_with(":canary:"))
    }
    /// The scripts' last argument: where they run.
    fn mode(&self) -> &'static str {
        if self.cluster { "cluster" } else { "single" }
    }
    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }
}

/// Publishes and history reads, each one script run.
pub(super) struct Storage {
    keys: Keys,
    limits: HistoryLimits,
    commands: RedisConnection,
    /// The hub's readiness, cleared when a command fails for want of Redis.
    ready: Arc<AtomicBool>,
    publish: Script,
    history: Script,
}

impl Storage {
    pub(super) fn new(keys: Keys, limits: HistoryLimits, commands: RedisConnection, ready: Arc<AtomicBool>) -> Self {
        Storage { keys, limits, commands, ready, publish: Script::new(PUBLISH), history: Script::new(HISTORY) }
    }

    /// Runs one publish. With a key seen within [`IDEMPOTENCY_WINDOW`] the
    /// script does nothing and answers the first publish's position, which
    /// is returned with this call's data, as the memory hub does.
    pub(super) async fn publish(
        &self,
        channel: ChannelName,
        data: &RawValue,
        key: Option<&IdempotencyKey>,
    ) -> Result<Message, HubError> {
        let compact = Message::compact(data);
        let mut script = self.publish.key(self.keys.meta(&channel));
        script.key(self.keys.frames(&channel));
        if let Some(key) = key {
            script.key(self.keys.idempotency(&channel, key));
        }
        script
            .arg(channel.as_str())
            .arg(compact.as_ref())
            .arg(self.limits.size)
            .arg(self.max_age_micros())
            // A fresh epoch each time, for a channel without metadata: a
            // reused one could bring back an epoch the channel had and hide
            // the loss of its sequence.
            .arg(Epoch::random().as_str())
            .arg(self.keys.live(&channel))
            .arg(self.history_ttl_ms())
            .arg(self.meta_ttl_ms())
            .arg(millis(IDEMPOTENCY_WINDOW))
            .arg(self.keys.mode());
        let result = script.invoke_async(&mut self.commands.clone()).await;
        let (reply, repeated): (String, bool) = result.map_err(|e| self.publish_failed(e))?;
        let message = if repeated {
            decode_header(&reply).map(|(epoch, seq, ts)| Message::new(channel, seq, ts, epoch, data))
        } else {
            decode(channel, reply)
        };
        message.ok_or_else(|| unavailable("the publish script answered a malformed frame"))
    }

    /// Reads a channel's position and the frames after `after`. `create`
    /// (a subscriber reads) creates a channel that has no metadata, so that
    /// the epoch it is told is the one its first message will carry.
    pub(super) async fn history(
        &self,
        channel: ChannelName,
        after: u64,
        limit: usize,
        create: bool,
    ) -> Result<History, HubError> {
        let mut script = self.history.key(self.keys.meta(&channel));
        script.key(self.keys.frames(&channel)).key(self.keys.epoch(&channel));
        script
            .arg(after)
            .arg(limit)
            .arg(self.max_age_micros())
            .arg(Epoch::random().as_str())
            .arg(self.read_epoch_ttl_ms())
            .arg(self.meta_ttl_ms())
            .arg(u8::from(create))
            .arg(self.keys.mode());
        let (epoch, head, oldest, frames): (String, String, String, Vec<String>) =
            self.check(script.invoke_async(&mut self.commands.clone()).await)?;
        let epoch: Epoch = epoch.parse().map_err(unavailable)?;
        let head: u64 = head.parse().map_err(unavailable)?;
        let oldest: u64 = oldest.parse().map_err(unavailable)?;
        let messages = frames
            .into_iter()
            .map(|frame| decode(channel.clone(), frame).map(Arc::new).ok_or_else(|| unavailable("a malformed frame")))
            .collect::<Result<_, _>>()?;
        Ok(History { epoch, head, oldest, messages })
    }

    /// The command connection (shared: clones are cheap).
    pub(super) fn commands(&self) -> RedisConnection {
        self.commands.clone()
    }

    /// Whether Redis answers on the command connection (readiness untouched).
    pub(super) async fn ping(&self) -> bool {
        redis::cmd("PING").query_async::<()>(&mut self.commands.clone()).await.is_ok()
    }

    fn max_age_micros(&self) -> u64 {
        u64::try_from(self.limits.max_age.as_micros()).unwrap_or(u64::MAX)
    }

    /// The TTL of a channel's frames and of the hub's epoch: the history age.
    fn history_ttl_ms(&self) -> u64 {
        millis(self.limits.max_age)
    }

    /// The TTL of an epoch a history read makes. One Redis has one hub epoch;
    /// a cluster has one per channel, and reads of channels nobody publishes
    /// on must not fill it with epochs kept a whole history age.
    fn read_epoch_ttl_ms(&self) -> u64 {
        if self.keys.cluster { self.history_ttl_ms().min(READ_EPOCH_TTL_MS) } else { self.history_ttl_ms() }
    }

    /// The TTL of a channel's metadata: twice the history age, so that a
    /// quiet channel keeps its sequence a while after its history aged out.
    fn meta_ttl_ms(&self) -> u64 {
        self.history_ttl_ms().saturating_mul(2).min(MAX_TTL_MS)
    }

    /// Maps a failed publish to the error that tells the caller whether it
    /// may have been stored.
    fn publish_failed(&self, e: RedisError) -> HubError {
        self.note_failure(&e);
        if may_have_run(&e) { HubError::Uncertain(e.to_string()) } else { unavailable(e) }
    }

    /// Marks the hub unready when a command failed for want of Redis.
    fn check<T>(&self, result: redis::RedisResult<T>) -> Result<T, HubError> {
        result.map_err(|e| {
            self.note_failure(&e);
            unavailable(e)
        })
    }

    fn note_failure(&self, e: &RedisError) {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
            self.ready.store(false, Ordering::Relaxed);
        }
    }
}

/// Whether a publish script that failed with `e` may nonetheless have run.
///
/// Two outcomes are known. Redis answered with an error: nothing was stored,
/// since Redis refuses a script (OOM, BUSY, LOADING, ...) before it writes,
/// and on keys of the hub's making the script raises nothing once it has
/// begun writing. The connection was refused: nothing was sent. Any
/// other I/O error, `is_timeout` and `is_connection_dropped` included (both
/// are I/O kinds), may have come after the script was sent, even after it
/// ran: its answer timed out, or the connection broke with it in flight; so
/// may an answer redis-rs could not parse. redis-rs reports a command that
/// never left (a reconnect that timed out, a connection already known to be
/// closed) with these same kinds, so those count as uncertain too: a retry
/// with the same idempotency key is right either way, a blind retry is not.
fn may_have_run(e: &RedisError) -> bool {
    !e.is_connection_refusal() && (e.is_io_error() || e.kind() == ErrorKind::Parse)
}

/// How long a channel's epoch made by a read lives on a cluster, at most.
const READ_EPOCH_TTL_MS: u64 = 10_000;

/// Redis refuses an expiry that overflows its millisecond clock; no history
/// age needs more than these two thousand years.
const MAX_TTL_MS: u64 = 1 << 46;

/// A duration as a TTL in milliseconds that Redis accepts (at least 1).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_TTL_MS)
}

/// Reads a frame's header, `epoch seq ts`, alone: what an idempotency
/// record holds.
fn decode_header(header: &str) -> Option<(Epoch, u64, u64)> {
    let mut fields = header.split(' ');
    let parsed = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    fields.next().is_none().then_some(parsed)
}

/// Reads a frame, `epoch seq ts json`, of a message on `channel`: a history
/// entry and a live payload alike. `None` if it is not one.
pub(super) fn decode(channel: ChannelName, mut frame: String) -> Option<Message> {
    let mut fields = frame.splitn(4, ' ');
    let epoch: Epoch = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let ts: u64 = fields.next()?.parse().ok()?;
    let header = frame.len() - fields.next()?.len();
    frame.drain(..header);
    Some(Message::from_encoded(channel, seq, ts, epoch, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> ChannelName {
        "c".parse().unwrap()
    }

    #[test]
    fn a_frame_is_its_header_and_the_message_json() {
        let json = r#"{"type":"message","channel":"c","seq":7,"ts":1763900000123456,"data":{"a":" b "}}"#;
        let m = decode(c(), format!("k3j2 7 1763900000123456 {json}")).unwrap();
        assert_eq!((m.seq, m.ts, m.epoch.as_str()), (7, 1763900000123456, "k3j2"));
        assert_eq!(&m.json()[..], json);
        assert_eq!(m.data(), r#"{"a":" b "}"#);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            r#"{"type":"message","channel":"c","seq":1,"ts":1,"data":1}"#,
            "k3j2 7 1763900000123456",
            "k3j2 seven 1 {}",
            "k3j2 7 -1 {}",
            "bad-epoch 7 1 {}",
            " 7 1 {}",
            "",
        ] {
            assert!(decode(c(), bad.to_string()).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_idempotency_record_is_a_header_alone() {
        let (epoch, seq, ts) = decode_header("k3j2 7 1763900000123456").unwrap();
        assert_eq!((epoch.as_str(), seq, ts), ("k3j2", 7, 1763900000123456));
        for bad in ["k3j2 7", "k3j2 7 1 {}", "k3j2 x 1", ""] {
            assert!(decode_header(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_publish_is_uncertain_unless_redis_answered_or_refused_the_connection() {
        use std::io;
        let io = |kind: io::ErrorKind| RedisError::from(io::Error::from(kind));
        for (e, uncertain) in [
            (io(io::ErrorKind::TimedOut), true),
            (io(io::ErrorKind::BrokenPipe), true),
            (io(io::ErrorKind::ConnectionReset), true),
            (io(io::ErrorKind::UnexpectedEof), true),
            (RedisError::from((ErrorKind::Io, "driver gone")), true),
            (io(io::ErrorKind::ConnectionRefused), false),
            (RedisError::from((ErrorKind::Server(redis::ServerErrorKind::BusyLoading), "loading")), false),
            (RedisError::from((ErrorKind::Server(redis::ServerErrorKind::ResponseError), "OOM")), false),
        ] {
            assert_eq!(may_have_run(&e), uncertain, "{e}");
        }
    }

    #[test]
    fn ttls_are_whole_milliseconds_redis_accepts() {
        assert_eq!(millis(Duration::from_secs(600)), 600_000);
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::MAX), MAX_TTL_MS);
    }
}
