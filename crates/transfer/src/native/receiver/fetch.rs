//! Streaming one file's chunks from Redis into its [`IncomingFile`] as they
//! are published: a few reads in flight, each chunk checked against its
//! published digest before any of its bytes go further, restored one chunk
//! ahead on the blocking pool, and size and digest of the whole file
//! verified at the end. Errors travel as `io::Error`s to the reader.
//!
//! [`IncomingFile`]: crate::files::incoming::IncomingFile

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::LONGEST_WAIT;
use super::upload_log::UploadLog;
use crate::error::{Error, Result};
use crate::files::incoming::AbortOnDrop;
use crate::native::chunk;
use crate::native::notice::WaitNotice;
use crate::native::protocol::channel::Channel;
use crate::native::protocol::reading::{Consumption, ReadingReport, UploadEnd};
use crate::native::rate::RateMeter;
use crate::telemetry;

/// Chunk reads kept in flight while streaming a file.
const PREFETCH: usize = 4;
/// Consumption is reported every this many chunks, at least every
/// [`REPORT_AT_LEAST_EVERY`], and whenever the receiver catches up with
/// the upload (which is when a sender waiting for room needs to know).
const REPORT_EVERY: u64 = 8;
/// So that `status` is never far behind a receiver's own progress bar,
/// however slowly chunks come.
const REPORT_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// The file to fetch.
pub(super) struct FileToFetch {
    pub fid: u64,
    pub name: String,
    /// The allocation of each chunk, which bounds its size.
    pub slot: u64,
}

/// A fetch under way: what the file's reader reads and watches.
pub(super) struct Fetching {
    /// The file's original bytes, or the error that stopped the fetch.
    pub chunks: mpsc::Receiver<io::Result<Bytes>>,
    /// Set once size and digest of the whole file matched.
    pub verified: Arc<AtomicBool>,
    /// Set when chunks are gone from Redis (or stay damaged).
    pub gone: Arc<AtomicBool>,
    /// The task fetching, stopped when the file is dropped; none for a
    /// file that came whole.
    pub task: Option<AbortOnDrop>,
}

/// Streams one file's chunks from Redis into a channel.
pub(super) struct Fetch {
    channel: Channel,
    receiver: String,
    fid: u64,
    name: String,
    slot: u64,
    verified: Arc<AtomicBool>,
    /// Set when chunks are gone from Redis (or stay damaged): the file is
    /// then asked for again instead of counting as a failure.
    gone: Arc<AtomicBool>,
    rate: Arc<RateMeter>,
    /// Bytes of this file counted into `rate` so far.
    rated: AtomicU64,
}

/// A chunk as read from Redis.
enum Fetched {
    /// It matched its digest.
    Verified(Bytes),
    /// Not checked yet: its digest was not known, or did not match.
    Unchecked(Bytes),
    /// Not in Redis.
    Missing,
}

/// How far through the file's chunks we are.
#[derive(Default)]
struct Position {
    /// Chunks whose reads were started.
    requested: u64,
    /// Chunks read and checked.
    consumed: u64,
    /// Chunks reported consumed (CONSUME).
    reported: u64,
    /// When they were last reported.
    reported_at: Option<Instant>,
}

impl Position {
    /// Whether to report now: every [`REPORT_EVERY`] chunks, and at least
    /// every [`REPORT_AT_LEAST_EVERY`].
    fn report_due(&self) -> bool {
        self.consumed.is_multiple_of(REPORT_EVERY)
            || self
                .reported_at
                .is_none_or(|at| at.elapsed() >= REPORT_AT_LEAST_EVERY)
    }
}

impl Fetch {
    /// Starts fetching `file` for `receiver`, adding its pace to `rate`.
    pub fn start(
        channel: &Channel,
        receiver: &str,
        file: FileToFetch,
        rate: &Arc<RateMeter>,
    ) -> Fetching {
        let (sender, chunks) = mpsc::channel(PREFETCH);
        let verified = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(AtomicBool::new(false));
        let fetch = Fetch {
            channel: channel.clone(),
            receiver: receiver.to_owned(),
            fid: file.fid,
            name: file.name,
            slot: file.slot,
            verified: verified.clone(),
            gone: gone.clone(),
            rate: rate.clone(),
            rated: AtomicU64::new(0),
        };
        Fetching {
            chunks,
            verified,
            gone,
            task: Some(AbortOnDrop(tokio::spawn(fetch.run(sender)))),
        }
    }

    async fn run(self, out: mpsc::Sender<io::Result<Bytes>>) {
        if let Err(error) = self.stream(&out).await {
            let _ = out
                .send(Err(io::Error::new(io::ErrorKind::InvalidData, error)))
                .await;
        }
    }

    async fn stream(&self, out: &mpsc::Sender<io::Result<Bytes>>) -> Result<()> {
        let mut log = UploadLog::new(self.fid);
        // Reading from the start: our old position must not let a sender
        // delete chunks we are about to read again.
        self.report(0, true, 0).await?;
        log.follow(&self.channel, None).await?;
        match self.pass_on_chunks(&mut log, out).await? {
            Some(delivered) => self.verify(delivered, &log),
            None => Ok(()), // the reader went away; nothing to verify for
        }
    }

    /// Passes on every chunk of the file, in order, as it is published.
    /// `None` when the reader went away.
    async fn pass_on_chunks<'a>(
        &self,
        log: &mut UploadLog,
        out: &'a mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<Option<Delivered<'a>>> {
        let mut delivered = Delivered::new(out);
        // The fetch began with a report (CONSUME's restart).
        let mut at = Position {
            reported_at: Some(Instant::now()),
            ..Position::default()
        };
        let mut in_flight = FuturesOrdered::new();
        let mut waiting = WaitNotice::new();
        loop {
            if let Some(reason) = &log.aborted {
                return Err(self.corrupt(format!("the sender abandoned it: {reason}")));
            }
            while in_flight.len() < PREFETCH && at.requested < log.published {
                in_flight.push_back(self.get_checked_chunk(at.requested, log.digest(at.requested)));
                at.requested += 1;
            }
            let Some(fetched) = in_flight.next().await else {
                if !delivered.flush().await? {
                    return Ok(None);
                }
                if log.end.is_some() {
                    return Ok(Some(delivered));
                }
                self.wait_for_more(log, &mut at, delivered.received, &mut waiting)
                    .await?;
                continue;
            };
            waiting.over();
            let data = match self.checked(fetched, at.consumed, log).await {
                Ok(data) => data,
                Err(error) => {
                    // What was verified before still goes out.
                    delivered.flush().await?;
                    return Err(error);
                }
            };
            at.consumed += 1;
            if at.report_due() {
                self.report(at.consumed, false, delivered.received).await?;
                at.reported = at.consumed;
                at.reported_at = Some(Instant::now());
            }
            if !delivered.restore(self.restore(data)).await? {
                return Ok(None);
            }
        }
    }

    /// Everything published is passed on: reports how far we are (a
    /// sender short of room may free what we consumed), and waits for the
    /// upload to go on.
    async fn wait_for_more(
        &self,
        log: &mut UploadLog,
        at: &mut Position,
        received: u64,
        waiting: &mut WaitNotice,
    ) -> Result<()> {
        if at.reported < at.consumed {
            self.report(at.consumed, false, received).await?;
            at.reported = at.consumed;
            at.reported_at = Some(Instant::now());
        }
        if waiting.due() {
            tracing::info!(
                "{}: waiting for the sender to upload more ({} of {} chunks published so far read)",
                self.name,
                at.consumed,
                log.published
            );
        }
        if !log.follow(&self.channel, Some(LONGEST_WAIT)).await? {
            self.check_record().await?;
        }
        Ok(())
    }

    /// Restores a chunk's original bytes on the blocking pool.
    fn restore(&self, data: Bytes) -> JoinHandle<Result<Vec<Bytes>>> {
        let (slot, name) = (self.slot, self.name.clone());
        tokio::task::spawn_blocking(move || {
            chunk::decode(&data, slot).map_err(|reason| Error::Corrupt { name, reason })
        })
    }

    /// Checks size and digest of the whole file once everything is passed on.
    fn verify(&self, delivered: Delivered<'_>, log: &UploadLog) -> Result<()> {
        let Delivered {
            hasher, received, ..
        } = delivered;
        self.rate
            .add(received.saturating_sub(self.rated.swap(received, Ordering::Relaxed)));
        let UploadEnd { size, digest } = log.end.clone().unwrap_or_default();
        if received != size {
            return Err(self.corrupt(format!("received {received} bytes, the sender sent {size}")));
        }
        if hasher.finalize().to_hex().as_str() != digest {
            return Err(
                self.corrupt("BLAKE3 digest mismatch (a chunk was altered in Redis)".into())
            );
        }
        self.verified.store(true, Ordering::Release);
        Ok(())
    }

    /// The bytes of chunk `index` once they match the digest published
    /// with them, reading the chunk once more if they do not (a reply
    /// damaged on the way).
    async fn checked(
        &self,
        fetched: Result<Fetched>,
        index: u64,
        log: &UploadLog,
    ) -> Result<Bytes> {
        let data = match fetched? {
            Fetched::Verified(data) => return Ok(data),
            Fetched::Unchecked(data) => data,
            Fetched::Missing => return Err(self.missing(index).await),
        };
        let Some(expected) = log.digest(index) else {
            return Err(self.corrupt(format!("chunk {index} was published without a digest")));
        };
        if blake3::hash(&data) == expected {
            return Ok(data);
        }
        tracing::warn!(
            "{}: chunk {index} does not match its digest; reading it again",
            self.name
        );
        match self.channel.read_chunk(self.fid, index).await? {
            Some(again) if blake3::hash(&again) == expected => Ok(again),
            Some(_) => {
                self.gone.store(true, Ordering::Release);
                Err(self.corrupt(format!(
                    "chunk {index} does not match its digest (altered in Redis)"
                )))
            }
            None => Err(self.missing(index).await),
        }
    }

    /// Records how many chunks we consumed (CONSUME), and for `status`
    /// the file, how far into it we are (`delivered` bytes passed on),
    /// when, and our pace.
    async fn report(&self, consumed: u64, restart: bool, delivered: u64) -> Result<()> {
        let consumption = Consumption {
            fid: self.fid,
            receiver: &self.receiver,
            chunks: consumed,
            restart,
        };
        self.channel.consume(consumption).await?;
        let before = self.rated.swap(delivered, Ordering::Relaxed);
        let rate = self.rate.add(delivered.saturating_sub(before));
        let report = ReadingReport {
            receiver: &self.receiver,
            file: &self.name,
            at: delivered,
            rate,
        };
        self.channel.report_reading(report).await
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            name: self.name.clone(),
            reason,
        }
    }

    /// Explains a chunk that is not in Redis, and marks the file to be
    /// asked for again.
    async fn missing(&self, index: u64) -> Error {
        self.gone.store(true, Ordering::Release);
        let freed = self.channel.freed_chunks(self.fid).await.ok().flatten();
        if freed.is_some_and(|freed| index < freed) {
            self.corrupt(format!(
                "chunk {index} was deleted to make room before this receiver could read it again"
            ))
        } else {
            self.corrupt(format!(
                "chunk {index} is missing from Redis (lost by a restart, or evicted)"
            ))
        }
    }

    /// Reads a chunk and checks it against `expected` on the blocking pool,
    /// beside the task hashing the whole file.
    fn get_checked_chunk(
        &self,
        index: u64,
        expected: Option<blake3::Hash>,
    ) -> impl Future<Output = Result<Fetched>> + use<> {
        let read = self.channel.read_chunk(self.fid, index);
        async move {
            let Some(data) = read.await? else {
                return Ok(Fetched::Missing);
            };
            let Some(expected) = expected else {
                return Ok(Fetched::Unchecked(data));
            };
            tokio::task::spawn_blocking(move || {
                if blake3::hash(&data) == expected {
                    Fetched::Verified(data)
                } else {
                    Fetched::Unchecked(data)
                }
            })
            .await
            .map_err(|e| Error::io("checking a chunk", std::io::Error::other(e)))
        }
    }

    /// After a wait with no news: fails when the file's record is gone
    /// (Redis restarted without it, or the channel was purged), as nobody
    /// will ever add to its upload log.
    async fn check_record(&self) -> Result<()> {
        if self.channel.file_exists(self.fid).await? {
            return Ok(());
        }
        Err(self.corrupt(
            "its record vanished from Redis (restarted without its latest writes, or purged)"
                .into(),
        ))
    }
}

/// The original bytes passed on so far, and the chunk being restored
/// while the one before goes out: at most two restored chunks in memory,
/// however many are being fetched.
struct Delivered<'a> {
    out: &'a mpsc::Sender<io::Result<Bytes>>,
    hasher: blake3::Hasher,
    received: u64,
    restoring: Option<JoinHandle<Result<Vec<Bytes>>>>,
}

impl<'a> Delivered<'a> {
    fn new(out: &'a mpsc::Sender<io::Result<Bytes>>) -> Self {
        Delivered {
            out,
            hasher: blake3::Hasher::new(),
            received: 0,
            restoring: None,
        }
    }

    /// Starts passing on a chunk being restored, once the one before it
    /// went out. Returns whether the reader still wants them.
    async fn restore(&mut self, next: JoinHandle<Result<Vec<Bytes>>>) -> Result<bool> {
        match self.restoring.replace(next) {
            Some(restored) => self.pass_on(restored).await,
            None => Ok(true),
        }
    }

    /// Passes on the chunk being restored, if any. Returns whether the
    /// reader still wants them.
    async fn flush(&mut self) -> Result<bool> {
        match self.restoring.take() {
            Some(restored) => self.pass_on(restored).await,
            None => Ok(true),
        }
    }

    async fn pass_on(&mut self, restored: JoinHandle<Result<Vec<Bytes>>>) -> Result<bool> {
        let pieces = restored
            .await
            .map_err(|e| Error::io("restoring a chunk", std::io::Error::other(e)))??;
        for piece in pieces {
            self.hasher.update(&piece);
            self.received += piece.len() as u64;
            telemetry::bytes_received(piece.len() as u64);
            if self.out.send(Ok(piece)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
