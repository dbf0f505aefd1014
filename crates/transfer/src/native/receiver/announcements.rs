//! Finding the next file to hand out: our pending announcements first, then
//! new ones; noticing the end of the channel; and, in a work queue, taking
//! over files of workers that went silent.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use super::{MAX_FAILURES, Receiver};
use crate::error::Result;
use crate::files::incoming::IncomingFile;
use crate::native::notice::WaitNotice;
use crate::native::protocol::Audience;
use crate::native::protocol::reading::{
    Announced, Announcement, FileRecord, Outcome, PendingFile, ReadFrom, WorkFailure,
};
use crate::redis::LONGEST_WAIT;

/// New announcements a broadcast receiver reads at once, with their
/// files' records in one more round trip: small files then cost about one
/// round trip each (their acknowledgement). A worker takes one at a time,
/// as the files it holds unread would wait for it while others idle.
const BATCH: usize = 32;

/// What reading our pending announcements gave.
enum Pending {
    /// A file to hand out.
    File(Box<IncomingFile>),
    /// An announcement settled here (a marker, a file not to hand out).
    Settled,
    /// None is left.
    Done,
}

impl Receiver {
    /// The next file of the channel, or `None` at its end.
    pub(super) async fn next_in_channel(&mut self) -> Result<Option<IncomingFile>> {
        let audience = self.join().await?;
        self.check_role()?;
        if let Some(file) = self.before_any_other().await? {
            return Ok(Some(file));
        }
        self.next_announced(&audience).await
    }

    /// A file that goes before any announcement: one asked for again that
    /// must come first ([`super::ReceiveOptions::in_order`]), or one to offer
    /// again after a failure.
    async fn before_any_other(&mut self) -> Result<Option<IncomingFile>> {
        if let Some(name) = self.resume_first.take()
            && let Some(file) = self.announced_again(&name).await?
        {
            return Ok(Some(file));
        }
        let Some(again) = self.offer_again.take() else {
            return Ok(None);
        };
        // Seconds, growing: a failure that passes (a busy disk, a
        // restarting service) gets time to pass.
        let pause = 1 << again.attempts.saturating_sub(1).min(6);
        tokio::time::sleep(Duration::from_secs(pause)).await;
        self.open(&again.entry, again.fid).await
    }

    /// Reads announcements, pending ones first, until one is a file to
    /// hand out or the channel ends for us.
    async fn next_announced(&mut self, audience: &Audience) -> Result<Option<IncomingFile>> {
        // Whether the last wait was cut short: the next look is then a
        // quick one, which completes even where connections die younger
        // than a blocking read lasts, and whose empty answer, unlike a cut
        // wait's, proves that nothing new is waiting.
        let mut cut_short = false;
        let mut idle = WaitNotice::new();
        loop {
            match self.next_pending().await? {
                Pending::File(file) => return Ok(Some(*file)),
                Pending::Settled => continue,
                Pending::Done => {}
            }
            if let Some((announcement, record)) = self.unread.pop_front() {
                if let Some(file) = self.handle(&announcement, record).await? {
                    return Ok(Some(file));
                }
                if self.at_end(&announcement).await? {
                    return Ok(None);
                }
                continue;
            }
            if *audience == Audience::Workers {
                self.requeue_stale().await?;
            }
            let ended_before = self.channel.existing_meta().await?.ended;
            let block = match audience {
                Audience::Workers => LONGEST_WAIT.min(self.options.claim_after / 2),
                Audience::Broadcast(_) => LONGEST_WAIT,
            };
            let batch = match audience {
                Audience::Workers => 1,
                Audience::Broadcast(_) => BATCH,
            };
            let read = self
                .channel
                .read_announcements(
                    self.reader(),
                    ReadFrom::New,
                    batch,
                    (!cut_short).then_some(block),
                )
                .await?;
            cut_short = read.cut_short;
            if cut_short {
                // An entry a lost reply delivered is pending now: read
                // pending entries first, oldest first.
                self.pending_done = false;
                continue;
            }
            match read.announcements.is_empty() {
                false => {
                    idle.over();
                    self.unread = self.with_records(read.announcements).await?;
                }
                // Nothing new arrived after the end mark was set.
                true if ended_before
                    && !self.options.follow
                    && self.all_finished(audience).await? =>
                {
                    return Ok(None);
                }
                // Idle: look at our own pending entries again next time, in
                // case a reply carrying one was lost with a connection.
                true => {
                    self.pending_done = false;
                    self.say_idle(&mut idle, ended_before);
                }
            }
        }
    }

    /// Handles the oldest of our pending announcements, unless they were
    /// all handled since the connection was last replaced.
    async fn next_pending(&mut self) -> Result<Pending> {
        let reconnections = self.channel.redis.reconnections();
        if reconnections != self.pending_read_at {
            self.pending_done = false;
        }
        if self.pending_done {
            return Ok(Pending::Done);
        }
        // Entries whose acknowledgement is under way are pending yet.
        self.finish_acks().await?;
        // They are among the pending ones, read again in their order.
        self.unread.clear();
        let read = self
            .channel
            .read_announcements(self.reader(), ReadFrom::Pending, 1, None)
            .await?;
        let Some(announcement) = read.announcements.into_iter().next() else {
            self.pending_done = true;
            self.pending_read_at = reconnections;
            return Ok(Pending::Done);
        };
        Ok(match self.handle(&announcement, None).await? {
            Some(file) => Pending::File(Box::new(file)),
            None => Pending::Settled,
        })
    }

    /// Says, now and then, what an idle receiver waits for: at -v only
    /// when following, where idling is the normal state.
    fn say_idle(&self, idle: &mut WaitNotice, ended_before: bool) {
        if !idle.due() {
            return;
        }
        let what = if ended_before {
            "for files announced again (the sender's input ended; others have not finished)"
        } else {
            "for the sender to announce more files"
        };
        if self.options.follow {
            tracing::debug!("waiting {what}");
        } else {
            tracing::info!("waiting {what}");
        }
    }

    /// Waits for `name` to be announced again for us and opens it, leaving
    /// every other new announcement pending for later, in its order.
    /// `None` when it will not come (the sender gave up on it).
    async fn announced_again(&mut self, name: &str) -> Result<Option<IncomingFile>> {
        tracing::info!("{name}: waiting for it to be uploaded again before any other file");
        self.finish_acks().await?;
        // Whatever is pending afterwards is read again, oldest first.
        self.pending_done = false;
        let mut looked_at = HashSet::new();
        let mut notice = WaitNotice::new();
        loop {
            self.check_role()?;
            if notice.due() {
                tracing::info!(
                    "{name}: still waiting for it to be uploaded again (later files wait behind it; \
                     `status` shows what the sender does)"
                );
            }
            if let Some(found) = self.pending_upload_again(name, &mut looked_at).await? {
                return self.open(&found.entry, found.fid).await;
            }
            let waiting = self
                .channel
                .wanted_file(name)
                .await?
                .is_some_and(|wanted| wanted.is_for(&self.options.id));
            // Announced meanwhile (the request is gone with the same step),
            // or given up on.
            let read = self
                .channel
                .read_announcements(
                    self.reader(),
                    ReadFrom::New,
                    1,
                    waiting.then_some(LONGEST_WAIT),
                )
                .await?;
            if read.announcements.is_empty() && !waiting {
                return Ok(None);
            }
        }
    }

    /// Among our pending announcements not looked at yet, the upload again
    /// of `name` for us.
    async fn pending_upload_again(
        &self,
        name: &str,
        looked_at: &mut HashSet<String>,
    ) -> Result<Option<PendingFile>> {
        for pending in self.channel.pending_files(self.reader()).await? {
            if !looked_at.insert(pending.entry.clone()) {
                continue;
            }
            if self
                .channel
                .is_upload_again(pending.fid, name, &self.options.id)
                .await?
            {
                return Ok(Some(pending));
            }
        }
        Ok(None)
    }

    /// New announcements, each file's with its record, read in one round
    /// trip.
    async fn with_records(
        &self,
        announcements: Vec<Announcement>,
    ) -> Result<VecDeque<(Announcement, Option<FileRecord>)>> {
        let fids: Vec<u64> = announcements
            .iter()
            .filter_map(|a| match a.announced {
                Announced::File(fid) => Some(fid),
                _ => None,
            })
            .collect();
        let mut records = self.channel.file_records(&fids).await?.into_iter();
        Ok(announcements
            .into_iter()
            .map(|a| {
                let record = match a.announced {
                    Announced::File(_) => records.next(),
                    _ => None,
                };
                (a, record)
            })
            .collect())
    }

    /// Turns an announcement into a file to process, or handles it here
    /// (markers, vanished or refused files) and returns `None`. `record`
    /// is its file's, when read with it.
    async fn handle(
        &mut self,
        announcement: &Announcement,
        record: Option<FileRecord>,
    ) -> Result<Option<IncomingFile>> {
        let entry = &announcement.entry;
        match announcement.announced {
            Announced::File(fid) => self.open_with(entry, fid, record).await,
            Announced::Malformed => {
                // Poison: set aside, and go on with the next file.
                tracing::error!(
                    "announcement {entry} in {} has no valid file id; skipping it",
                    self.channel.keys.files()
                );
                self.settle(0, entry, Outcome::Skip).await?;
                self.parked += 1;
                Ok(None)
            }
            Announced::EndOfInput | Announced::Marker => {
                self.settle(0, entry, Outcome::Skip).await?;
                Ok(None)
            }
        }
    }

    /// Whether `announcement` is the end-of-input mark we stop at.
    async fn at_end(&mut self, announcement: &Announcement) -> Result<bool> {
        if self.options.follow || announcement.announced != Announced::EndOfInput {
            return Ok(false);
        }
        let meta = self.channel.existing_meta().await?;
        Ok(meta.is_end_mark(&announcement.entry) && self.all_finished(&meta.audience).await?)
    }

    /// Whether nothing is left for us: a broadcast receiver is done when its
    /// own queue is empty, a worker only when every file is finished (until
    /// then it stays to take over files of workers that die).
    /// Either way, files we (or any worker) asked to be uploaded again are
    /// still to come.
    async fn all_finished(&mut self, audience: &Audience) -> Result<bool> {
        // What our acknowledgements under way change is part of the answer.
        self.finish_acks().await?;
        if self.awaiting_uploads_again(audience).await? {
            return Ok(false);
        }
        match audience {
            // Our own unacknowledged entries: one whose acknowledgement
            // Redis forgot (a restart) comes back as pending.
            // And announcements after the last one we read: files uploaded
            // again follow the end-of-input mark. Read after `wanted`, which
            // a file leaves in the same step that announces it.
            Audience::Broadcast(_) => self.channel.read_everything(&self.group).await,
            Audience::Workers => Ok(self.channel.files_in_flight().await? == 0),
        }
    }

    /// Whether files we (any worker, in a work queue) asked for again are
    /// still to be uploaded; says which when that changes.
    async fn awaiting_uploads_again(&self, audience: &Audience) -> Result<bool> {
        let who = match audience {
            Audience::Broadcast(_) => self.options.id.as_str(),
            Audience::Workers => "*",
        };
        let mut awaited: Vec<String> = self
            .channel
            .wanted_files()
            .await?
            .into_iter()
            .filter(|wanted| wanted.is_for(who))
            .map(|wanted| wanted.name)
            .collect();
        awaited.sort();
        let waiting = !awaited.is_empty();
        let mut shown = self.awaited.lock().expect("awaited");
        if waiting && *shown != awaited {
            tracing::info!(
                "waiting for the sender to upload again: {}",
                awaited.join(", ")
            );
        }
        *shown = awaited;
        Ok(waiting)
    }

    /// Work queue: gives files held too long by silent workers to others.
    async fn requeue_stale(&self) -> Result<()> {
        let min_idle = self.options.claim_after;
        for claim in self.channel.stale_claims(min_idle).await? {
            let Some(fid) = self.channel.announced_file(&claim.entry).await? else {
                // A marker (or a vanished entry) left by a dead worker.
                self.settle(0, &claim.entry, Outcome::Skip).await?;
                continue;
            };
            let reason = format!("worker {} stopped responding", claim.worker);
            let takeover = WorkFailure {
                fid,
                worker: &claim.worker,
                entry: &claim.entry,
                min_idle_ms: min_idle.as_millis() as u64,
                max_failures: MAX_FAILURES,
                reason: &reason,
            };
            let failed = self.channel.failed(takeover).await?;
            tracing::info!(
                "file {fid} held by silent worker {}: {failed}",
                claim.worker
            );
        }
        Ok(())
    }
}
