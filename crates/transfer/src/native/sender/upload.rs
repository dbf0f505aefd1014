//! One file's upload: reserve room, write chunks as the encoder yields
//! them, publish each with its digest, and record size and digest at the
//! end. Chunks come from the encoding tasks, so a chunk is written and
//! published as soon as it is complete, even while the input is slow to
//! yield the next one (a pipe, a growing log).
//!
//! An upload stops short, as a value, when Redis lost part of it or
//! restarted while it waited for room: the driver decides what goes first,
//! and may resume it.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use super::Sender;
use crate::error::{Error, Result};
use crate::native::chunk::Packed;
use crate::native::encoder::{Encoded, Tasks};
use crate::native::notice::WaitNotice;
use crate::native::protocol::sending::{
    Announced, Ending, Finish, Publication, Publish, Reserve, RoomRequest,
};
use crate::redis::memory;
use crate::telemetry;

/// Chunk writes kept in flight at once: enough to hide round trips, few
/// enough to keep the sender's memory small.
const PIPELINE_DEPTH: u64 = 4;

/// How an upload stopped.
pub(super) enum Ended {
    /// Every byte is in Redis: the file's size.
    Finished(u64),
    /// Abandoned unfinished: everyone it was for settled it already.
    Unread,
    /// Redis lost part of it: it must start over from what Redis has.
    Lost,
    /// Redis restarted while it waited for room: lost work goes first.
    Restarted,
}

/// A chunk being written, hashed meanwhile.
type Write = Pin<Box<dyn Future<Output = Result<Written>> + Send>>;

/// The upload of one announced file.
pub(super) struct Upload<'a> {
    sender: &'a Sender,
    name: String,
    fid: u64,
    incoming: mpsc::Receiver<std::io::Result<Encoded>>,
    /// The tasks reading and encoding the input: dropping them stops them.
    _encoding: Tasks,
    /// The next chunk to write.
    next: u64,
    /// Chunks there is room for.
    reserved: u64,
    /// Chunks receivers may read.
    published: u64,
    in_flight: FuturesOrdered<Write>,
    /// The newest progress event RESERVE saw: a wait starts after it.
    last_event: String,
    /// What the input was, once it ended.
    end: Option<InputEnd>,
    notice: WaitNotice,
    /// Whether `status` was told that we wait for room.
    said_waiting: bool,
    totals: Totals,
}

impl<'a> Upload<'a> {
    /// The upload of `announced`, from the chunk an earlier run stopped at,
    /// of what `incoming` yields.
    pub(super) fn new(
        sender: &'a Sender,
        name: &str,
        announced: &Announced,
        incoming: mpsc::Receiver<std::io::Result<Encoded>>,
        encoding: Tasks,
    ) -> Box<Self> {
        Box::new(Upload {
            sender,
            name: name.to_owned(),
            fid: announced.fid,
            incoming,
            _encoding: encoding,
            next: announced.published,
            reserved: 0,
            published: announced.published,
            in_flight: FuturesOrdered::new(),
            last_event: "0-0".to_owned(),
            end: None,
            notice: WaitNotice::new(),
            said_waiting: false,
            totals: Totals {
                original: announced.offset,
                stored: announced.stored,
                // Until a chunk is published here: a full one, the most it costs.
                last_cost: announced.slot + memory::KEY_COST,
            },
        })
    }

    pub(super) fn fid(&self) -> u64 {
        self.fid
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Uploads the rest, or until Redis lost part of it or restarted.
    pub(super) async fn run(&mut self) -> Result<Ended> {
        loop {
            if self.end.is_none()
                && self.next >= self.reserved
                && let ControlFlow::Break(ended) = self.reserve().await?
            {
                return Ok(ended);
            }
            let may_read = self.end.is_none()
                && self.next < self.reserved
                && (self.in_flight.len() as u64) < PIPELINE_DEPTH;
            if self.in_flight.is_empty() && !may_read {
                if self.end.is_some() {
                    return self.finish().await;
                }
                if self.wait_for_room().await? {
                    return Ok(Ended::Restarted);
                }
                continue;
            }
            self.stop_waiting().await?;
            tokio::select! {
                done = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    let written = done.expect("in flight")?;
                    if let ControlFlow::Break(ended) = self.publish(written).await? {
                        return Ok(ended);
                    }
                }
                chunk = self.incoming.recv(), if may_read => self.take(chunk)?,
            }
        }
    }

    /// Asks for room for the next chunks.
    async fn reserve(&mut self) -> Result<ControlFlow<Ended>> {
        let request = RoomRequest {
            fid: self.fid,
            want: self.next + PIPELINE_DEPTH,
            limit: self.sender.limit,
            published: self.published,
        };
        let room = self.sender.channel.reserve(&request).await?;
        self.last_event = room.last_event;
        match room.grant {
            Reserve::Granted(reserved) => self.reserved = reserved,
            Reserve::Lost => return Ok(ControlFlow::Break(Ended::Lost)),
            Reserve::Unread => return Ok(ControlFlow::Break(Ended::Unread)),
            Reserve::TakenOver => {
                return Err(Error::Processing {
                    name: self.name.clone(),
                    reason: "another sender took over this upload".into(),
                });
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Out of room: frees what can be freed, or waits for a receiver's
    /// progress. `true` when Redis restarted meanwhile: receivers may be
    /// waiting for an older file Redis lost, which nothing but this sender
    /// uploads again.
    async fn wait_for_room(&mut self) -> Result<bool> {
        telemetry::waiting_for_room(true);
        if self.notice.due() {
            if !self.said_waiting {
                self.said_waiting = true;
                self.sender.channel.mark_waiting(true).await?;
            }
            tracing::info!(
                "{}: the channel holds its limit ({}); waiting for {}",
                self.name,
                bytesize::ByteSize(self.sender.limit),
                self.sender.awaited().await?
            );
        }
        if self.sender.restarted().await? {
            return Ok(true);
        }
        if !self.sender.release(true).await? {
            self.sender.channel.wait_for_event(&self.last_event).await?;
        }
        Ok(false)
    }

    /// The wait for room is over: says so.
    async fn stop_waiting(&mut self) -> Result<()> {
        if self.notice.over() {
            telemetry::waiting_for_room(false);
        }
        if std::mem::take(&mut self.said_waiting) {
            self.sender.channel.mark_waiting(false).await?;
        }
        Ok(())
    }

    /// Takes what the encoder yields: a chunk to write, or the end.
    fn take(&mut self, chunk: Option<std::io::Result<Encoded>>) -> Result<()> {
        match chunk {
            Some(Ok(Encoded::Chunk(packed))) => {
                let write = self.sender.write_chunk(self.fid, self.next, packed);
                self.in_flight.push_back(Box::pin(write));
                self.next += 1;
            }
            Some(Ok(Encoded::End { size, digest })) => self.end = Some(InputEnd { size, digest }),
            Some(Err(error)) => return Err(Error::io(&self.name, error)),
            None => {
                let stopped = std::io::Error::other("reading stopped");
                return Err(Error::io(&self.name, stopped));
            }
        }
        Ok(())
    }

    /// Publishes `first` and every later write already complete, in one
    /// step, each with its digest: receivers check every chunk before a
    /// byte of it reaches their output.
    async fn publish(&mut self, first: Written) -> Result<ControlFlow<Ended>> {
        let mut written = vec![first];
        while let Some(Some(done)) = self.in_flight.next().now_or_never() {
            written.push(done?);
        }
        let bytes = self.totals.add(&written);
        let digests: String = written
            .iter()
            .map(|chunk| chunk.digest.to_hex().to_string())
            .collect();
        let count = self.published + written.len() as u64;
        let chunks = Publication {
            fid: self.fid,
            from: self.published,
            count,
            digests: &digests,
            original: self.totals.original,
            stored: self.totals.stored,
        };
        if self.sender.channel.publish(&chunks).await? == Publish::Gap {
            return Ok(ControlFlow::Break(Ended::Lost));
        }
        self.published = count;
        self.sender.report_progress(bytes);
        if let Err(error) = self.sender.note_rate(bytes).await {
            // Only `status` reads it: not worth failing an upload.
            tracing::debug!("could not record the upload rate: {error}");
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Records size and digest once every chunk is published.
    async fn finish(&mut self) -> Result<Ended> {
        let InputEnd { size, digest } = self.end.expect("finished at the end of input");
        let ending = Ending {
            fid: self.fid,
            size,
            digest,
            chunks: self.published,
            last_cost: self.totals.last_cost,
        };
        match self.sender.channel.finish_upload(&ending).await? {
            Finish::Recorded => {}
            Finish::Lost => return Ok(Ended::Lost),
            Finish::Abandoned => {
                return Err(Error::Processing {
                    name: self.name.clone(),
                    reason: "its upload was abandoned meanwhile (another sender run took this \
                             file over)"
                        .into(),
                });
            }
        }
        tracing::debug!(
            "{}: sent {} as {}",
            self.name,
            bytesize::ByteSize(size),
            bytesize::ByteSize(self.totals.stored)
        );
        telemetry::file_sent(size, self.totals.stored);
        Ok(Ended::Finished(size))
    }
}

impl Sender {
    /// Writes one chunk, hashing it meanwhile on the blocking pool.
    fn write_chunk(
        &self,
        fid: u64,
        index: u64,
        packed: Packed,
    ) -> impl Future<Output = Result<Written>> + Send + use<> {
        let store = self
            .channel
            .store_chunk(fid, index, packed.data.clone(), self.shards.clone());
        async move {
            let data = packed.data;
            let hashing = tokio::task::spawn_blocking({
                let data = data.clone();
                move || blake3::hash(&data)
            });
            store.await?;
            let digest = hashing
                .await
                .map_err(|e| Error::io("hashing a chunk", std::io::Error::other(e)))?;
            Ok(Written {
                original: packed.original,
                stored: data.len() as u64,
                digest,
            })
        }
    }
}

/// The whole input, known once it ended.
#[derive(Clone, Copy)]
struct InputEnd {
    size: u64,
    /// BLAKE3 of its original bytes.
    digest: blake3::Hash,
}

/// A chunk that is in Redis, not yet published.
struct Written {
    original: u64,
    stored: u64,
    digest: blake3::Hash,
}

/// What the chunks of one upload hold and cost so far.
struct Totals {
    /// Original bytes up to the last chunk published.
    original: u64,
    /// Bytes those chunks take.
    stored: u64,
    /// What the last chunk costs Redis.
    last_cost: u64,
}

impl Totals {
    /// Counts chunks about to be published; returns their original bytes.
    fn add(&mut self, chunks: &[Written]) -> u64 {
        let bytes = chunks.iter().map(|c| c.original).sum();
        self.original += bytes;
        self.stored += chunks.iter().map(|c| c.stored).sum::<u64>();
        if let Some(last) = chunks.last() {
            self.last_cost = memory::chunk_cost(last.stored);
        }
        bytes
    }
}
