//! One channel on one Redis: running the protocol's scripts with retries,
//! finding and deleting chunks that are no longer needed.

use std::collections::{HashMap, HashSet};

use futures_util::{StreamExt, TryStreamExt};

use redis::{FromRedisValue, Script, ToRedisArgs};

use crate::error::{Error, Result};
use crate::native::protocol::{self, Audience, Keys};
use crate::redis::Redis;

/// How many chunk keys one `UNLINK` deletes.
pub(crate) const UNLINK_BATCH: u64 = 256;

/// A channel's keys together with the connection that reaches them.
#[derive(Clone)]
pub struct Channel {
    pub redis: Redis,
    pub keys: Keys,
}

/// The parts of a channel's `meta` hash that both sides need.
#[derive(Clone, Debug)]
pub struct Meta {
    pub audience: Audience,
    pub ended: bool,
    pub fields: HashMap<String, String>,
}

impl Meta {
    /// The channel's creation time, in Unix ms (`created_ms`).
    pub fn epoch(&self) -> &str {
        self.fields.get("created_ms").map_or("", String::as_str)
    }

    /// Whether `entry` of `files` is the end-of-input mark in force.
    pub fn is_end_mark(&self, entry: &str) -> bool {
        self.ended && self.fields.get("eof_id").is_some_and(|id| id == entry)
    }

    /// A numeric field, 0 when missing.
    pub fn number(&self, field: &str) -> u64 {
        self.fields
            .get(field)
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |v| v.max(0) as u64)
    }
}

/// The chunks of a channel that are in Redis, master by master.
#[derive(Debug, Default)]
pub struct ChunkCensus {
    /// Bytes of chunk data on each master (`host:port`; empty for one
    /// server).
    pub per_master: Vec<(String, u64)>,
    /// Key and length of each chunk of a file no receiver needs any more:
    /// released, but back in Redis (a replica promoted before it had the
    /// deletes) or never deleted (a release cut short).
    pub leftovers: Vec<(String, u64)>,
}

impl ChunkCensus {
    /// Bytes of the leftover chunks.
    pub fn leftover_bytes(&self) -> u64 {
        self.leftovers.iter().map(|(_, bytes)| bytes).sum()
    }
}

/// Chunks `from..to` of file `fid`, to delete and then release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRange {
    pub fid: u64,
    pub from: u64,
    pub to: u64,
}

/// What ACK and RELEASE_PLAN answer: chunk ranges that may be deleted now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReleasePlan(pub Vec<ChunkRange>);

impl ReleasePlan {
    /// Reads a script's `{fid, from, to, ...}` answer; `meta` names the
    /// channel in an error.
    pub(crate) fn parse(meta: &str, triples: &[String]) -> Result<ReleasePlan> {
        let parse = |s: &String| {
            s.parse::<u64>().map_err(|_| Error::Protocol {
                key: meta.to_owned(),
                reason: format!("bad number {s:?} in a release plan"),
            })
        };
        let ranges = triples.chunks_exact(3).map(|triple| {
            Ok(ChunkRange {
                fid: parse(&triple[0])?,
                from: parse(&triple[1])?,
                to: parse(&triple[2])?,
            })
        });
        Ok(ReleasePlan(ranges.collect::<Result<_>>()?))
    }
}

impl Channel {
    pub fn new(redis: Redis, keys: Keys) -> Self {
        Channel { redis, keys }
    }

    /// Finds and measures the channel's chunks on every master. `active`
    /// is read after the scan, so a file announced meanwhile, whose new
    /// chunks the scan may have seen, is never taken for a leftover.
    pub async fn chunk_census(&self) -> Result<ChunkCensus> {
        let found = self
            .redis
            .scan_by_primary("listing chunks", &self.keys.chunk_pattern())
            .await?;
        let active: HashSet<u64> = self
            .redis
            .query(
                "reading the files in flight",
                redis::cmd("ZRANGE").arg(self.keys.active()).arg(0).arg(-1),
            )
            .await?;
        let mut census = ChunkCensus::default();
        for (master, chunks) in found {
            let redis = &self.redis;
            let lengths: Vec<u64> = futures_util::stream::iter(chunks.clone())
                .map(|key| async move {
                    redis
                        .query::<u64>("measuring chunks", redis::cmd("STRLEN").arg(key))
                        .await
                })
                .buffered(32)
                .try_collect()
                .await?;
            census.per_master.push((master, lengths.iter().sum()));
            for (key, bytes) in chunks.into_iter().zip(lengths) {
                if self
                    .keys
                    .chunk_file(&key)
                    .is_some_and(|fid| !active.contains(&fid))
                {
                    census.leftovers.push((key, bytes));
                }
            }
        }
        Ok(census)
    }

    /// Runs one of [`protocol`]'s scripts with the channel's `meta` key and
    /// base as the first key and argument.
    pub async fn run<T: FromRedisValue, A: ToRedisArgs + Sync>(
        &self,
        what: &'static str,
        script: &'static Script,
        args: &[A],
    ) -> Result<T> {
        let meta = self.keys.meta();
        let base = self.keys.base().to_owned();
        self.redis
            .keep_trying(what, |mut con| {
                let mut invocation = script.prepare_invoke();
                invocation.key(&meta).arg(&base);
                for arg in args {
                    invocation.arg(arg);
                }
                async move { invocation.invoke_async(&mut con).await }
            })
            .await
    }

    /// Reads `meta`, or `None` when the channel does not exist (yet).
    pub async fn meta(&self) -> Result<Option<Meta>> {
        let key = self.keys.meta();
        let fields: HashMap<String, String> = self
            .redis
            .query("reading the channel", redis::cmd("HGETALL").arg(&key))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
        if field("version") != protocol::VERSION {
            return Err(Error::SchemaMismatch {
                channel: self.keys.channel().to_owned(),
                found: field("version").to_owned(),
                expected: protocol::VERSION,
            });
        }
        let audience =
            Audience::from_fields(field("mode"), field("receivers")).ok_or_else(|| {
                Error::Protocol {
                    key: key.clone(),
                    reason: format!("unknown mode {:?}", field("mode")),
                }
            })?;
        Ok(Some(Meta {
            audience,
            ended: field("ended") == "1",
            fields,
        }))
    }

    /// Reads `meta` of a channel that must exist: an error once it is gone.
    pub async fn existing_meta(&self) -> Result<Meta> {
        self.meta().await?.ok_or_else(|| Error::Protocol {
            key: self.keys.meta(),
            reason: "the channel disappeared (was it purged?)".into(),
        })
    }

    /// Deletes the chunks a release plan names (what ACK and RELEASE_PLAN
    /// answer), then releases their bytes from the budget: deleted first,
    /// so a crash in between can only overestimate memory.
    pub(crate) async fn reclaim(&self, plan: &ReleasePlan) -> Result<()> {
        for range in &plan.0 {
            let mut start = range.from;
            while start < range.to {
                let end = (start + UNLINK_BATCH).min(range.to);
                // One command for the batch: on a cluster, where chunk keys
                // live on different shards, the client splits it by slot.
                let mut unlink = redis::cmd("UNLINK");
                for i in start..end {
                    unlink.arg(self.keys.chunk(range.fid, i));
                }
                self.redis.query::<u64>("deleting chunks", &unlink).await?;
                start = end;
            }
            self.release(range.fid, range.to).await?;
        }
        Ok(())
    }
}
