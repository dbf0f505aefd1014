//! Connections to Redis, and retrying commands across dropped connections.
//!
//! Two multiplexed connections per party: one for ordinary commands, which
//! redis-rs pipelines for us, and one for blocking reads (`XREAD BLOCK`),
//! because a blocked command stalls every command queued behind it on the
//! same connection. Both reconnect on their own ([`ConnectionManager`]); what
//! this module adds is a loop that retries a failed idempotent step with
//! exponential backoff until Redis is back, so a Redis restart pauses a
//! transfer instead of ending it.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind};

use crate::error::{Error, Result};

mod local_server;

pub use local_server::{LocalRedis, LocalRedisOptions};

/// How long a blocking read waits before the caller looks around again.
/// Kept well below the blocking connection's response timeout.
pub const BLOCK: Duration = Duration::from_secs(2);

/// How long we keep retrying while Redis is unreachable before giving up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// A pair of connections to one Redis server and the URL they came from.
#[derive(Clone)]
pub struct Redis {
    commands: ConnectionManager,
    blocking: ConnectionManager,
    url: String,
}

impl Redis {
    /// Connects to `url`, failing fast with a clear error when the server is
    /// unreachable or refuses the credentials.
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = redacted(url);
        if url.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider; one may already be set.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|e| Error::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let open = |config: ConnectionManagerConfig| {
            let client = client.clone();
            let shown = shown.clone();
            async move {
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|source| connect_error(&shown, source))
            }
        };
        let commands = open(
            base.clone()
                .set_response_timeout(Some(Duration::from_secs(60))),
        )
        .await?;
        let blocking =
            open(base.set_response_timeout(Some(BLOCK + Duration::from_secs(10)))).await?;
        let redis = Redis {
            commands,
            blocking,
            url: shown,
        };
        // A wrong password may only show on the first command.
        let mut con = redis.commands.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(|source| connect_error(&redis.url, source))?;
        Ok(redis)
    }

    /// Runs an idempotent step, retrying transient failures with backoff.
    pub async fn retry<T, F, Fut>(&self, what: &'static str, step: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        retry_on(&self.commands, what, step).await
    }

    /// Like [`Redis::retry`], on the connection reserved for blocking reads.
    pub async fn retry_blocking<T, F, Fut>(&self, what: &'static str, step: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        retry_on(&self.blocking, what, step).await
    }

    /// Sends one command with [`Redis::retry`]. Most steps are a single
    /// command, and this spares each of them a closure that rebuilds it per
    /// attempt. Every attempt sends the same borrowed command, so a large
    /// argument (a chunk) is copied once, not once per attempt.
    pub async fn query<T: FromRedisValue>(&self, what: &'static str, command: &Cmd) -> Result<T> {
        self.retry(what, |mut con| async move {
            command.query_async(&mut con).await
        })
        .await
    }

    /// Like [`Redis::query`], on the connection reserved for blocking reads.
    pub async fn query_blocking<T: FromRedisValue>(
        &self,
        what: &'static str,
        command: &Cmd,
    ) -> Result<T> {
        self.retry_blocking(what, |mut con| async move {
            command.query_async(&mut con).await
        })
        .await
    }

    /// Like [`Redis::query`], for a pipeline: its commands travel together,
    /// and the whole pipeline is resent when an attempt fails, so each of
    /// them must be idempotent.
    pub async fn query_pipe<T: FromRedisValue>(
        &self,
        what: &'static str,
        pipeline: &Pipeline,
    ) -> Result<T> {
        self.retry(what, |mut con| async move {
            pipeline.query_async(&mut con).await
        })
        .await
    }

    /// Every key matching the `SCAN MATCH` pattern (a few batches of 1,000:
    /// SCAN never blocks the server the way KEYS does).
    pub async fn scan(&self, what: &'static str, pattern: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    what,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Redis' `maxmemory` in bytes, or `None` when unlimited or not readable.
    pub async fn maxmemory(&self) -> Result<Option<u64>> {
        Ok(self
            .memory_info("maxmemory")
            .await?
            .and_then(|value| value.parse::<u64>().ok())
            .filter(|&bytes| bytes > 0))
    }

    /// Refuses a Redis whose `maxmemory-policy` may evict keys without an
    /// expiry (`allkeys-*`), as ours are: an evicted chunk is a file lost
    /// in flight. `volatile-*` policies only evict keys with an expiry, so
    /// they are as safe as `noeviction`. A policy we may not read (no
    /// `INFO` permission) is trusted.
    ///
    /// # Errors
    ///
    /// [`Error::EvictionPolicy`] for an `allkeys-*` policy.
    pub async fn refuse_eviction(&self) -> Result<()> {
        match self.memory_info("maxmemory_policy").await? {
            Some(policy) if policy.starts_with("allkeys-") => Err(Error::EvictionPolicy {
                url: self.url.clone(),
                policy,
            }),
            _ => Ok(()),
        }
    }

    /// One field of `INFO memory`, or `None` when absent or not readable.
    async fn memory_info(&self, field: &str) -> Result<Option<String>> {
        let info: String = match self
            .query("INFO memory", redis::cmd("INFO").arg("memory"))
            .await
        {
            Ok(info) => info,
            // An ACL user without INFO: we cannot know.
            Err(Error::Redis { source, .. }) if source.code() == Some("NOPERM") => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(info.lines().find_map(|line| {
            line.strip_prefix(field)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|value| value.trim().to_owned())
        }))
    }
}

async fn retry_on<T, F, Fut>(con: &ConnectionManager, what: &'static str, mut step: F) -> Result<T>
where
    F: FnMut(ConnectionManager) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut warned = false;
    loop {
        match step(con.clone()).await {
            Ok(value) => {
                if warned {
                    tracing::info!("Redis is back; {what} goes on");
                }
                return Ok(value);
            }
            Err(source) if is_out_of_memory(&source) => {
                if !warned {
                    tracing::warn!(
                        "Redis is out of memory (maxmemory reached); waiting for room before {what}"
                    );
                    warned = true;
                }
            }
            Err(source) if is_transient(&source) => {
                if started.elapsed() > GIVE_UP_AFTER {
                    return Err(Error::GaveUp {
                        what,
                        seconds: started.elapsed().as_secs(),
                        source,
                    });
                }
                if !warned {
                    tracing::warn!("Redis connection problem during {what}: {source}; retrying");
                    warned = true;
                }
            }
            Err(source) => return Err(Error::Redis { what, source }),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Whether an error is likely to go away by itself: dropped or refused
/// connections, timeouts, a Redis still loading its data set, failovers.
pub fn is_transient(error: &RedisError) -> bool {
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
    {
        return true;
    }
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
        ) | ErrorKind::Io
    )
}

/// Whether Redis refused a write because it reached `maxmemory`.
pub(crate) fn is_out_of_memory(error: &RedisError) -> bool {
    error.code() == Some("OOM")
}

fn connect_error(url: &str, source: RedisError) -> Error {
    let auth = source.kind() == ErrorKind::AuthenticationFailed
        || matches!(source.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    if auth {
        Error::Auth {
            url: url.to_owned(),
            source,
        }
    } else {
        Error::Connect {
            url: url.to_owned(),
            source,
        }
    }
}

/// Removes passwords from a URL so it can be printed: the `user:pass@`
/// part and `pass`/`password` query parameters (as `unix://` URLs use).
pub(crate) fn redacted(url: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let mut shown = match address.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => address.to_owned(),
        },
        None => address.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if key == "pass" || key == "password" => format!("{key}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        shown = format!("{shown}?{}", parameters.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redacted("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
        assert_eq!(redacted("unix:///tmp/r.sock"), "unix:///tmp/r.sock");
        assert_eq!(
            redacted("unix:///tmp/r.sock?db=1&pass=secret"),
            "unix:///tmp/r.sock?db=1&pass=***"
        );
    }
}
