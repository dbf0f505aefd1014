//! What `status` shows: each channel's files, memory held, receivers'
//! progress and parked files, read from the channel's control keys.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::files::names;
use crate::native::channel::{Channel, ChunkCensus};
use crate::native::lease;
use crate::native::protocol::{Audience, Keys};
use crate::redis::Redis;
use crate::text::counted;

/// A sender's rate older than this is no rate: it uploaded nothing since
/// (it writes the rate at most once a second while uploading).
pub const RATE_FRESH_MS: u64 = 10_000;

/// A receiver's rate older than this is no rate either: it reports at
/// least before each wait and after each file, so one silent for the
/// rate's whole window is idle or gone.
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

/// A file given up on.
#[derive(Debug, Serialize)]
pub struct ParkedFile {
    /// The file's name.
    pub file: String,
    /// Who gave up on it.
    pub receiver: String,
    /// Why, as the last failure said.
    pub reason: String,
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
    let key = Keys::new(prefix, "-").channels();
    let mut names: Vec<String> = redis
        .query("listing channels", redis::cmd("SMEMBERS").arg(&key))
        .await?;
    names.sort();
    Ok(names)
}

/// Gathers the status of one channel; `None` when it does not exist.
pub async fn channel_status(
    redis: &Redis,
    prefix: &str,
    name: &str,
) -> Result<Option<ChannelStatus>> {
    names::check_channel_name(name)?;
    let channel = Channel::new(redis.clone(), Keys::new(prefix, name));
    let Some(meta) = channel.meta().await? else {
        return Ok(None);
    };
    let keys = &channel.keys;
    let (active, parked, members): (Vec<u64>, HashMap<String, Vec<u8>>, Vec<String>) = redis
        .query_pipe(
            "reading channel status",
            redis::pipe()
                .zrange(keys.active(), 0, -1)
                .hgetall(keys.parked())
                .smembers(keys.members()),
        )
        .await?;
    let in_flight = in_flight_bytes(redis, keys, &active).await?;
    let uploaded = meta.number("original") + in_flight.uploading;
    let now = lease::now_ms() as u64;
    let mut ids = match &meta.audience {
        Audience::Broadcast(ids) => ids.clone(),
        Audience::Workers => members.clone(),
    };
    ids.sort();
    ids.dedup();
    let announced = meta.number("announced");
    // Uploads again are owed only to the receivers they are for.
    let first_uploads =
        announced.saturating_sub(meta.number("resupplied") + meta.number("aborted"));
    let mut receivers = Vec::new();
    for id in ids {
        let fields: HashMap<String, String> = redis
            .query(
                "reading receiver status",
                redis::cmd("HGETALL").arg(keys.receiver(&id)),
            )
            .await?;
        let number = |f: &str| fields.get(f).and_then(|v| v.parse().ok()).unwrap_or(0u64);
        let (done, parked_files) = (number("files"), number("parked"));
        let broadcast = matches!(meta.audience, Audience::Broadcast(_));
        let current_file = fields.get("current").cloned();
        let into = current_file.as_ref().map(|_| number("at"));
        let behind =
            broadcast.then(|| uploaded.saturating_sub(number("bytes") + into.unwrap_or(0)));
        // A rate last said long ago is no rate: the receiver is idle.
        let seen = fields.get("seen").and_then(|v| v.parse::<u64>().ok());
        let fresh = seen.is_some_and(|seen| now.saturating_sub(seen) <= RECEIVER_RATE_FRESH_MS);
        let rate = if fresh { number("rate") } else { 0 };
        let settled = done + parked_files + number("moved");
        let process = lease::holder_of(&channel, &lease::role_of(&meta.audience, &id).0).await?;
        receivers.push(ReceiverStatus {
            joined: members.contains(&id),
            process,
            files_behind: broadcast
                .then(|| (first_uploads + number("owed")).saturating_sub(settled)),
            id,
            files_done: done,
            bytes_done: number("bytes"),
            files_parked: parked_files,
            lines_unparsed: number("unparsed"),
            last_file: fields.get("last").cloned(),
            current_file,
            bytes_into_current: into,
            last_seen_ms: seen,
            rate,
            bytes_behind: behind,
            eta_seconds: behind.filter(|_| rate > 0).map(|b| b / rate),
        });
    }
    let parked = parse_parked(parked);
    let split_files = split_files(redis, keys, &active).await?;
    // On one server, no failover brings chunks back, and a scan of the
    // whole key space is not worth its cost.
    let census = if redis.is_cluster() {
        channel.chunk_census().await?
    } else {
        ChunkCensus::default()
    };
    let sender = lease::holder_of(&channel, "sender").await?;
    let rate_fresh = now.saturating_sub(meta.number("rate_at")) <= RATE_FRESH_MS;
    let rate_in = match sender {
        Some(_) if rate_fresh => meta.number("rate"),
        _ => 0,
    };
    let rate_out = receivers
        .iter()
        .filter(|r| r.process.is_some())
        .map(|r| r.rate)
        .sum();
    let broadcast = matches!(meta.audience, Audience::Broadcast(_));
    let eta_seconds = eta(broadcast, &receivers, in_flight.total, rate_out);
    Ok(Some(ChannelStatus {
        channel: name.to_owned(),
        time_ms: now,
        mode: meta.audience.mode(),
        ended: meta.ended,
        sender_waiting_since_ms: (meta.number("waiting") > 0)
            .then(|| meta.number("waiting"))
            .filter(|_| sender.is_some()),
        sender,
        files_announced: announced,
        files_finished: meta.number("finished"),
        files_in_flight: active.len() as u64,
        bytes_held: meta.number("held"),
        limit: meta.number("limit"),
        bytes_sent: meta.number("original"),
        rate_in,
        rate_out,
        eta_seconds,
        bytes_stored: meta.number("stored"),
        compression_ratio: (meta.number("stored") > 0)
            .then(|| meta.number("original") as f64 / meta.number("stored") as f64),
        receivers,
        parked,
        split_files,
        bytes_left_over: census.leftover_bytes(),
        bytes_per_master: census
            .per_master
            .into_iter()
            .map(|(master, bytes)| MasterBytes { master, bytes })
            .collect(),
    }))
}

/// The files of the channel sent in pieces. A piece is settled once its
/// upload record (`sent`) says it was uploaded, its file id is no longer
/// `active`, and no receiver asked for it again (`wanted`).
async fn split_files(redis: &Redis, keys: &Keys, active: &[u64]) -> Result<Vec<SplitFile>> {
    let split: HashMap<String, String> = redis
        .query(
            "reading files sent in pieces",
            redis::cmd("HGETALL").arg(keys.split()),
        )
        .await?;
    let mut files = Vec::with_capacity(split.len());
    for (file, cut) in split {
        let pieces: u64 = cut
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let names: Vec<String> = (1..=pieces).map(|i| format!("{file}#{i}")).collect();
        let (records, wanted): (Vec<Option<String>>, Vec<Option<String>>) = redis
            .query_pipe(
                "reading pieces",
                redis::pipe()
                    .cmd("HMGET")
                    .arg(keys.sent())
                    .arg(&names)
                    .cmd("HMGET")
                    .arg(keys.wanted())
                    .arg(&names),
            )
            .await?;
        let settled = records
            .iter()
            .zip(&wanted)
            .filter(|(_, wanted)| wanted.is_none())
            .filter_map(|(record, _)| record.as_deref()?.strip_suffix(" sent"))
            .filter_map(|record| record.split(' ').next()?.parse::<u64>().ok())
            .filter(|fid| !active.contains(fid))
            .count() as u64;
        files.push(SplitFile {
            file,
            pieces,
            pieces_settled: settled,
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

async fn in_flight_bytes(redis: &Redis, keys: &Keys, active: &[u64]) -> Result<InFlight> {
    let mut found = InFlight {
        uploading: 0,
        total: 0,
    };
    if active.is_empty() {
        return Ok(found);
    }
    let mut pipe = redis::pipe();
    for &fid in active {
        pipe.cmd("HMGET")
            .arg(keys.file(fid))
            .arg("state")
            .arg("offset")
            .arg("size");
    }
    let files: Vec<(Option<String>, Option<u64>, Option<u64>)> =
        redis.query_pipe("reading files in flight", &pipe).await?;
    for (state, offset, size) in files {
        let published = offset.unwrap_or(0);
        if state.as_deref() == Some("uploading") {
            found.uploading += published;
        }
        found.total += size.unwrap_or(published);
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
    let fields: HashMap<String, Vec<u8>> = redis
        .query(
            "reading parked files",
            redis::cmd("HGETALL").arg(keys.parked()),
        )
        .await?;
    Ok(parse_parked(fields))
}

/// The `parked` hash's fields are `fid:receiver`, its values `name<TAB>reason`
/// (a poison file's name may not be UTF-8: it is shown lossily).
fn parse_parked(fields: HashMap<String, Vec<u8>>) -> Vec<ParkedFile> {
    let mut parked: Vec<ParkedFile> = fields
        .into_iter()
        .map(|(key, value)| {
            let value = String::from_utf8_lossy(&value);
            let receiver = key
                .split_once(':')
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            let (file, reason) = value.split_once('\t').unwrap_or((&value, ""));
            ParkedFile {
                file: file.to_owned(),
                receiver,
                reason: reason.to_owned(),
            }
        })
        .collect();
    parked.sort_by(|a, b| (&a.file, &a.receiver).cmp(&(&b.file, &b.receiver)));
    parked
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
