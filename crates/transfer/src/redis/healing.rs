//! One connection that heals: replaced by a fresh one after a transient
//! failure, with every step run on it again until answered.

use std::future::Future;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use redis::RedisError;

use super::GIVE_UP_AFTER;
use super::connection::{Connection, Connector, Timeouts};
use crate::error::{Error, Result, is_out_of_memory, is_transient};

/// One connection that [`Healing::run`] replaces after a transient failure.
/// We reconnect ourselves instead of using redis-rs' `ConnectionManager`,
/// whose reconnection could hang for good when the new connection was cut
/// during its handshake (seen with connections killed every few hundred
/// ms): every later command then waited on it.
pub(super) struct Healing {
    /// The connection, and how many times it was replaced: a task that
    /// saw generation `g` fail replaces it only if it is still `g`, so
    /// tasks failing together open one new connection, not one each.
    current: RwLock<(Connection, u64)>,
    connector: Connector,
    pub(super) timeouts: Timeouts,
}

impl Healing {
    pub(super) async fn open(
        connector: &Connector,
        timeouts: Timeouts,
    ) -> redis::RedisResult<Self> {
        let connection = connector.open(timeouts).await?;
        Ok(Healing {
            current: RwLock::new((connection, 0)),
            connector: connector.clone(),
            timeouts,
        })
    }

    pub(super) fn get(&self) -> (Connection, u64) {
        self.current.read().expect("not poisoned").clone()
    }

    /// Replaces generation `failed` with a fresh connection, if one can be
    /// made now; otherwise the old one stays and retrying goes on.
    pub(super) async fn renew(&self, failed: u64) {
        if self.get().1 != failed {
            return; // another task renewed it already
        }
        match self.connector.open(self.timeouts).await {
            Ok(fresh) => {
                let mut current = self.current.write().expect("not poisoned");
                if current.1 == failed {
                    *current = (fresh, failed + 1);
                }
            }
            Err(error) => tracing::debug!("could not open a fresh connection yet: {error}"),
        }
    }

    /// Runs an idempotent step on this connection until it is answered:
    /// after a transient failure, again with backoff on a fresh connection,
    /// for at most `patience`; while Redis is out of memory, for as long as
    /// that lasts.
    pub(super) async fn run<T, F, Fut>(
        &self,
        patience: Duration,
        what: &'static str,
        mut step: F,
    ) -> Result<T>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        let mut warned = false;
        loop {
            let (connection, generation) = self.get();
            // Our own bound besides the client's: the cluster client does not
            // always honour its response timeout (seen after a failover).
            let attempt = tokio::time::timeout(
                self.timeouts.response + Duration::from_secs(1),
                step(connection),
            );
            let outcome = attempt.await.unwrap_or_else(|_| Err(timed_out()));
            match outcome {
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
                    if started.elapsed() > patience {
                        return Err(Error::GaveUp {
                            what,
                            seconds: started.elapsed().as_secs(),
                            source,
                        });
                    }
                    crate::telemetry::redis_retry();
                    // A caller that gives up within seconds hears nothing of
                    // the retries: its error, if it comes, says it all.
                    if !warned && patience >= GIVE_UP_AFTER {
                        tracing::warn!(
                            "Redis connection problem during {what}: {source}; retrying"
                        );
                        warned = true;
                    }
                    // Renewed after the pause, so the next attempt uses a
                    // connection as young as possible.
                    tokio::time::sleep(delay).await;
                    self.renew(generation).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(source) => return Err(Error::Redis { what, source }),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// The error of an attempt that outlasted our own bound.
pub(super) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer in time",
    ))
}
