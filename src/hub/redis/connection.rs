//! One connection type for both deployments: a [`ConnectionManager`] to one
//! Redis, or a [`ClusterConnection`] to Redis Cluster, which routes each
//! command by its first key's slot and follows redirections. The same type
//! carries commands and, opened with a push sender, the live link: plain
//! pub/sub on one Redis, sharded pub/sub (`SSUBSCRIBE`) on a cluster, both
//! resubscribed by redis-rs after a reconnect (and, on a cluster, after a
//! topology change).

use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, ProtocolVersion, RedisFuture, Value};

use crate::hub::HubError;

/// Timeouts of every connection: a command never waits long for a Redis
/// that is gone, so publishes fail fast (503) and readiness follows.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the hub's Redis is: one server, or the seed nodes of a cluster.
#[derive(Clone)]
pub(super) struct Target {
    seeds: Vec<ConnectionInfo>,
    cluster: bool,
}

impl Target {
    /// `urls` is one URL, or on a cluster a comma-separated list of seed
    /// node URLs. RESP3 is switched on whatever the URLs say.
    pub(super) fn parse(urls: &str, cluster: bool) -> Result<Target, HubError> {
        let seeds = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                let info = url.into_connection_info().map_err(|e| bad_url(format!("{url}: {e}")))?;
                let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                Ok(info.set_redis_settings(settings))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match seeds.len() {
            0 => Err(bad_url("no URL given".into())),
            1 => Ok(Target { seeds, cluster }),
            _ if cluster => Ok(Target { seeds, cluster }),
            _ => Err(bad_url("several URLs are seed nodes of a cluster: add --redis-cluster".into())),
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Opens a connection; with `pushes`, one whose pub/sub messages and
    /// disconnections arrive there and whose subscriptions survive reconnects.
    pub(super) async fn open(&self, pushes: Option<impl AsyncPushSender>) -> redis::RedisResult<RedisConnection> {
        if self.cluster {
            let mut builder = ClusterClientBuilder::new(self.seeds.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(3)
                .max_retry_wait(500);
            if let Some(pushes) = pushes {
                builder = builder.push_sender(pushes);
            }
            return Ok(RedisConnection::Cluster(builder.build()?.get_async_connection().await?));
        }
        let client = redis::Client::open(self.seeds[0].clone())?;
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        if let Some(pushes) = pushes {
            config = config.set_push_sender(pushes).set_automatic_resubscription();
        }
        Ok(RedisConnection::Single(ConnectionManager::new_with_config(client, config).await?))
    }
}

/// Redis could not be reached or did not answer: the error every caller sees.
pub(super) fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(e.to_string())
}

fn bad_url(message: String) -> HubError {
    HubError::Unavailable(format!("bad Redis URL: {message}"))
}

/// A connection to one Redis or to a cluster. Clones share it.
#[derive(Clone)]
pub(super) enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Subscribes the live link to `channels` (sharded on a cluster, where
    /// one command may only name channels of one slot).
    pub(super) async fn subscribe(&mut self, channels: Vec<String>) -> redis::RedisResult<()> {
        self.set_subscribed(channels, true).await
    }

    pub(super) async fn unsubscribe(&mut self, channels: Vec<String>) -> redis::RedisResult<()> {
        self.set_subscribed(channels, false).await
    }

    async fn set_subscribed(&mut self, channels: Vec<String>, on: bool) -> redis::RedisResult<()> {
        match self {
            _ if channels.is_empty() => Ok(()),
            RedisConnection::Single(c) if on => c.subscribe(channels).await,
            RedisConnection::Single(c) => c.unsubscribe(channels).await,
            RedisConnection::Cluster(c) => {
                for channel in channels {
                    if on { c.ssubscribe(channel).await? } else { c.sunsubscribe(channel).await? }
                }
                Ok(())
            }
        }
    }

    /// The command that publishes on a live channel: `SPUBLISH` on a cluster.
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            RedisConnection::Single(_) => "PUBLISH",
            RedisConnection::Cluster(_) => "SPUBLISH",
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}
