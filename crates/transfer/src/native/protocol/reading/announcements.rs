//! A receiver's reads of the `files` stream through its consumer group,
//! the work queue's claims on its entries, and joining a channel.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::streams::{StreamId, StreamInfoGroupsReply, StreamRangeReply, StreamReadReply};

use crate::error::Result;
use crate::native::protocol::channel::Channel;

/// Who reads `files`: a consumer of a consumer group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    /// `r:ID` in a broadcast, `workers` in a work queue.
    pub group: &'a str,
    /// The receiver's or worker's id.
    pub id: &'a str,
}

/// Where a read of `files` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// Entries delivered to us and not acknowledged yet, oldest first.
    Pending,
    /// Entries never delivered to anyone of the group.
    New,
}

/// One entry of `files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// The entry's id, which ACK and FAILED acknowledge.
    pub entry: String,
    pub announced: Announced,
}

/// What an entry of `files` announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Announced {
    /// File `fid` (`kind=file`).
    File(u64),
    /// The sender's end-of-input mark (`kind=eof`).
    EndOfInput,
    /// Any other kind: nothing to do but acknowledge it.
    Marker,
    /// A `file` entry without a valid file id (poison).
    Malformed,
}

impl Announcement {
    fn decode(entry: StreamId) -> Announcement {
        let kind: String = entry.get("kind").unwrap_or_default();
        let announced = match kind.as_str() {
            "file" => match fid_of(&entry) {
                Some(fid) => Announced::File(fid),
                None => Announced::Malformed,
            },
            "eof" => Announced::EndOfInput,
            _ => Announced::Marker,
        };
        Announcement {
            entry: entry.id,
            announced,
        }
    }
}

/// One read of `files`.
#[derive(Debug)]
pub(crate) struct AnnouncementRead {
    /// Oldest first.
    pub announcements: Vec<Announcement>,
    /// The read was cut short (a wait) or had to be sent again: a read
    /// whose reply was lost with a connection may still have delivered an
    /// entry, which then waits among our pending ones and must be handled
    /// before anything newer.
    pub cut_short: bool,
}

/// A file announced to us and not acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingFile {
    pub entry: String,
    pub fid: u64,
}

/// An entry a worker holds unacknowledged for too long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StaleClaim {
    pub entry: String,
    pub worker: String,
}

fn fid_of(entry: &StreamId) -> Option<u64> {
    entry.get::<String>("fid")?.parse().ok()
}

impl Channel {
    /// Reads up to `count` announcements, blocking up to `block` for new
    /// ones.
    pub(crate) async fn read_announcements(
        &self,
        reader: Reader<'_>,
        from: ReadFrom,
        count: usize,
        block: Option<Duration>,
    ) -> Result<AnnouncementRead> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(reader.group)
            .arg(reader.id)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            command.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        let start = match from {
            ReadFrom::Pending => "0",
            ReadFrom::New => ">",
        };
        command.arg("STREAMS").arg(self.keys.files()).arg(start);
        let (reply, cut_short): (Option<StreamReadReply>, bool) = if block.is_some() {
            match self.redis.wait("waiting for files", &command).await? {
                Some(reply) => (reply, false),
                None => (None, true),
            }
        } else {
            let attempts = AtomicU32::new(0);
            let reply = self
                .redis
                .keep_trying("reading announcements", |mut con| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let command = &command;
                    async move { command.query_async(&mut con).await }
                })
                .await?;
            (reply, attempts.into_inner() > 1)
        };
        let announcements = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(Announcement::decode)
            .collect();
        Ok(AnnouncementRead {
            announcements,
            cut_short,
        })
    }

    /// Our pending announcements of files, oldest first.
    pub(crate) async fn pending_files(&self, reader: Reader<'_>) -> Result<Vec<PendingFile>> {
        let reply: Option<StreamReadReply> = self
            .redis
            .query(
                "reading announcements",
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(reader.group)
                    .arg(reader.id)
                    .arg("STREAMS")
                    .arg(self.keys.files())
                    .arg("0"),
            )
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|entry| {
                let fid = fid_of(&entry)?;
                Some(PendingFile {
                    entry: entry.id,
                    fid,
                })
            })
            .collect())
    }

    /// Blocks up to `block` for the channel's first announcement: the
    /// channel may exist then.
    pub(crate) async fn wait_for_announcements(&self, block: Duration) -> Result<()> {
        self.redis
            .wait::<redis::Value>(
                "waiting for the channel",
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(block.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(self.keys.files())
                    .arg("0-0"),
            )
            .await?;
        Ok(())
    }

    /// Adds a receiver or worker to `members`, for `status`.
    pub(crate) async fn join_members(&self, id: &str) -> Result<()> {
        self.redis
            .query(
                "registering the receiver",
                redis::cmd("SADD").arg(self.keys.members()).arg(id),
            )
            .await
    }

    /// Broadcast: whether `group` has nothing pending and was delivered
    /// the newest announcement (or there is none).
    pub(crate) async fn read_everything(&self, group: &str) -> Result<bool> {
        let files = self.keys.files();
        let ((pending, ..), groups, newest): (
            (u64, redis::Value, redis::Value, redis::Value),
            StreamInfoGroupsReply,
            StreamRangeReply,
        ) = self
            .redis
            .query_pipe(
                "checking progress",
                redis::pipe()
                    .cmd("XPENDING")
                    .arg(&files)
                    .arg(group)
                    .cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&files)
                    .cmd("XREVRANGE")
                    .arg(&files)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let delivered = groups
            .groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| stream_id(&g.last_delivered_id));
        let newest = newest.ids.first().map(|e| stream_id(&e.id));
        Ok(pending == 0 && newest <= delivered)
    }

    /// How many files may still have data in Redis (`active`).
    pub(crate) async fn files_in_flight(&self) -> Result<u64> {
        self.redis
            .query(
                "checking progress",
                redis::cmd("ZCARD").arg(self.keys.active()),
            )
            .await
    }

    /// Work queue: up to 16 entries held unacknowledged longer than
    /// `min_idle`.
    pub(crate) async fn stale_claims(&self, min_idle: Duration) -> Result<Vec<StaleClaim>> {
        let stale: Vec<(String, String, u64, u64)> = self
            .redis
            .query(
                "looking for stalled files",
                redis::cmd("XPENDING")
                    .arg(self.keys.files())
                    .arg("workers")
                    .arg("IDLE")
                    .arg(min_idle.as_millis() as u64)
                    .arg("-")
                    .arg("+")
                    .arg(16),
            )
            .await?;
        Ok(stale
            .into_iter()
            .map(|(entry, worker, ..)| StaleClaim { entry, worker })
            .collect())
    }

    /// The file an entry of `files` announces; `None` for a marker or an
    /// entry that is gone.
    pub(crate) async fn announced_file(&self, entry: &str) -> Result<Option<u64>> {
        let found: StreamRangeReply = self
            .redis
            .query(
                "reading an announcement",
                redis::cmd("XRANGE")
                    .arg(self.keys.files())
                    .arg(entry)
                    .arg(entry),
            )
            .await?;
        Ok(found.ids.first().and_then(fid_of))
    }

    /// Work queue: keeps a worker's claim on an entry fresh (`XCLAIM` with
    /// no minimum idle time), so nobody takes the file over.
    pub(crate) async fn refresh_claim(&self, worker: &str, entry: &str) -> Result<()> {
        self.redis
            .query::<redis::Value>(
                "refreshing a claim",
                redis::cmd("XCLAIM")
                    .arg(self.keys.files())
                    .arg("workers")
                    .arg(worker)
                    .arg(0)
                    .arg(entry)
                    .arg("JUSTID"),
            )
            .await?;
        Ok(())
    }
}

/// A stream entry id (`ms-seq`) as numbers, to compare ids.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
