//! Connections to Redis, and retrying commands across dropped connections.
//!
//! Two multiplexed connections per party: one for ordinary commands, which
//! redis-rs pipelines for us, and one for blocking reads (`XREAD BLOCK`),
//! because a blocked command stalls every command queued behind it on the
//! same connection. A step that fails for a transient reason (a dropped
//! connection, a timeout) is retried with exponential backoff on a fresh
//! connection until Redis is back, so a Redis restart or a flaky network
//! pauses a transfer instead of ending it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Cmd, FromRedisValue, Pipeline, RedisError};

pub use crate::error::is_transient;
use crate::error::{Error, Result};

mod connect_error;
mod connection;
mod delay_proxy;
mod healing;
mod local_cluster;
mod local_server;
pub mod memory;
pub(crate) mod shards;
mod tls;

use connect_error::{connect_error, redacted};
pub use connection::Connection;
use connection::{Connector, Timeouts};
pub use delay_proxy::{DelayProxy, DelayProxyOptions};
use healing::{Healing, timed_out};
pub use local_cluster::{LocalCluster, LocalClusterOptions};
pub use local_server::{LocalRedis, LocalRedisOptions, LocalTls};

/// How long a blocking read waits before the caller looks around again.
/// Kept well below the blocking connection's response timeout.
pub const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// How long an answer may take before the step is retried on a fresh
/// connection. Short enough to matter: a request written while its
/// connection was being cut can go unanswered, with no error, until then
/// (seen with redis-rs 1.8 and connections killed every few hundred ms).
/// Long enough for a 1 MiB chunk over a slow link; every step is
/// idempotent, so a retry after a merely slow answer costs only time.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long opening a connection may take, handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long opening retries connections cut during their setup.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// How long we keep retrying while Redis is unreachable before giving up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// What a server's `INFO memory` says of its memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memory {
    /// `used_memory`: bytes in use.
    pub used: u64,
    /// `maxmemory`: the most it may use, 0 for no limit.
    pub max: u64,
}

impl Memory {
    /// Whether it holds more than half its limit (never without one).
    pub(crate) fn past_half(&self) -> bool {
        self.max > 0 && self.used > self.max / 2
    }
}

/// A pair of connections to one Redis server (or one Redis Cluster) and
/// the URL they came from.
#[derive(Clone)]
pub struct Redis {
    commands: Arc<Healing>,
    blocking: Arc<Healing>,
    url: String,
    cluster: bool,
    /// How long a step is retried while Redis is unreachable.
    patience: Duration,
}

impl Redis {
    /// Connects to `url`, failing fast with a clear error when the server is
    /// unreachable or refuses the credentials. A Redis Cluster is detected
    /// (`cluster_enabled:1`), or given as several comma-separated node URLs;
    /// commands then go to the node that owns their keys.
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = redacted(url);
        if url.contains("rediss://") {
            // rustls needs a process-wide crypto provider; one may already be set.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut nodes = Vec::new();
        let mut certs = None;
        for one in url.split(',').map(str::trim) {
            let (one, these) = tls::split(one)?;
            certs = certs.or(these);
            let info =
                tls::connection_info(&one, certs.as_ref()).map_err(|e| Error::InvalidUrl {
                    url: shown.clone(),
                    reason: if one.matches('@').count() > 1 {
                        format!("{e}; write an @ inside a password as %40")
                    } else {
                        e.to_string()
                    },
                })?;
            nodes.push(info);
        }
        let started = Instant::now();
        loop {
            match Self::open(&nodes, certs.as_ref(), &shown).await {
                Ok(redis) => return Ok(redis),
                // A connection cut while it was being set up says nothing
                // about the server (a proxy restarting, a killed client):
                // try again for a while. A refused one fails at once.
                Err(source)
                    if source.is_connection_dropped()
                        && !source.is_connection_refusal()
                        && started.elapsed() < CONNECT_PATIENCE =>
                {
                    tracing::debug!("connection to {shown} cut while opening ({source}); again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(source) => return Err(connect_error(&shown, source)),
            }
        }
    }

    /// Opens both connections and checks the credentials with a PING.
    async fn open(
        nodes: &[redis::ConnectionInfo],
        certs: Option<&redis::TlsCertificates>,
        shown: &str,
    ) -> redis::RedisResult<Self> {
        let commands = Timeouts {
            connect: CONNECT_TIMEOUT,
            response: RESPONSE_TIMEOUT,
        };
        let blocking = Timeouts {
            connect: CONNECT_TIMEOUT,
            response: LONGEST_WAIT + Duration::from_secs(10),
        };
        let mut cluster = nodes.len() > 1;
        if !cluster {
            // A wrong password may only show on the first command.
            let mut con = Connector::new(nodes, false, certs, commands)?
                .open(commands)
                .await?;
            cluster = match redis::cmd("INFO")
                .arg("cluster")
                .query_async::<String>(&mut con)
                .await
            {
                Ok(info) => info.contains("cluster_enabled:1"),
                // An ACL user without INFO: a cluster would answer MOVED
                // soon enough; take it for one server.
                Err(error) if error.code() == Some("NOPERM") => false,
                Err(error) => return Err(error),
            };
        }
        let mut connector = Connector::new(nodes, cluster, certs, commands)?;
        if cluster {
            let mut first = connector.open(commands).await?;
            connector = Connector::every_node(&nodes[0], &mut first, certs, commands).await?;
        }
        let commands = Healing::open(&connector, commands).await?;
        let blocking = Healing::open(&connector, blocking).await?;
        let mut con = commands.get().0;
        let _: String = redis::cmd("PING").query_async(&mut con).await?;
        Ok(Redis {
            commands: Arc::new(commands),
            blocking: Arc::new(blocking),
            url: shown.to_owned(),
            cluster,
            patience: GIVE_UP_AFTER,
        })
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Gives up on a step after `patience` of failures instead of two
    /// minutes: for a look at the state (`status`), an answer saying at
    /// once that Redis is unreachable, or the cluster down, is worth more
    /// than one that waits for it to come back.
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Runs an idempotent step, retrying transient failures with backoff.
    pub async fn keep_trying<T, F, Fut>(&self, what: &'static str, step: F) -> Result<T>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.commands.run(self.patience, what, step).await
    }

    /// Sends one command with [`Redis::keep_trying`]. Most steps are a single
    /// command, and this spares each of them a closure that rebuilds it per
    /// attempt. Every attempt sends the same borrowed command, so a large
    /// argument (a chunk) is copied once, not once per attempt.
    pub async fn query<T: FromRedisValue>(&self, what: &'static str, command: &Cmd) -> Result<T> {
        self.keep_trying(what, |mut con| async move {
            command.query_async(&mut con).await
        })
        .await
    }

    /// Sends a blocking read (`XREAD BLOCK`, `XREADGROUP BLOCK`) once, on
    /// the connection reserved for them. `None` means the wait was cut
    /// short (a dropped connection, a timeout): the connection is renewed,
    /// and the caller looks around and waits again, as after a block that
    /// timed out. While Redis is unreachable this waits, and gives up, as
    /// [`Redis::keep_trying`] does. Retrying the same long block instead could never finish
    /// where connections live shorter than a block (a flaky proxy).
    pub async fn wait<T: FromRedisValue>(
        &self,
        what: &'static str,
        command: &Cmd,
    ) -> Result<Option<T>> {
        let (mut connection, generation) = self.blocking.get();
        let bound = self.blocking.timeouts.response + Duration::from_secs(1);
        let outcome = tokio::time::timeout(bound, command.query_async(&mut connection)).await;
        match outcome.unwrap_or_else(|_| Err(timed_out())) {
            Ok(value) => Ok(Some(value)),
            Err(source) if is_transient(&source) => {
                tracing::debug!("{what} was cut short: {source}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.blocking.renew(generation).await;
                // A cut connection, or Redis gone? Only the first returns at
                // once; an outage is waited out, and given up on, as any step.
                self.query::<String>(what, &redis::cmd("PING")).await?;
                Ok(None)
            }
            Err(source) => Err(Error::Redis { what, source }),
        }
    }

    /// Like [`Redis::query`], for a pipeline: its commands travel together,
    /// and the whole pipeline is resent when an attempt fails, so each of
    /// them must be idempotent.
    pub async fn query_pipe<T: FromRedisValue>(
        &self,
        what: &'static str,
        pipeline: &Pipeline,
    ) -> Result<T> {
        self.keep_trying(what, |mut con| async move {
            pipeline.query_async(&mut con).await
        })
        .await
    }

    /// Every key matching the `SCAN MATCH` pattern (a few batches of 1,000:
    /// SCAN never blocks the server the way KEYS does), on every primary
    /// of a cluster.
    pub async fn scan(&self, what: &'static str, pattern: &str) -> Result<Vec<String>> {
        Ok(self
            .scan_by_primary(what, pattern)
            .await?
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .collect())
    }

    /// Like [`Redis::scan`], with the keys of each primary apart, named
    /// `host:port` (empty for a single server). Each attempt asks the
    /// cluster for its primaries again and scans them all from the start:
    /// after a failover the list of a moment ago names a dead node, which
    /// retrying would only wait on until we give up.
    pub async fn scan_by_primary(
        &self,
        what: &'static str,
        pattern: &str,
    ) -> Result<Vec<(String, Vec<String>)>> {
        self.keep_trying(what, |mut con| async move {
            let mut found = Vec::new();
            for node in con.primaries().await? {
                let mut keys = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let mut command = redis::cmd("SCAN");
                    command
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000);
                    let (next, batch): (u64, Vec<String>) =
                        redis::from_redis_value(con.on_node(&command, &node).await?)
                            .map_err(RedisError::from)?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                found.push((node_name(&node), keys));
            }
            Ok(found)
        })
        .await
    }

    /// The most memory Redis may use for data in bytes, or `None` when
    /// unlimited or not readable. On a cluster, where chunks spread evenly
    /// over the primaries, the smallest primary's `maxmemory` times their
    /// number.
    pub async fn maxmemory(&self) -> Result<Option<u64>> {
        let each = self.info("memory", "maxmemory").await?;
        let limits: Vec<u64> = each
            .iter()
            .map(|value| {
                value
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .collect();
        Ok(limits
            .iter()
            .copied()
            .filter(|&bytes| bytes > 0)
            .min()
            .map(|smallest| smallest * limits.len() as u64))
    }

    /// Refuses a Redis whose `maxmemory-policy` may evict keys without an
    /// expiry (`allkeys-*`), as ours are: an evicted chunk is a file lost
    /// in flight. `volatile-*` policies only evict keys with an expiry, so
    /// they are as safe as `noeviction`. A policy we may not read (no
    /// `INFO` permission) is trusted. On a cluster, every primary is checked.
    ///
    /// # Errors
    ///
    /// [`Error::EvictionPolicy`] for an `allkeys-*` policy.
    pub async fn refuse_eviction(&self) -> Result<()> {
        for policy in self
            .info("memory", "maxmemory_policy")
            .await?
            .into_iter()
            .flatten()
        {
            if policy.starts_with("allkeys-") {
                return Err(Error::EvictionPolicy {
                    url: self.url.clone(),
                    policy,
                });
            }
        }
        Ok(())
    }

    /// The server's `run_id` (on a cluster, every primary's), which changes
    /// whenever Redis restarts or another server, such as a promoted
    /// replica, answers: a sign that recent writes may have been lost.
    /// `None` when not readable.
    pub async fn run_id(&self) -> Result<Option<String>> {
        let ids: Option<Vec<String>> = self.info("server", "run_id").await?.into_iter().collect();
        Ok(ids.map(|ids| ids.join(",")))
    }

    /// How many times a connection was replaced after a failure: when this
    /// has not moved, the server cannot have restarted under us.
    pub fn reconnections(&self) -> u64 {
        self.commands.get().1 + self.blocking.get().1
    }

    /// One field of an `INFO` section from the server (each primary of a
    /// cluster), `None` where absent or not readable.
    async fn info(&self, section: &str, field: &str) -> Result<Vec<Option<String>>> {
        Ok(self
            .info_by_primary(section)
            .await?
            .into_iter()
            .map(|(_, info)| info.and_then(|info| info_field(&info, field)))
            .collect())
    }

    /// The memory of every primary, named `host:port` (empty for a single
    /// server); none when `INFO` is not allowed.
    pub(crate) async fn memory_by_primary(&self) -> Result<HashMap<String, Memory>> {
        let number = |info: &str, field| {
            info_field(info, field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(self
            .info_by_primary("memory")
            .await?
            .into_iter()
            .filter_map(|(node, info)| {
                let info = info?;
                let memory = Memory {
                    used: number(&info, "used_memory"),
                    max: number(&info, "maxmemory"),
                };
                Some((node, memory))
            })
            .collect())
    }

    /// An `INFO` section of every primary (`host:port`, empty for a single
    /// server), `None` where an ACL user may not run `INFO`. Like
    /// [`Redis::scan_by_primary`], each attempt asks for the primaries again.
    async fn info_by_primary(&self, section: &str) -> Result<Vec<(String, Option<String>)>> {
        let mut command = redis::cmd("INFO");
        command.arg(section);
        let command = &command;
        self.keep_trying("reading INFO", |mut con| async move {
            let mut found = Vec::new();
            for node in con.primaries().await? {
                let info = match con.on_node(command, &node).await {
                    Ok(info) => Some(redis::from_redis_value(info).map_err(RedisError::from)?),
                    Err(source) if source.code() == Some("NOPERM") => None,
                    Err(source) => return Err(source),
                };
                found.push((node_name(&node), info));
            }
            Ok(found)
        })
        .await
    }
}

/// One field of an `INFO` answer.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')
            .map(|value| value.trim().to_owned())
    })
}

/// `host:port` of a primary, empty for the one server.
fn node_name((host, port): &(String, u16)) -> String {
    if host.is_empty() {
        String::new()
    } else {
        format!("{host}:{port}")
    }
}
