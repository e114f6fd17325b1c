//! The Redis hub: several pushwire instances share one stream.
//!
//! Per channel, Redis holds `{prefix}:ch:{name}:meta` (a hash: `epoch`,
//! `head`) and `{prefix}:ch:{name}:log` (a list of encoded messages, oldest
//! first, seqs contiguous). `{prefix}:epoch` is the epoch a channel gets at
//! its first publish; it vanishes with a flush, so a flushed Redis gives every
//! channel a new epoch and clients an explicit `reset`.
//!
//! A publish is one Lua script: next seq, append and trim history, publish the
//! message on `{prefix}:live:{name}`. Each instance holds one pub/sub
//! connection, subscribed to exactly the channels it has local subscribers
//! for, and hands each arriving message to its [`Fanout`].
//!
//! While Redis is unreachable the hub is not ready: publishes and history
//! reads fail (503), open connections stay open. When Redis answers again the
//! hub pokes every local subscriber, which re-reads its position and fills
//! its gap from history (or gets a `reset` if the sequence was lost).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Script, Value};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{Fanout, History, HistoryLimits, Hub, HubError, HubFuture, Subscriber};
use crate::message::{ChannelName, Epoch, Message};

/// Shared by both scripts: drop messages older than the age limit.
const TRIM_AGE: &str = r#"
local function trim_age(key, now, max_age)
  while true do
    local first = redis.call('LINDEX', key, 0)
    if not first then return end
    local ts = tonumber(string.match(first, '"ts":(%d+)'))
    if ts and now - ts > max_age then redis.call('LPOP', key) else return end
  end
end
local function global_epoch(key, candidate)
  local g = redis.call('GET', key)
  if not g then g = candidate; redis.call('SET', key, g) end
  return g
end
"#;

/// KEYS: meta, log, global epoch. ARGV: channel, data (compact JSON), history
/// size, max age (µs), candidate epoch, live channel, log TTL (ms).
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = global_epoch(KEYS[3], ARGV[5])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
local t = redis.call('TIME')
local ts = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local msg = '{"type":"message","channel":"' .. ARGV[1] .. '","seq":' .. seq .. ',"ts":' .. ts .. ',"data":' .. ARGV[2] .. '}'
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('RPUSH', KEYS[2], msg)
  redis.call('LTRIM', KEYS[2], -size, -1)
  trim_age(KEYS[2], tonumber(ts), tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
redis.call('PUBLISH', ARGV[6], epoch .. ' ' .. seq .. ' ' .. ts .. ' ' .. msg)
return {seq, ts, epoch}
"#;

/// KEYS: meta, log, global epoch. ARGV: after, limit, max age (µs), candidate epoch.
/// Returns epoch, head, oldest retained seq and the messages after `after`.
const HISTORY: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch') or global_epoch(KEYS[3], ARGV[4])
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
local t = redis.call('TIME')
trim_age(KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(ARGV[3]))
local oldest = head - redis.call('LLEN', KEYS[2]) + 1
local after = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local msgs = {}
if limit > 0 and after < head then
  local from = math.max(after + 1, oldest) - oldest
  msgs = redis.call('LRANGE', KEYS[2], from, from + limit - 1)
end
return {epoch, tostring(head), tostring(oldest), msgs}
"#;

/// How often the hub checks Redis, and retries it while it is away.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// Redis-backed hub. Shared as `Arc<dyn Hub>`; its background tasks hold
/// their own handles and stop when the runtime that created them stops.
pub struct RedisHub {
    keys: Keys,
    limits: HistoryLimits,
    commands: ConnectionManager,
    fanout: Arc<Fanout>,
    interest: mpsc::UnboundedSender<Interest>,
    ready: Arc<AtomicBool>,
    publish: Script,
    history: Script,
}

#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn meta(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{channel}:meta", self.prefix)
    }
    fn log(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{channel}:log", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    fn live(&self, channel: &ChannelName) -> String {
        format!("{}:live:{channel}", self.prefix)
    }
    fn channel_of_live<'a>(&self, live: &'a str) -> Option<&'a str> {
        live.strip_prefix(self.prefix.as_str())?.strip_prefix(":live:")
    }
}

/// Changes of local interest, applied in order by one task so that a
/// SUBSCRIBE and an UNSUBSCRIBE of the same channel never race.
enum Interest {
    Subscribe(ChannelName, oneshot::Sender<Result<(), HubError>>),
    /// The last local subscriber left; unsubscribe after [`UNSUBSCRIBE_GRACE`]
    /// unless interest came back, so that pollers don't churn the link.
    Unsubscribe(ChannelName),
    UnsubscribeNow(ChannelName),
}

/// How long a channel stays subscribed in Redis after its last local subscriber left.
const UNSUBSCRIBE_GRACE: Duration = Duration::from_secs(2);

fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(e.to_string())
}

impl RedisHub {
    /// Connects to Redis at `url` (RESP3 is switched on whatever the URL says).
    pub async fn connect(url: &str, prefix: &str, limits: HistoryLimits) -> Result<Arc<RedisHub>, HubError> {
        let info = url.into_connection_info().map_err(|e| HubError::Unavailable(format!("bad Redis URL: {e}")))?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(unavailable)?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_with_config(client.clone(), base.clone()).await.map_err(unavailable)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let pubsub_config = base.set_push_sender(push_tx).set_automatic_resubscription();
        let pubsub = ConnectionManager::new_with_config(client, pubsub_config).await.map_err(unavailable)?;

        let keys = Keys { prefix: prefix.to_string() };
        let fanout = Arc::new(Fanout::default());
        let ready = Arc::new(AtomicBool::new(true));
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(RedisHub {
            keys: keys.clone(),
            limits,
            commands,
            fanout: fanout.clone(),
            interest,
            ready: ready.clone(),
            publish: Script::new(&format!("{TRIM_AGE}{PUBLISH}")),
            history: Script::new(&format!("{TRIM_AGE}{HISTORY}")),
        });
        tokio::spawn(receive(push_rx, keys.clone(), fanout.clone(), ready.clone()));
        tokio::spawn(track_interest(interest_rx, hub.interest.downgrade(), pubsub.clone(), keys, fanout));
        tokio::spawn(watch_health(Arc::downgrade(&hub), pubsub));
        Ok(hub)
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

    async fn publish_now(&self, channel: ChannelName, data: Box<RawValue>) -> Result<Arc<Message>, HubError> {
        let data = Message::compact(&data);
        let ttl_ms = u64::try_from(self.limits.max_age.as_millis()).unwrap_or(u64::MAX).max(1);
        let (seq, ts, epoch): (u64, String, String) = self.check(
            self.publish
                .key(self.keys.meta(&channel))
                .key(self.keys.log(&channel))
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
        let ts = ts.parse().map_err(unavailable)?;
        let epoch = epoch.parse().map_err(unavailable)?;
        // The same bytes the script stored: Message::new encodes exactly like it.
        let data = RawValue::from_string(data.into_owned()).map_err(unavailable)?;
        Ok(Arc::new(Message::new(channel, seq, ts, epoch, &data)))
    }

    async fn history_now(&self, channel: ChannelName, after: u64, limit: usize) -> Result<History, HubError> {
        let (epoch, head, oldest, encoded): (String, String, String, Vec<String>) = self.check(
            self.history
                .key(self.keys.meta(&channel))
                .key(self.keys.log(&channel))
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
        let first = after.saturating_add(1).max(oldest);
        let messages = encoded
            .into_iter()
            .enumerate()
            .map(|(i, json)| {
                let seq = first + i as u64;
                let ts = ts_of(&json).ok_or_else(|| unavailable("a stored message has no ts"))?;
                Ok(Arc::new(Message::from_encoded(channel.clone(), seq, ts, epoch.clone(), json)))
            })
            .collect::<Result<_, HubError>>()?;
        Ok(History { epoch, head, oldest, messages })
    }
}

/// `"ts":<digits>` from a stored message (it always precedes `data`).
fn ts_of(json: &str) -> Option<u64> {
    let rest = &json[json.find(r#""ts":"#)? + 5..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Turns pub/sub pushes into local deliveries.
async fn receive(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    keys: Keys,
    fanout: Arc<Fanout>,
    ready: Arc<AtomicBool>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                if let Some(message) = decode_live(&keys, &push.data) {
                    fanout.deliver(&Arc::new(message));
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis pub/sub connection lost");
                ready.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// A live payload is `epoch seq ts json` on channel `{prefix}:live:{name}`.
fn decode_live(keys: &Keys, data: &[Value]) -> Option<Message> {
    let [live, payload] = data else { return None };
    let live: String = redis::from_redis_value_ref(live).ok()?;
    let payload: String = redis::from_redis_value_ref(payload).ok()?;
    let channel: ChannelName = keys.channel_of_live(&live)?.parse().ok()?;
    let mut parts = payload.splitn(4, ' ');
    let epoch: Epoch = parts.next()?.parse().ok()?;
    let seq: u64 = parts.next()?.parse().ok()?;
    let ts: u64 = parts.next()?.parse().ok()?;
    Some(Message::from_encoded(channel, seq, ts, epoch, parts.next()?.to_string()))
}

/// Applies changes of local interest to the one pub/sub connection, in order.
async fn track_interest(
    mut changes: mpsc::UnboundedReceiver<Interest>,
    // Weak: the queue must close when the hub is dropped.
    later: mpsc::WeakUnboundedSender<Interest>,
    mut pubsub: ConnectionManager,
    keys: Keys,
    fanout: Arc<Fanout>,
) {
    let mut subscribed: HashSet<ChannelName> = HashSet::new();
    while let Some(change) = changes.recv().await {
        match change {
            Interest::Subscribe(channel, done) => {
                let result = if subscribed.contains(&channel) {
                    Ok(())
                } else {
                    match pubsub.subscribe(keys.live(&channel)).await {
                        Ok(()) => {
                            subscribed.insert(channel);
                            Ok(())
                        }
                        Err(e) => Err(unavailable(e)),
                    }
                };
                let _ = done.send(result);
            }
            Interest::Unsubscribe(channel) => {
                let later = later.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(UNSUBSCRIBE_GRACE).await;
                    if let Some(later) = later.upgrade() {
                        let _ = later.send(Interest::UnsubscribeNow(channel));
                    }
                });
            }
            Interest::UnsubscribeNow(channel) => {
                // Interest may have come back since this was queued.
                if !fanout.has_subscribers(&channel)
                    && subscribed.remove(&channel)
                    && let Err(e) = pubsub.unsubscribe(keys.live(&channel)).await
                {
                    tracing::debug!(error = %e, %channel, "redis unsubscribe failed");
                }
            }
        }
    }
}

/// Pings Redis; flips readiness; resyncs subscribers when Redis comes back.
async fn watch_health(hub: std::sync::Weak<RedisHub>, mut pubsub: ConnectionManager) {
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let mut commands = hub.commands.clone();
        let up = redis::cmd("PING").query_async::<()>(&mut commands).await.is_ok()
            && redis::cmd("PING").query_async::<()>(&mut pubsub).await.is_ok();
        let was = hub.ready.load(Ordering::Relaxed);
        if up && !was {
            // Whatever was published meanwhile never reached this instance:
            // every local subscriber re-reads its position from history.
            tracing::info!("redis is reachable again; subscribers catch up from history");
            hub.fanout.poke_all();
            hub.ready.store(true, Ordering::Relaxed);
        } else if !up && was {
            tracing::warn!("redis is unreachable");
            hub.ready.store(false, Ordering::Relaxed);
        }
    }
}

impl Hub for RedisHub {
    fn publish(&self, channel: ChannelName, data: Box<RawValue>) -> HubFuture<'_, Arc<Message>> {
        Box::pin(self.publish_now(channel, data))
    }

    fn history(&self, channel: ChannelName, after: u64, limit: usize) -> HubFuture<'_, History> {
        Box::pin(self.history_now(channel, after, limit))
    }

    fn subscribe(&self, channel: ChannelName, subscriber: Arc<Subscriber>) -> HubFuture<'_, ()> {
        let id = subscriber.id();
        self.fanout.add(&channel, subscriber);
        Box::pin(async move {
            let (done, result) = oneshot::channel();
            let _ = self.interest.send(Interest::Subscribe(channel.clone(), done));
            let result = result.await.unwrap_or_else(|_| Err(unavailable("hub stopped")));
            if result.is_err() {
                self.unsubscribe(&channel, id);
            }
            result
        })
    }

    fn unsubscribe(&self, channel: &ChannelName, subscriber: u64) {
        if self.fanout.remove(channel, subscriber) {
            let _ = self.interest.send(Interest::Unsubscribe(channel.clone()));
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
