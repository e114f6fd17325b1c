//! What the Redis hub keeps: a channel's keys, the two scripts that publish
//! and read history atomically (`publish.lua`, `history.lua`), and the frame
//! that both the history list and the live link carry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::Script;
use redis::aio::ConnectionManager;
use serde_json::value::RawValue;

use super::unavailable;
use crate::hub::{History, HistoryLimits, HubError};
use crate::message::{ChannelName, Epoch, Message};

const PUBLISH: &str = concat!(include_str!("shared.lua"), include_str!("publish.lua"));
const HISTORY: &str = concat!(include_str!("shared.lua"), include_str!("history.lua"));

/// The names of a hub's keys, all under its prefix.
#[derive(Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }
    fn meta(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{channel}:meta", self.prefix)
    }
    fn frames(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{channel}:frames", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    pub(super) fn live(&self, channel: &ChannelName) -> String {
        format!("{}:live:{channel}", self.prefix)
    }
    pub(super) fn channel_of_live<'a>(&self, live: &'a str) -> Option<&'a str> {
        live.strip_prefix(self.prefix.as_str())?.strip_prefix(":live:")
    }
}

/// Publishes and history reads, each one script run.
pub(super) struct Storage {
    keys: Keys,
    limits: HistoryLimits,
    commands: ConnectionManager,
    /// The hub's readiness, cleared when a command fails for want of Redis.
    ready: Arc<AtomicBool>,
    publish: Script,
    history: Script,
}

impl Storage {
    pub(super) fn new(keys: Keys, limits: HistoryLimits, commands: ConnectionManager, ready: Arc<AtomicBool>) -> Self {
        Storage { keys, limits, commands, ready, publish: Script::new(PUBLISH), history: Script::new(HISTORY) }
    }

    pub(super) async fn publish(&self, channel: ChannelName, data: &RawValue) -> Result<Message, HubError> {
        let data = Message::compact(data);
        let ttl_ms = u64::try_from(self.limits.max_age.as_millis()).unwrap_or(u64::MAX).max(1);
        let frame: String = self.check(
            self.publish
                .key(self.keys.meta(&channel))
                .key(self.keys.frames(&channel))
                .key(self.keys.epoch())
                .arg(channel.as_str())
                .arg(data.as_ref())
                .arg(self.limits.size)
                .arg(self.max_age_micros())
                // A fresh proposal each time: after a flush, a reused one could
                // bring back the old epoch and hide the loss.
                .arg(Epoch::random().as_str())
                .arg(self.keys.live(&channel))
                .arg(ttl_ms)
                .invoke_async(&mut self.commands.clone())
                .await,
        )?;
        decode(channel, frame).ok_or_else(|| unavailable("the publish script answered a malformed frame"))
    }

    pub(super) async fn history(&self, channel: ChannelName, after: u64, limit: usize) -> Result<History, HubError> {
        let (epoch, head, oldest, frames): (String, String, String, Vec<String>) = self.check(
            self.history
                .key(self.keys.meta(&channel))
                .key(self.keys.frames(&channel))
                .key(self.keys.epoch())
                .arg(after)
                .arg(limit)
                .arg(self.max_age_micros())
                .arg(Epoch::random().as_str())
                .invoke_async(&mut self.commands.clone())
                .await,
        )?;
        let epoch: Epoch = epoch.parse().map_err(unavailable)?;
        let head: u64 = head.parse().map_err(unavailable)?;
        let oldest: u64 = oldest.parse().map_err(unavailable)?;
        let messages = frames
            .into_iter()
            .map(|frame| decode(channel.clone(), frame).map(Arc::new).ok_or_else(|| unavailable("a malformed frame")))
            .collect::<Result<_, _>>()?;
        Ok(History { epoch, head, oldest, messages })
    }

    /// Whether Redis answers on the command connection (readiness untouched).
    pub(super) async fn ping(&self) -> bool {
        redis::cmd("PING").query_async::<()>(&mut self.commands.clone()).await.is_ok()
    }

    fn max_age_micros(&self) -> u64 {
        u64::try_from(self.limits.max_age.as_micros()).unwrap_or(u64::MAX)
    }

    /// Marks the hub unready when a command failed for want of Redis.
    fn check<T>(&self, result: redis::RedisResult<T>) -> Result<T, HubError> {
        result.map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
                self.ready.store(false, Ordering::Relaxed);
            }
            unavailable(e)
        })
    }
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
}
