//! What `status` shows: each channel's files, memory held, receivers'
//! progress and parked files, read from the channel's control keys.

use serde::Serialize;

use crate::error::Result;
use crate::files::names;
use crate::native::lease;
use crate::native::protocol::channel::{Channel, ChunkCensus, Meta};
pub use crate::native::protocol::inspect::ParkedFile;
use crate::native::protocol::{Audience, Keys, inspect};
use crate::redis::Redis;
use crate::text::counted;

/// A sender's rate older than this is no rate: it uploaded nothing since
/// (it writes the rate at most once a second while uploading).
pub const RATE_FRESH_MS: u64 = 10_000;

/// A receiver's rate older than this is no rate either: it reports at
/// least every second while it reads, before each wait and after each
/// file, so one silent for the rate's whole window is idle or gone.
const RECEIVER_RATE_FRESH_MS: u64 = 60_000;

/// The state of one channel, as `status --json` prints it.
#[derive(Debug, Serialize)]
pub struct ChannelStatus {
    /// The channel's name.
    pub channel: String,
    /// When this status was read (Unix ms).
    pub time_ms: u64,
    /// `broadcast` or `workers`.
    pub mode: &'static str,
    /// Whether the sender set its end-of-input mark.
    pub ended: bool,
    /// The process running the channel's sender (`pid P on host H, for
    /// N s`), if one runs.
    pub sender: Option<String>,
    /// Since when that sender waits for room in the channel's budget (Unix
    /// ms; set once a wait lasted a second); [`ChannelStatus::awaited`]
    /// says for whom.
    pub sender_waiting_since_ms: Option<u64>,
    /// Files the sender announced.
    pub files_announced: u64,
    /// Files everyone who needed them finished.
    pub files_finished: u64,
    /// Files whose data may still be in Redis.
    pub files_in_flight: u64,
    /// Bytes of file data the channel currently holds in Redis.
    pub bytes_held: u64,
    /// The channel's budget in bytes.
    pub limit: u64,
    /// Bytes of the files uploaded completely, as they are on disk.
    pub bytes_sent: u64,
    /// Bytes a second the sender uploaded over the last minute; 0 when no
    /// sender runs, or it uploaded nothing in the last [`RATE_FRESH_MS`].
    pub rate_in: u64,
    /// Bytes a second the running receivers passed on, together.
    pub rate_out: u64,
    /// Seconds until the files uploaded so far are through, at `rate_out`
    /// (broadcast: the slowest receiver); `None` when nothing is left or
    /// someone who is behind is not moving.
    pub eta_seconds: Option<u64>,
    /// Bytes their chunks took in Redis (compressed).
    pub bytes_stored: u64,
    /// `bytes_sent / bytes_stored`: how many times more data the budget
    /// holds thanks to compression; absent before a file is uploaded.
    pub compression_ratio: Option<f64>,
    /// Every receiver or worker that joined.
    pub receivers: Vec<ReceiverStatus>,
    /// Files given up on.
    pub parked: Vec<ParkedFile>,
    /// Files sent in pieces (`send --split`), by name.
    pub split_files: Vec<SplitFile>,
    /// On a Redis Cluster, the bytes of the channel's chunks on each
    /// master (chunks spread by hash, not evenly); empty on one server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bytes_per_master: Vec<MasterBytes>,
    /// On a Redis Cluster, bytes of chunks on the masters that belong to
    /// files no receiver needs any more (a failover brought them back):
    /// part of `bytes_per_master`, not of `bytes_held`; the next `send` on
    /// the channel deletes them.
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_left_over: u64,
}

fn is_zero(bytes: &u64) -> bool {
    *bytes == 0
}

/// The bytes of a channel's chunks on one master of a cluster.
#[derive(Debug, Serialize)]
pub struct MasterBytes {
    /// `host:port` of the master.
    pub master: String,
    /// Bytes of chunk data it holds for the channel.
    pub bytes: u64,
}

/// One receiver (or worker) of a channel.
#[derive(Debug, Serialize)]
pub struct ReceiverStatus {
    /// Its `--id`.
    pub id: String,
    /// Files it acknowledged.
    pub files_done: u64,
    /// Bytes of the files it acknowledged.
    pub bytes_done: u64,
    /// Files it parked.
    pub files_parked: u64,
    /// Whether it ever joined the channel.
    pub joined: bool,
    /// The process running it (`pid P on host H, for N s`), if one runs:
    /// its lease lapses 15 s after the process stops renewing it, at once
    /// when it stopped cleanly or `status` runs on its host.
    pub process: Option<String>,
    /// Lines the aggregation job could not parse.
    pub lines_unparsed: u64,
    /// Broadcast: files announced that it has not finished yet.
    pub files_behind: Option<u64>,
    /// The last file it acknowledged.
    pub last_file: Option<String>,
    /// The file it is reading, as of its last progress report.
    pub current_file: Option<String>,
    /// How many bytes of that file it has passed on.
    pub bytes_into_current: Option<u64>,
    /// When it last reported progress or finished a file (Unix ms).
    pub last_seen_ms: Option<u64>,
    /// Bytes a second it passed on over the minute before that report.
    pub rate: u64,
    /// Broadcast: bytes of completely uploaded files it has not passed on
    /// yet (approximate: uploads again count twice).
    pub bytes_behind: Option<u64>,
    /// `bytes_behind / rate`, when both are known.
    pub eta_seconds: Option<u64>,
}

/// A file sent in pieces, and how far its pieces are.
#[derive(Debug, Serialize)]
pub struct SplitFile {
    /// The whole file's name.
    pub file: String,
    /// How many pieces it was cut into.
    pub pieces: u64,
    /// Pieces uploaded and no longer in flight: done, or parked.
    pub pieces_settled: u64,
}

impl ChannelStatus {
    /// Who the channel waits for, as a wait notice names them:
    /// `slow (3 files behind), b (never connected)`; for a work queue, the
    /// files in flight.
    pub fn awaited(&self) -> String {
        if self.mode == "workers" {
            return format!(
                "workers ({} in flight)",
                counted(self.files_in_flight, "file", "files")
            );
        }
        let behind: Vec<String> = self
            .receivers
            .iter()
            .filter_map(|r| match (r.joined, r.files_behind.unwrap_or(0)) {
                (false, _) => Some(format!("{} (never connected)", r.id)),
                (true, 0) => None,
                (true, n) => Some(format!("{} ({} behind)", r.id, counted(n, "file", "files"))),
            })
            .collect();
        if behind.is_empty() {
            "receivers to release what they read".into()
        } else {
            behind.join(", ")
        }
    }
}

/// Names of all channels under `prefix`, sorted.
pub async fn channels(redis: &Redis, prefix: &str) -> Result<Vec<String>> {
    inspect::channel_names(redis, prefix).await
}

/// Gathers the status of one channel; `None` when it does not exist.
pub async fn channel_status(
    redis: &Redis,
    prefix: &str,
    name: &str,
) -> Result<Option<ChannelStatus>> {
    status_of(redis, prefix, name, Census::Taken).await
}

/// [`channel_status`] without the census of chunks on a Redis Cluster (a
/// scan of every master), for what reads it every few seconds.
pub async fn channel_backlog(
    redis: &Redis,
    prefix: &str,
    name: &str,
) -> Result<Option<ChannelStatus>> {
    status_of(redis, prefix, name, Census::Skipped).await
}

/// Whether a status counts the chunks on each master.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Census {
    Taken,
    Skipped,
}

async fn status_of(
    redis: &Redis,
    prefix: &str,
    name: &str,
    census: Census,
) -> Result<Option<ChannelStatus>> {
    names::check_channel_name(name)?;
    let channel = Channel::new(redis.clone(), Keys::new(prefix, name));
    let Some(meta) = channel.meta().await? else {
        return Ok(None);
    };
    let overview = channel.overview().await?;
    let in_flight = in_flight_bytes(&channel, &overview.active).await?;
    let now = lease::now_ms() as u64;
    let reading = Reading::new(&channel, &meta, in_flight.uploading, now);
    let mut receivers = Vec::new();
    for id in receiver_ids(&meta.audience, &overview.members) {
        let joined = overview.members.contains(&id);
        receivers.push(reading.receiver(id, joined).await?);
    }
    let split_files = split_files(&channel, &overview.active).await?;
    let census = leftover_census(&channel, census).await?;
    let sender = lease::holder_of(&channel, "sender").await?;
    let rate_out = receivers
        .iter()
        .filter(|r| r.process.is_some())
        .map(|r| r.rate)
        .sum();
    let broadcast = matches!(meta.audience, Audience::Broadcast(_));
    Ok(Some(ChannelStatus {
        files_in_flight: overview.active.len() as u64,
        rate_out,
        eta_seconds: eta(broadcast, &receivers, in_flight.total, rate_out),
        receivers,
        parked: overview.parked,
        split_files,
        bytes_left_over: census.leftover_bytes(),
        bytes_per_master: census
            .per_master
            .into_iter()
            .map(|(master, bytes)| MasterBytes { master, bytes })
            .collect(),
        ..ChannelStatus::of_meta(name, now, &meta, sender)
    }))
}

impl ChannelStatus {
    /// What `meta` and the sender's lease say; nothing yet of receivers,
    /// files in flight or chunks.
    fn of_meta(name: &str, now: u64, meta: &Meta, sender: Option<String>) -> Self {
        let rate_fresh = now.saturating_sub(meta.number("rate_at")) <= RATE_FRESH_MS;
        let stored = meta.number("stored");
        ChannelStatus {
            channel: name.to_owned(),
            time_ms: now,
            mode: meta.audience.mode(),
            ended: meta.ended,
            sender_waiting_since_ms: (meta.number("waiting") > 0)
                .then(|| meta.number("waiting"))
                .filter(|_| sender.is_some()),
            rate_in: match sender {
                Some(_) if rate_fresh => meta.number("rate"),
                _ => 0,
            },
            sender,
            files_announced: meta.number("announced"),
            files_finished: meta.number("finished"),
            files_in_flight: 0,
            bytes_held: meta.number("held"),
            limit: meta.number("limit"),
            bytes_sent: meta.number("original"),
            rate_out: 0,
            eta_seconds: None,
            bytes_stored: stored,
            compression_ratio: (stored > 0).then(|| meta.number("original") as f64 / stored as f64),
            receivers: Vec::new(),
            parked: Vec::new(),
            split_files: Vec::new(),
            bytes_per_master: Vec::new(),
            bytes_left_over: 0,
        }
    }
}

/// Whose status to show: a broadcast's named receivers, a work queue's
/// workers that joined; sorted.
fn receiver_ids(audience: &Audience, members: &[String]) -> Vec<String> {
    let mut ids = match audience {
        Audience::Broadcast(ids) => ids.clone(),
        Audience::Workers => members.to_vec(),
    };
    ids.sort();
    ids.dedup();
    ids
}

/// On a Redis Cluster, when taken, the channel's chunks on each master and
/// those left over; on one server, where no failover brings chunks back,
/// nothing (a scan of the whole key space is not worth its cost).
async fn leftover_census(channel: &Channel, census: Census) -> Result<ChunkCensus> {
    if channel.redis.is_cluster() && census == Census::Taken {
        channel.chunk_census().await
    } else {
        Ok(ChunkCensus::default())
    }
}

/// What every receiver's status is measured against.
struct Reading<'a> {
    channel: &'a Channel,
    audience: &'a Audience,
    /// Bytes of the files uploaded so far, finished or not.
    uploaded: u64,
    /// Files announced for the first time: uploads again are owed only to
    /// the receivers they are for.
    first_uploads: u64,
    now: u64,
}

impl<'a> Reading<'a> {
    fn new(channel: &'a Channel, meta: &'a Meta, uploading: u64, now: u64) -> Self {
        let again = meta.number("resupplied") + meta.number("aborted");
        Reading {
            channel,
            audience: &meta.audience,
            uploaded: meta.number("original") + uploading,
            first_uploads: meta.number("announced").saturating_sub(again),
            now,
        }
    }

    /// The status of receiver `id`, which `joined` the channel or not.
    async fn receiver(&self, id: String, joined: bool) -> Result<ReceiverStatus> {
        let counters = self.channel.receiver_counters(&id).await?;
        let broadcast = matches!(self.audience, Audience::Broadcast(_));
        let into = counters.current.as_ref().map(|_| counters.at);
        let behind = broadcast.then(|| {
            self.uploaded
                .saturating_sub(counters.bytes + into.unwrap_or(0))
        });
        // A rate last said long ago is no rate: the receiver is idle.
        let fresh = counters
            .seen
            .is_some_and(|seen| self.now.saturating_sub(seen) <= RECEIVER_RATE_FRESH_MS);
        let rate = if fresh { counters.rate } else { 0 };
        let settled = counters.files + counters.parked + counters.moved;
        let role = lease::role_of(self.audience, &id).0;
        Ok(ReceiverStatus {
            joined,
            process: lease::holder_of(self.channel, &role).await?,
            files_behind: broadcast
                .then(|| (self.first_uploads + counters.owed).saturating_sub(settled)),
            id,
            files_done: counters.files,
            bytes_done: counters.bytes,
            files_parked: counters.parked,
            lines_unparsed: counters.unparsed,
            last_file: counters.last,
            current_file: counters.current,
            bytes_into_current: into,
            last_seen_ms: counters.seen,
            rate,
            bytes_behind: behind,
            eta_seconds: behind.filter(|_| rate > 0).map(|b| b / rate),
        })
    }
}

/// The files of the channel sent in pieces. A piece is settled once its
/// upload record (`sent`) says it was uploaded, its file id is no longer
/// `active`, and no receiver asked for it again (`wanted`).
async fn split_files(channel: &Channel, active: &[u64]) -> Result<Vec<SplitFile>> {
    let mut files = Vec::new();
    for record in channel.split_records().await? {
        let names: Vec<String> = (1..=record.pieces)
            .map(|i| format!("{}#{i}", record.file))
            .collect();
        let uploaded = channel.pieces_uploaded(&names).await?;
        files.push(SplitFile {
            file: record.file,
            pieces: record.pieces,
            pieces_settled: uploaded.iter().filter(|fid| !active.contains(fid)).count() as u64,
        });
    }
    files.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(files)
}

/// Bytes of the files in flight (see [`in_flight_bytes`]).
struct InFlight {
    /// Published so far of the files still being uploaded (the channel's
    /// `original` counts a file once uploaded).
    uploading: u64,
    /// Of every file in flight: its size once uploaded, else what was
    /// published of it.
    total: u64,
}

async fn in_flight_bytes(channel: &Channel, active: &[u64]) -> Result<InFlight> {
    let mut found = InFlight {
        uploading: 0,
        total: 0,
    };
    for file in channel.in_flight_records(active).await? {
        if file.uploading {
            found.uploading += file.published;
        }
        found.total += file.size.unwrap_or(file.published);
    }
    Ok(found)
}

/// See [`ChannelStatus::eta_seconds`]. `in_flight`: bytes of the files
/// not finished yet.
fn eta(
    broadcast: bool,
    receivers: &[ReceiverStatus],
    in_flight: u64,
    rate_out: u64,
) -> Option<u64> {
    if broadcast {
        let behind = receivers.iter().filter(|r| r.bytes_behind.unwrap_or(0) > 0);
        // A receiver that is not running is not moving, whatever it said last.
        let etas: Option<Vec<u64>> = behind
            .map(|r| r.process.as_ref().and(r.eta_seconds))
            .collect();
        etas?.into_iter().max()
    } else {
        // Each file in flight is some worker's, or waits for one.
        let through: u64 = receivers
            .iter()
            .map(|r| r.bytes_into_current.unwrap_or(0))
            .sum();
        let left = in_flight.saturating_sub(through);
        (left > 0 && rate_out > 0).then(|| left / rate_out)
    }
}

/// Files of a channel given up on, by file then receiver.
pub(crate) async fn parked_files(redis: &Redis, keys: &Keys) -> Result<Vec<ParkedFile>> {
    Channel::new(redis.clone(), keys.clone())
        .parked_files()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(running: bool, done: u64, into: u64, behind: u64, rate: u64) -> ReceiverStatus {
        ReceiverStatus {
            id: "r".into(),
            files_done: 0,
            bytes_done: done,
            files_parked: 0,
            joined: true,
            process: running.then(|| "pid 1".into()),
            lines_unparsed: 0,
            files_behind: None,
            last_file: None,
            current_file: None,
            bytes_into_current: Some(into),
            last_seen_ms: None,
            rate,
            bytes_behind: Some(behind),
            eta_seconds: (rate > 0).then(|| behind / rate.max(1)),
        }
    }

    #[test]
    fn a_broadcast_ends_with_its_slowest_receiver_unless_one_behind_is_not_moving() {
        let fast = receiver(true, 0, 0, 100, 50);
        let slow = receiver(true, 0, 0, 100, 10);
        let through = receiver(false, 0, 0, 0, 0);
        assert_eq!(eta(true, &[fast, slow, through], 0, 60), Some(10));
        let stopped = receiver(false, 0, 0, 100, 10);
        let fast = receiver(true, 0, 0, 100, 50);
        assert_eq!(eta(true, &[fast, stopped], 0, 50), None);
        assert_eq!(eta(true, &[receiver(true, 0, 0, 0, 5)], 0, 5), None);
    }

    #[test]
    fn a_work_queue_ends_when_its_workers_together_get_through_what_is_left() {
        // Files in flight hold 1900 bytes; one worker is 100 into its file.
        let workers = [
            receiver(true, 300, 100, 0, 20),
            receiver(true, 500, 0, 0, 30),
        ];
        assert_eq!(eta(false, &workers, 1900, 50), Some(36));
        assert_eq!(eta(false, &workers, 100, 50), None, "nothing left");
        assert_eq!(eta(false, &workers, 0, 50), None, "nothing in flight");
        assert_eq!(eta(false, &workers, 1900, 0), None, "nothing moves");
    }
}
