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
        let mut outage = Outage::new(what);
        loop {
            let (connection, generation) = self.get();
            // Our own bound besides the client's: the cluster client does not
            // always honour its response timeout (seen after a failover).
            let attempt = tokio::time::timeout(
                self.timeouts.response + Duration::from_secs(1),
                step(connection),
            );
            match attempt.await.unwrap_or_else(|_| Err(timed_out())) {
                Ok(value) => {
                    outage.over();
                    return Ok(value);
                }
                Err(source) if is_out_of_memory(&source) => outage.warn_once(format_args!(
                    "Redis is out of memory (maxmemory reached); waiting for room before {what}"
                )),
                Err(source) if is_transient(&source) => {
                    if outage.lasted() > patience {
                        return Err(Error::GaveUp {
                            what,
                            seconds: outage.lasted().as_secs(),
                            source,
                        });
                    }
                    crate::telemetry::redis_retry();
                    // A caller that gives up within seconds hears nothing of
                    // the retries: its error, if it comes, says it all.
                    if patience >= GIVE_UP_AFTER {
                        outage.warn_once(format_args!(
                            "Redis connection problem during {what}: {source}; retrying"
                        ));
                    }
                    // Renewed after the pause, so the next attempt uses a
                    // connection as young as possible.
                    outage.pause().await;
                    self.renew(generation).await;
                    continue;
                }
                Err(source) => return Err(Error::Redis { what, source }),
            }
            outage.pause().await;
        }
    }
}

/// A step waiting for Redis: since when, how long the next pause is
/// (doubling up to 2 s), and whether it said so.
struct Outage {
    what: &'static str,
    started: Instant,
    delay: Duration,
    warned: bool,
}

impl Outage {
    fn new(what: &'static str) -> Self {
        Outage {
            what,
            started: Instant::now(),
            delay: Duration::from_millis(50),
            warned: false,
        }
    }

    fn lasted(&self) -> Duration {
        self.started.elapsed()
    }

    /// Says why the step waits, once.
    fn warn_once(&mut self, why: std::fmt::Arguments<'_>) {
        if !self.warned {
            tracing::warn!("{why}");
            self.warned = true;
        }
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(2));
    }

    /// The step was answered: says so if it had said it waits.
    fn over(&self) {
        if self.warned {
            tracing::info!("Redis is back; {} goes on", self.what);
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
