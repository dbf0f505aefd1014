//! Settling a file handed out: acknowledging it, recording a failure (to
//! offer it again, or park it), or asking for it to be uploaded again when
//! its data left Redis before it could be read.

use std::sync::atomic::Ordering;

use super::{MAX_FAILURES, Receiver};
use crate::error::{Error, Result};
use crate::files::incoming::{IncomingFile, Ticket};
use crate::files::source::Failure;
use crate::native::protocol::Audience;
use crate::native::protocol::reading::{Delivery, Failed, Outcome, Reader, Requested, WorkFailure};

/// How many times a file may be uploaded again for a receiver that found
/// its data gone, before it is parked.
const MAX_RESUPPLIES: u32 = 3;

/// The announcement a file was handed out for, read back from its ticket.
pub(super) struct Handout {
    pub fid: u64,
    /// The entry of `files` that announced it.
    pub entry: String,
    /// Whether its chunks were found gone from Redis (or stayed damaged).
    pub data_gone: bool,
}

impl Handout {
    /// The handout of a file this receiver gave out; an error for one of a
    /// classic channel.
    pub fn of(file: &IncomingFile) -> Result<Handout> {
        match file.ticket() {
            Ticket::Native {
                fid, entry, gone, ..
            } => Ok(Handout {
                fid: *fid,
                entry: entry.clone(),
                data_gone: gone.load(Ordering::Acquire),
            }),
            Ticket::Classic { .. } => Err(Error::Usage(format!(
                "file {:?} came from a classic channel; acknowledge it there",
                file.name()
            ))),
        }
    }
}

/// The outcome of an acknowledgement's task.
fn joined(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    done.map_err(|e| Error::io("acknowledging a file", std::io::Error::other(e)))?
}

/// A broadcast file to offer again after a failed attempt.
pub(super) struct OfferAgain {
    pub entry: String,
    pub fid: u64,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl Receiver {
    /// The delivery of file `fid` by announcement `entry` to us.
    pub(super) fn delivery<'a>(&'a self, fid: u64, entry: &'a str) -> Delivery<'a> {
        Delivery {
            fid,
            entry,
            reader: self.reader(),
        }
    }

    /// Settles announcement `entry` of file `fid` (0 for a marker), and
    /// deletes whatever that lets go.
    pub(super) async fn settle(&self, fid: u64, entry: &str, outcome: Outcome<'_>) -> Result<()> {
        let plan = self.channel.ack(self.delivery(fid, entry), outcome).await?;
        self.channel.reclaim(&plan).await
    }

    /// Settles a handed-out file in a task of its own once `commit` is
    /// done, so the next file need not wait for either; waits for one when
    /// [`super::ACKS_IN_FLIGHT`] are under way. An error of any finished
    /// one comes out here.
    pub(super) async fn settle_in_background(
        &mut self,
        handout: Handout,
        outcome: Outcome<'static>,
        commit: impl Future<Output = Result<()>> + Send + 'static,
    ) -> Result<()> {
        while let Some(done) = self.acks.try_join_next() {
            joined(done)?;
        }
        if self.acks.len() >= super::ACKS_IN_FLIGHT
            && let Some(done) = self.acks.join_next().await
        {
            joined(done)?;
        }
        let channel = self.channel.clone();
        let (group, id) = (self.group.clone(), self.options.id.clone());
        self.acks.spawn(async move {
            // The work's last step (a copy flushed to the disk) first: a
            // file whose output is not committed is not acknowledged.
            commit.await?;
            let reader = Reader {
                group: &group,
                id: &id,
            };
            let delivery = Delivery {
                fid: handout.fid,
                entry: &handout.entry,
                reader,
            };
            let plan = channel.ack(delivery, outcome).await?;
            channel.reclaim(&plan).await
        });
        Ok(())
    }

    /// Waits for every acknowledgement under way.
    pub(super) async fn finish_acks(&mut self) -> Result<()> {
        while let Some(done) = self.acks.join_next().await {
            joined(done)?;
        }
        Ok(())
    }

    /// Parks file `fid` for a reason, and counts it.
    pub(super) async fn park(&mut self, fid: u64, entry: &str, reason: &str) -> Result<()> {
        self.settle(fid, entry, Outcome::Parked { reason }).await?;
        self.parked += 1;
        Ok(())
    }

    /// Remembers an acknowledged file, in case Redis forgets it.
    pub(super) fn remember_acknowledged(&mut self, file: &IncomingFile) {
        if let Ticket::Native { identity, .. } = file.ticket() {
            self.acknowledged
                .insert(&format!("{}:{}", self.epoch, file.name()), identity);
        }
    }

    /// Records a failed attempt at a file: offered again, or parked after
    /// [`MAX_FAILURES`] attempts in all.
    pub(super) async fn settle_failure(
        &mut self,
        file: IncomingFile,
        error: Error,
    ) -> Result<Failure> {
        // A record that vanished or chunks that are gone may be another
        // holder's work done while this process was paused: if the role
        // went to it, say that, not what it did.
        if let Some(lease) = &self.lease {
            lease.confirm(&self.role_shown()).await?;
        }
        let reason = &error.to_string();
        // Reading it again cannot help.
        let max_failures = match error {
            Error::Unprocessable { .. } => 1,
            _ => MAX_FAILURES,
        };
        let audience = self.join().await?;
        let handout = Handout::of(&file)?;
        if handout.data_gone {
            return self.supply_again(&handout, &file, reason).await;
        }
        match audience {
            Audience::Workers => self.worker_failed(&handout, max_failures, reason).await,
            Audience::Broadcast(_) => self.attempt_failed(handout, max_failures, reason).await,
        }
    }

    /// The file's data left Redis: asks for it again, and with
    /// [`super::ReceiveOptions::in_order`] waits for it before any other
    /// file once part of it was passed on.
    async fn supply_again(
        &mut self,
        handout: &Handout,
        file: &IncomingFile,
        reason: &str,
    ) -> Result<Failure> {
        let failure = self.request_again(handout, file.name(), reason).await?;
        if self.options.in_order
            && failure == Failure::WillRetry
            && file.received() > 0
            && matches!(self.audience, Some(Audience::Broadcast(_)))
        {
            self.resume_first = Some(file.name().to_owned());
        }
        Ok(failure)
    }

    /// Asks the sender to upload a file again whose data left Redis before
    /// we could read it; the file comes back as a new announcement.
    async fn request_again(
        &mut self,
        handout: &Handout,
        name: &str,
        reason: &str,
    ) -> Result<Failure> {
        self.attempts.remove(&handout.entry);
        let delivery = self.delivery(handout.fid, &handout.entry);
        match self
            .channel
            .request_again(delivery, MAX_RESUPPLIES, reason)
            .await?
        {
            Requested::Parked => {
                self.parked += 1;
                Ok(Failure::Parked)
            }
            Requested::Wanted => {
                tracing::info!("{name}: asked the sender to upload it again");
                Ok(Failure::WillRetry)
            }
            Requested::Gone => Ok(Failure::WillRetry),
        }
    }

    /// Work queue: the file goes back to the queue, or is parked.
    async fn worker_failed(
        &mut self,
        handout: &Handout,
        max_failures: u32,
        reason: &str,
    ) -> Result<Failure> {
        let failure = WorkFailure {
            fid: handout.fid,
            worker: &self.options.id,
            entry: &handout.entry,
            min_idle_ms: 0,
            max_failures,
            reason,
        };
        if self.channel.failed(failure).await? == Failed::Parked {
            self.parked += 1;
            return Ok(Failure::Parked);
        }
        Ok(Failure::WillRetry)
    }

    /// Broadcast: the file is offered to us again, or parked after
    /// `max_failures` attempts.
    async fn attempt_failed(
        &mut self,
        handout: Handout,
        max_failures: u32,
        reason: &str,
    ) -> Result<Failure> {
        let attempts = self.attempts.entry(handout.entry.clone()).or_insert(0);
        *attempts += 1;
        let attempts = *attempts;
        if attempts < max_failures {
            self.offer_again = Some(OfferAgain {
                entry: handout.entry,
                fid: handout.fid,
                attempts,
            });
            return Ok(Failure::WillRetry);
        }
        let reason = format!(
            "{reason} (failed {})",
            crate::text::counted(attempts, "time", "times")
        );
        self.attempts.remove(&handout.entry);
        self.park(handout.fid, &handout.entry, &reason).await?;
        Ok(Failure::Parked)
    }
}
