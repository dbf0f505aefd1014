//! The sender's steps: creating the channel, announcing a file, reserving
//! room, publishing chunks, finishing or abandoning an upload, serving
//! requests for files again, and the `meta` fields only the sender writes.
//!
//! Each step is one typed call on [`Channel`]; its script's answer is
//! decoded here, so the sender matches on enums, never on the numbers and
//! words the Lua files return.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Script;

use super::channel::ReleasePlan;
use super::{Audience, VERSION, script};
use crate::error::{Error, Result};
use crate::native::lease;
use crate::native::protocol::channel::Channel;
use crate::redis::LONGEST_WAIT;

mod upload;

pub(crate) use upload::{
    AnnounceState, Announced, Announcement, Ending, Finish, Publication, Publish, Reserve,
    RoomRequest, Whole,
};

/// Creates the channel or checks that it matches.
/// KEYS: meta. ARGV: base, mode, receivers, limit, chunk size, now (ms), [`VERSION`].
/// Returns `{}` on success, `{mode, receivers}` of an existing channel that
/// differs (mode `version N` when written by another schema version).
static OPEN: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/open.lua")));

/// The sender cannot upload a wanted file again (its source changed or
/// is gone): parks it for every receiver that wanted it.
/// KEYS: meta. ARGV: base, name, reason. Returns how many receivers.
static GIVE_UP: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/give_up.lua")));

/// Sets the end-of-input mark. KEYS: meta. ARGV: base.
static END_INPUT: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../scripts/end_input.lua")));

/// Lists chunk ranges that may be deleted now: files everyone finished and,
/// when `early` is 1 (the sender is out of room), the prefix every receiver
/// has consumed of the file being uploaded, if it alone fills the budget.
/// Early release costs a second upload for a receiver restarted mid-file
/// (it finds chunks gone and asks for the file again), so it happens only
/// when a file larger than the budget must stream through; files that fit
/// are never released early.
/// KEYS: meta. ARGV: base, early (0/1). Returns `{fid, from, to, ...}`.
static RELEASE_PLAN: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../scripts/release_plan.lua")));

/// What OPEN found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The channel is new, or has this audience and schema: ready to send.
    Ready,
    /// The channel was made by another schema version (the one given).
    OtherVersion(String),
    /// The channel exists for another audience.
    OtherAudience { mode: String, receivers: String },
}

/// A request, from `P:{C}:wanted`, to upload a file again: the receivers it
/// is for, the identity it must still have, and the file id and round the
/// new upload continues from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) name: String,
    pub(crate) identity: String,
    pub(crate) round: u32,
    pub(crate) origin: String,
    /// Comma-separated receiver ids, `*` for any worker.
    pub(crate) receivers: String,
}

impl Wanted {
    /// Parses `fid identity round origin receivers`.
    fn parse(name: &str, value: &str) -> Option<Self> {
        let mut parts = value.split(' ');
        let _fid = parts.next()?;
        let identity = parts.next()?.to_owned();
        let round = parts.next()?.parse().ok()?;
        let origin = parts.next()?.to_owned();
        let receivers = parts.next()?.to_owned();
        if receivers.is_empty() || parts.next().is_some() {
            return None;
        }
        Some(Wanted {
            name: name.to_owned(),
            identity,
            round,
            origin,
            receivers,
        })
    }

    /// How many acknowledgements complete the new upload.
    pub(crate) fn acks_needed(&self) -> usize {
        if self.receivers == "*" {
            1
        } else {
            self.receivers.split(',').count()
        }
    }
}

/// One field of `wanted`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Again(Wanted),
    /// A value that does not parse.
    Malformed {
        name: String,
        value: String,
    },
}

/// A file whose data may still be in Redis.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ActiveFile {
    pub(crate) fid: u64,
    pub(crate) name: String,
    /// Still being uploaded (not sent, done or abandoned).
    pub(crate) uploading: bool,
}

/// What keeps a sender waiting at the end.
#[derive(Debug)]
pub(crate) struct Outstanding {
    /// Files whose data may still be in Redis.
    pub(crate) active: u64,
    /// Finished files whose chunks still need deleting.
    pub(crate) reclaim: u64,
    /// Files receivers want uploaded again.
    pub(crate) wanted: u64,
    /// The newest progress event, if any.
    pub(crate) newest_event: Option<String>,
}

impl Channel {
    /// Creates the channel (OPEN), or checks that the existing one has this
    /// audience and schema; a ready channel's name is registered for `status`.
    pub(crate) async fn create(
        &self,
        audience: &Audience,
        limit: u64,
        chunk_size: u64,
    ) -> Result<Opened> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let args = [
            audience.mode().to_owned(),
            audience.receivers_field(),
            limit.to_string(),
            chunk_size.to_string(),
            now.to_string(),
            VERSION.to_owned(),
        ];
        let mismatch: Vec<String> = self.run("creating the channel", &OPEN, &args).await?;
        let opened = match mismatch.as_slice() {
            [mode, receivers] => match mode.strip_prefix("version ") {
                Some(found) => Opened::OtherVersion(found.to_owned()),
                None => Opened::OtherAudience {
                    mode: mode.clone(),
                    receivers: receivers.clone(),
                },
            },
            _ => Opened::Ready,
        };
        if opened == Opened::Ready {
            let register = redis::cmd("SADD")
                .arg(self.keys.channels())
                .arg(self.keys.channel())
                .clone();
            self.redis
                .query::<()>("registering the channel", &register)
                .await?;
        }
        Ok(opened)
    }

    /// Sets the end-of-input mark (END_INPUT); returns its entry's id.
    pub(crate) async fn mark_end_of_input(&self) -> Result<String> {
        self.run("marking the end of input", &END_INPUT, &[] as &[String])
            .await
    }

    /// Parks a wanted file for every receiver that wanted it (GIVE_UP);
    /// returns how many receivers that was.
    pub(crate) async fn give_up(&self, name: &str, reason: &str) -> Result<u64> {
        let args = [name.to_owned(), reason.to_owned()];
        self.run("parking a file", &GIVE_UP, &args).await
    }

    /// Chunk ranges to delete now (RELEASE_PLAN), as [`Channel::reclaim`]
    /// takes them. `early` also lists what every receiver consumed of an
    /// upload that alone fills the budget.
    pub(crate) async fn release_plan(&self, early: bool) -> Result<ReleasePlan> {
        let early = if early { "1" } else { "0" }.to_owned();
        let triples: Vec<String> = self
            .run("planning deletions", &RELEASE_PLAN, &[early])
            .await?;
        ReleasePlan::parse(&self.keys.meta(), &triples)
    }

    /// Every request for a file again, from `wanted`.
    pub(crate) async fn requests(&self) -> Result<Vec<Request>> {
        let wanted: HashMap<String, String> = self
            .redis
            .query(
                "reading requests for files",
                redis::cmd("HGETALL").arg(self.keys.wanted()),
            )
            .await?;
        Ok(wanted
            .into_iter()
            .map(|(name, value)| match Wanted::parse(&name, &value) {
                Some(wanted) => Request::Again(wanted),
                None => Request::Malformed { name, value },
            })
            .collect())
    }

    /// For each name, whether `sent` records its upload as complete.
    pub(crate) async fn sent_completely(&self, names: &[&str]) -> Result<Vec<bool>> {
        let mut pipe = redis::pipe();
        for name in names {
            pipe.hget(self.keys.sent(), name);
        }
        let entries: Vec<Option<String>> =
            self.redis.query_pipe("checking sent files", &pipe).await?;
        Ok(entries
            .into_iter()
            .map(|entry| entry.is_some_and(|e| e.ends_with(" sent")))
            .collect())
    }

    /// The files in `active`, with their names and whether they are still
    /// being uploaded.
    pub(crate) async fn active_files(&self) -> Result<Vec<ActiveFile>> {
        let active: Vec<u64> = self
            .redis
            .query(
                "reading the files in flight",
                redis::cmd("ZRANGE").arg(self.keys.active()).arg(0).arg(-1),
            )
            .await?;
        if active.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &fid in &active {
            pipe.cmd("HMGET")
                .arg(self.keys.file(fid))
                .arg("state")
                .arg("name");
        }
        let records: Vec<(Option<String>, Option<String>)> = self
            .redis
            .query_pipe("reading the files in flight", &pipe)
            .await?;
        Ok(active
            .into_iter()
            .zip(records)
            .map(|(fid, (state, name))| ActiveFile {
                fid,
                name: name.unwrap_or_default(),
                uploading: state.as_deref() == Some("uploading"),
            })
            .collect())
    }

    /// What is left before a sender's work is done.
    pub(crate) async fn outstanding(&self) -> Result<Outstanding> {
        let keys = &self.keys;
        let (active, reclaim, wanted, newest): (u64, u64, u64, redis::streams::StreamRangeReply) =
            self.redis
                .query_pipe(
                    "checking progress",
                    redis::pipe()
                        .zcard(keys.active())
                        .scard(keys.reclaim())
                        .hlen(keys.wanted())
                        .cmd("XREVRANGE")
                        .arg(keys.events())
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1),
                )
                .await?;
        Ok(Outstanding {
            active,
            reclaim,
            wanted,
            newest_event: newest.ids.into_iter().next().map(|entry| entry.id),
        })
    }

    /// Blocks until a receiver reports progress after `last_event`, or for
    /// at most [`LONGEST_WAIT`].
    pub(crate) async fn wait_for_event(&self, last_event: &str) -> Result<()> {
        self.redis
            .wait::<redis::Value>(
                "waiting for receivers",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(LONGEST_WAIT.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(self.keys.events())
                    .arg(last_event),
            )
            .await?;
        Ok(())
    }

    /// Tells `status` since when the sender waits for room (meta field
    /// `waiting`, Unix ms), or that it no longer does.
    pub(crate) async fn mark_waiting(&self, waiting: bool) -> Result<()> {
        let meta = self.keys.meta();
        let mut command = redis::cmd(if waiting { "HSET" } else { "HDEL" });
        command.arg(&meta).arg("waiting");
        if waiting {
            command.arg(lease::now_ms() as u64);
        }
        self.redis
            .query::<()>("telling status about a wait", &command)
            .await
    }

    /// Tells `status` the sender's upload rate (bytes a second).
    pub(crate) async fn write_rate(&self, rate: u64) -> Result<()> {
        let command = redis::cmd("HSET")
            .arg(self.keys.meta())
            .arg("rate")
            .arg(rate)
            .arg("rate_at")
            .arg(lease::now_ms() as u64)
            .clone();
        self.redis
            .query::<()>("telling status the upload rate", &command)
            .await
    }

    /// Forgets the pace an earlier sender wrote.
    pub(crate) async fn forget_rate(&self) -> Result<()> {
        let forget = redis::cmd("HDEL")
            .arg(self.keys.meta())
            .arg(&["rate", "rate_at"])
            .clone();
        self.redis
            .query::<()>("forgetting an earlier sender's pace", &forget)
            .await
    }

    /// How an earlier run cut `name` into pieces (`pieces size identity`).
    pub(crate) async fn recorded_split(&self, name: &str) -> Result<Option<String>> {
        self.redis
            .query(
                "reading a file's pieces",
                redis::cmd("HGET").arg(self.keys.split()).arg(name),
            )
            .await
    }

    /// Records how `name` is cut into pieces.
    pub(crate) async fn record_split(&self, name: &str, cut: &str) -> Result<()> {
        let record = redis::cmd("HSET")
            .arg(self.keys.split())
            .arg(name)
            .arg(cut)
            .clone();
        self.redis
            .query::<()>("recording a file's pieces", &record)
            .await
    }

    /// A protocol error about this channel's `meta`.
    pub(crate) fn protocol_error(&self, reason: String) -> Error {
        Error::Protocol {
            key: self.keys.meta(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
