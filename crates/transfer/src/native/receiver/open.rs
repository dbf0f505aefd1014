//! Opening one announced file: its record decides whether it is handed
//! out, only acknowledged, or parked; a file handed out starts streaming
//! at once.

use std::time::Duration;

use super::Receiver;
use super::fetch::{Fetch, FileToFetch};
use crate::error::Result;
use crate::files::incoming::{AbortOnDrop, IncomingFile, PieceOf, Ticket};
use crate::files::names;
use crate::native::protocol::Audience;
use crate::native::protocol::channel::Channel;
use crate::native::protocol::reading::{FileRecord, Outcome, StoredWhole};

/// The smallest chunk slot a sender uses: a record that says less is damaged.
const SMALLEST_SLOT: u64 = 4096;

/// What becomes of an announced file, as its record says.
enum Decision {
    /// Hand it out.
    HandOut(Opening),
    /// Only acknowledge the announcement.
    Skip,
    /// Set it aside for good (poison), for this reason.
    Park(String),
}

/// What handing out a file needs of its record.
struct Opening {
    name: String,
    /// The allocation of each chunk, which bounds its size.
    slot: u64,
    /// The file id of its first upload.
    origin: u64,
    /// Its source's identity: `size:mtime`, or `stream`.
    identity: String,
    piece: Option<PieceOf>,
    /// The file itself, when it came whole with its announcement.
    whole: Option<StoredWhole>,
}

impl Receiver {
    /// Starts streaming file `fid`, or settles an announcement that cannot be
    /// processed. A file whose record is malformed (poison) is parked,
    /// naming the key and the reason, so the receiver can go on with the
    /// next file.
    pub(super) async fn open(&mut self, entry: &str, fid: u64) -> Result<Option<IncomingFile>> {
        self.open_with(entry, fid, None).await
    }

    /// [`Receiver::open`], with the file's record when it was read already.
    pub(super) async fn open_with(
        &mut self,
        entry: &str,
        fid: u64,
        record: Option<FileRecord>,
    ) -> Result<Option<IncomingFile>> {
        let record = match record {
            Some(record) => record,
            None => self.channel.file_record(fid).await?,
        };
        match self.decide(fid, &record) {
            Decision::HandOut(opening) => Ok(Some(self.hand_out(entry, fid, opening))),
            Decision::Skip => {
                self.settle(fid, entry, Outcome::Skip).await?;
                Ok(None)
            }
            Decision::Park(reason) => {
                tracing::error!("{reason}; parking it");
                self.park(fid, entry, &reason).await?;
                Ok(None)
            }
        }
    }

    fn decide(&self, fid: u64, record: &FileRecord) -> Decision {
        if record.is_missing() || record.is_over() {
            tracing::debug!("file {fid} was abandoned or already finished; skipping");
            return Decision::Skip;
        }
        let id = &self.options.id;
        if record.settled_by(id) || !record.is_for(id) {
            // Settled by us already (a reply lost, or Redis rolled back),
            // or an upload again for other receivers.
            return Decision::Skip;
        }
        let key = record.key();
        let name = match record.name() {
            Ok(name) => name,
            Err(bad) => {
                let shown = String::from_utf8_lossy(&bad);
                return Decision::Park(format!("{key}: its name {shown:?} is not UTF-8"));
            }
        };
        if let Err(refused) = names::check_file_name(&name) {
            return Decision::Park(refused.to_string());
        }
        let slot = record.chunk_slot();
        if slot < SMALLEST_SLOT {
            return Decision::Park(format!("{key}: its record has no valid chunk size"));
        }
        let piece = record
            .piece()
            .and_then(|piece| PieceOf::parse(&name, piece));
        let whole = match record.whole() {
            Some(Err(field)) => {
                return Decision::Park(format!(
                    "{key}: it came whole, but its record has no valid {field}"
                ));
            }
            Some(Ok(whole)) => Some(whole),
            None => None,
        };
        Decision::HandOut(Opening {
            name,
            slot,
            origin: record.origin().unwrap_or(fid),
            identity: record.identity(),
            piece,
            whole,
        })
    }

    /// Starts fetching the file, and in a work queue keeping our claim on
    /// it, for as long as its [`IncomingFile`] lives.
    fn hand_out(&self, entry: &str, fid: u64, opening: Opening) -> IncomingFile {
        let Opening {
            name,
            slot,
            origin,
            identity,
            piece,
            whole,
        } = opening;
        // Redis forgot our acknowledgement (it restarted without its latest
        // writes): whether the work is to be done again depends on where
        // its effect lives, which only the consumer knows.
        let done_before = self
            .acknowledged
            .contains(&format!("{}:{name}", self.epoch), &identity);
        let fetching = match whole {
            Some(whole) => super::whole::restore(&name, slot, whole, &self.rate),
            None => {
                let file = FileToFetch {
                    fid,
                    name: name.clone(),
                    slot,
                };
                Fetch::start(&self.channel, &self.options.id, file, &self.rate)
            }
        };
        let mut tasks: Vec<_> = fetching.task.into_iter().collect();
        if self.audience == Some(Audience::Workers) {
            tasks.push(AbortOnDrop(tokio::spawn(heartbeat(
                self.channel.clone(),
                self.options.id.clone(),
                entry.to_owned(),
                (self.options.claim_after / 4).min(Duration::from_secs(1)),
            ))));
        }
        let size = expected_size(&identity);
        let ticket = Ticket::Native {
            fid,
            entry: entry.to_owned(),
            epoch: self.epoch.clone(),
            origin,
            identity,
            gone: fetching.gone,
        };
        let file = IncomingFile::new(name, ticket, fetching.chunks, fetching.verified, tasks)
            .of_channel(&self.options.prefix, &self.options.channel)
            .expecting(size)
            .piece_of(piece);
        if done_before {
            file.marked_done_before()
        } else {
            file
        }
    }
}

/// The size a file had when the sender opened it: the first part of its
/// identity, `size:mtime`; `None` for a stream (identity `stream`).
fn expected_size(identity: &str) -> Option<u64> {
    identity.split_once(':')?.0.parse().ok()
}

/// Keeps a worker's claim on a file fresh, so nobody takes it over while
/// the worker is alive, however long the work takes.
async fn heartbeat(channel: Channel, worker: String, entry: String, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let _ = channel.refresh_claim(&worker, &entry).await;
    }
}
