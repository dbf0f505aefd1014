//! The receiver's side of the protocol: the scripts that settle a file
//! (CONSUME, ACK, FAILED, REQUEST, RELEASE), and the plain commands on
//! control keys a receiver sends (its announcements in `files`, a file's
//! record and upload log, `wanted`, its own `r:ID` counters).
//!
//! Each step is one method of [`Channel`] with named arguments, and its
//! answer is decoded here: callers never see a key name, a script or the
//! words a script answers with.

mod announcements;
mod records;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::LazyLock;

use redis::Script;

use super::script;
use crate::error::{Error, Result};
use crate::native::lease;
use crate::native::protocol::channel::{Channel, ReleasePlan};

pub(crate) use announcements::{Announced, Announcement, PendingFile, ReadFrom, Reader};
pub(crate) use records::{FileRecord, LogEntry, ReadingReport, StoredWhole, UploadEnd};

/// Records how many chunks of a file a receiver has consumed, so a sender
/// short of room may delete them before the file is finished.
/// `restart` 1 sets the position back (a receiver starting the file over).
/// KEYS: meta. ARGV: base, fid, receiver, chunks consumed, restart (0/1).
/// Returns 1, or 0 when the file's record is gone.
static CONSUME: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/consume.lua")));

/// Settles a file for one receiver (`done` or `parked`) and acknowledges
/// its announcement; `skip` only acknowledges (aborted or vanished files).
/// KEYS: meta. ARGV: base, fid, receiver, group, entry id, outcome, reason,
/// bytes, then for `done` what `status` shows of the receiver: now (Unix
/// ms) and its pace (bytes a second).
/// Returns the reclaim list: `{fid, freed, reserved, ...}`.
static ACK: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/ack.lua")));

/// Work queue: a worker failed a file, or it sat unacknowledged longer than
/// `min idle` with a worker that stopped responding. Counts the failure and
/// either queues the file again or parks it.
/// KEYS: meta. ARGV: base, fid, worker, entry id, min idle (ms), max failures, reason.
/// Returns `requeued`, `parked`, or `gone` (someone else already handled it).
static FAILED: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/failed.lua")));

/// A receiver (or worker) found chunks of a file gone from Redis before it
/// could read them: settles the file as `moved` for it and asks the sender,
/// through `wanted`, to upload the file again. A file read from a stream,
/// or already supplied again `max rounds` times, is parked instead.
/// KEYS: meta. ARGV: base, fid, receiver, group, entry id, max rounds, reason.
/// Returns `wanted`, `parked`, or `gone` (settled or vanished already).
static REQUEST: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/request.lua")));

/// Releases chunks `freed..upto` of a file after the caller deleted them,
/// and forgets the file once it is finished and fully deleted.
/// KEYS: meta. ARGV: base, fid, upto. Returns 1, or 0 when the file's
/// record is gone (it leaves `reclaim` then).
static RELEASE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/release.lua")));

/// One receiver's announcement of one file: what ACK and REQUEST settle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Delivery<'a> {
    pub fid: u64,
    /// The entry of `files` that announced it.
    pub entry: &'a str,
    /// Who it was delivered to.
    pub reader: Reader<'a>,
}

/// How far a receiver has read a file (CONSUME).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Consumption<'a> {
    pub fid: u64,
    pub receiver: &'a str,
    /// Chunks read from Redis so far.
    pub chunks: u64,
    /// Starting the file over: the position may go back.
    pub restart: bool,
}

/// CONSUME's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Consumed {
    Recorded,
    /// The file's record is gone: nothing to record against.
    NoRecord,
}

/// How a receiver settles a file with ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome<'a> {
    /// Processed: `bytes` go to the receiver's count; `rate`, its pace in
    /// bytes a second, is for `status`.
    Done { bytes: u64, rate: u64 },
    /// Given up on, for `status` to list with the reason.
    Parked { reason: &'a str },
    /// Only acknowledges the announcement: a marker, or a file that was
    /// abandoned, vanished, settled already, or is for other receivers.
    Skip,
}

impl Outcome<'_> {
    /// ACK's outcome, reason, bytes and report arguments.
    fn arguments(self) -> Vec<String> {
        match self {
            Outcome::Done { bytes, rate } => vec![
                "done".into(),
                String::new(),
                bytes.to_string(),
                (lease::now_ms() as u64).to_string(),
                rate.to_string(),
            ],
            Outcome::Parked { reason } => vec!["parked".into(), reason.to_owned(), "0".into()],
            Outcome::Skip => vec!["skip".into(), String::new(), "0".into()],
        }
    }
}

/// A worker's failure at a file, or a takeover from a silent worker (FAILED).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkFailure<'a> {
    pub fid: u64,
    /// The worker the file was handed to.
    pub worker: &'a str,
    pub entry: &'a str,
    /// How long the entry must have sat unacknowledged, in ms: 0 for a
    /// worker reporting its own failure.
    pub min_idle_ms: u64,
    /// Failures in all after which the file is parked.
    pub max_failures: u32,
    pub reason: &'a str,
}

/// FAILED's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Announced again for any worker.
    Requeued,
    /// Failed too often: parked.
    Parked,
    /// Someone else handled it already, or it is finished or gone.
    Gone,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failed::Requeued => "requeued",
            Failed::Parked => "parked",
            Failed::Gone => "gone",
        })
    }
}

/// REQUEST's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Requested {
    /// Settled as moved, and in `wanted` for the sender to upload again.
    Wanted,
    /// Cannot be uploaded again (a stream, or too many rounds): parked.
    Parked,
    /// Settled already, or its record is gone.
    Gone,
}

/// RELEASE's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// The chunks' bytes went back to the budget.
    Returned,
    /// The file's record is gone; it left `reclaim`.
    NoRecord,
}

impl Channel {
    /// CONSUME: records how far `consumption.receiver` has read a file.
    pub(crate) async fn consume(&self, consumption: Consumption<'_>) -> Result<Consumed> {
        let args = [
            consumption.fid.to_string(),
            consumption.receiver.to_owned(),
            consumption.chunks.to_string(),
            if consumption.restart { "1" } else { "0" }.to_owned(),
        ];
        let answer: i64 = self.run("reporting progress", &CONSUME, &args).await?;
        Ok(if answer == 1 {
            Consumed::Recorded
        } else {
            Consumed::NoRecord
        })
    }

    /// ACK: settles a delivered file and acknowledges its announcement.
    /// Returns what may be deleted now ([`Channel::reclaim`] does it).
    pub(crate) async fn ack(
        &self,
        delivery: Delivery<'_>,
        outcome: Outcome<'_>,
    ) -> Result<ReleasePlan> {
        let mut args = vec![
            delivery.fid.to_string(),
            delivery.reader.id.to_owned(),
            delivery.reader.group.to_owned(),
            delivery.entry.to_owned(),
        ];
        args.extend(outcome.arguments());
        let plan: Vec<String> = self.run("acknowledging a file", &ACK, &args).await?;
        ReleasePlan::parse(&self.keys.meta(), &plan)
    }

    /// FAILED: counts a worker's failure at a file; queues it again or parks it.
    pub(crate) async fn failed(&self, failure: WorkFailure<'_>) -> Result<Failed> {
        let what = if failure.min_idle_ms == 0 {
            "reporting a failure"
        } else {
            "taking over a stalled file"
        };
        let args = [
            failure.fid.to_string(),
            failure.worker.to_owned(),
            failure.entry.to_owned(),
            failure.min_idle_ms.to_string(),
            failure.max_failures.to_string(),
            failure.reason.to_owned(),
        ];
        let answer: String = self.run(what, &FAILED, &args).await?;
        match answer.as_str() {
            "requeued" => Ok(Failed::Requeued),
            "parked" => Ok(Failed::Parked),
            "gone" => Ok(Failed::Gone),
            _ => Err(self.strange_answer("FAILED", &answer)),
        }
    }

    /// REQUEST: the file's data left Redis before this receiver could read
    /// it; asks for it to be uploaded again (at most `max_rounds` times).
    pub(crate) async fn request_again(
        &self,
        delivery: Delivery<'_>,
        max_rounds: u32,
        reason: &str,
    ) -> Result<Requested> {
        let args = [
            delivery.fid.to_string(),
            delivery.reader.id.to_owned(),
            delivery.reader.group.to_owned(),
            delivery.entry.to_owned(),
            max_rounds.to_string(),
            reason.to_owned(),
        ];
        let answer: String = self.run("asking for a file again", &REQUEST, &args).await?;
        match answer.as_str() {
            "wanted" => Ok(Requested::Wanted),
            "parked" => Ok(Requested::Parked),
            "gone" => Ok(Requested::Gone),
            _ => Err(self.strange_answer("REQUEST", &answer)),
        }
    }

    /// RELEASE: returns the bytes of chunks below `upto` of a file to the
    /// budget, once they are deleted.
    pub(crate) async fn release(&self, fid: u64, upto: u64) -> Result<Released> {
        let args = [fid.to_string(), upto.to_string()];
        let answer: i64 = self.run("releasing chunks", &RELEASE, &args).await?;
        Ok(if answer == 1 {
            Released::Returned
        } else {
            Released::NoRecord
        })
    }

    fn strange_answer(&self, script: &str, answer: &str) -> Error {
        Error::Protocol {
            key: self.keys.meta(),
            reason: format!("{script} answered {answer:?}"),
        }
    }
}
