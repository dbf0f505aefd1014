//! The receiving side: wait for announced files, stream their chunks as they
//! arrive, verify them, and acknowledge each one once its work is done.
//!
//! A receiver reads the channel's `files` stream through a consumer group
//! (its own in a broadcast, the shared `workers` group in a work queue), so
//! an announcement stays pending until acknowledged: a receiver restarted
//! with the same id first gets back everything it had not acknowledged.
//!
//! This module holds the [`Receiver`] and its [`FileSource`] interface;
//! `announcements` finds the next file to hand out, `open` turns an
//! announcement into an [`IncomingFile`], `fetch` streams its chunks, and
//! `settle` acknowledges, fails or asks for a file again.

mod announcements;
mod fetch;
mod open;
mod remembered;
mod settle;
mod upload_log;
mod whole;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::files::incoming::IncomingFile;
use crate::files::names;
use crate::files::source::{self, Failure, FileSource};
use crate::native::lease::{self, Lease};
use crate::native::notice::WaitNotice;
use crate::native::protocol::channel::{Channel, Meta};
use crate::native::protocol::reading::{Announcement, FileRecord, Outcome, Reader};
use crate::native::protocol::{Audience, Keys};
use crate::native::rate::RateMeter;
use crate::native::status;
use crate::redis::LONGEST_WAIT;
use crate::redis::Redis;
use crate::telemetry;

use remembered::Remembered;
use settle::{Handout, OfferAgain};

/// Attempts at a file before it is parked.
pub const MAX_FAILURES: u32 = 3;

/// Acknowledgements recorded in the background at once: the next files
/// are processed meanwhile instead of waiting a round trip each.
const ACKS_IN_FLIGHT: usize = 32;

/// What a [`Receiver`] needs to know.
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    /// The channel to receive from.
    pub channel: String,
    /// Prefix of every key (`rd` unless changed).
    pub prefix: String,
    /// This receiver's id: one of the sender's `--receivers`, or any name
    /// for a worker of a work queue.
    pub id: String,
    /// Keep waiting for files after the sender's end-of-input mark.
    pub follow: bool,
    /// Work queue: how long a worker may stay silent before its file is
    /// given to another.
    pub claim_after: Duration,
    /// Work with a Redis whose `maxmemory-policy` may evict our keys
    /// (`allkeys-*`), which can lose files in flight.
    pub allow_eviction: bool,
    /// Broadcast: a file part of which was passed on, and whose data then
    /// left Redis (released early, lost, damaged), is handed out again,
    /// once uploaded again, before any file announced after it. For a
    /// consumer that cannot take back what it output (`--stdout`), which
    /// would otherwise start the next file in the middle of this one.
    pub in_order: bool,
}

impl ReceiveOptions {
    /// Options to receive `channel` as receiver or worker `id`, with defaults for the rest.
    pub fn new(channel: impl Into<String>, id: impl Into<String>) -> Self {
        ReceiveOptions {
            channel: channel.into(),
            prefix: "rd".to_owned(),
            id: id.into(),
            follow: false,
            claim_after: Duration::from_secs(30),
            allow_eviction: false,
            in_order: false,
        }
    }
}

/// Receives files from one channel.
pub struct Receiver {
    channel: Channel,
    options: ReceiveOptions,
    audience: Option<Audience>,
    /// The consumer group we read `files` with, once joined.
    group: String,
    /// Whether the announcements pending from an earlier run were all handled.
    pending_done: bool,
    /// Announcements a read of new ones delivered and not handled yet,
    /// with the records of their files as read then. They are pending in
    /// our group: whenever pending entries are read again, these go.
    unread: VecDeque<(Announcement, Option<FileRecord>)>,
    /// The connection replacements when our pending announcements were
    /// last found handled: a Redis that restarted from an older snapshot
    /// brings back announcements we had read, which come before any new
    /// one, so after any replacement they are read again.
    pending_read_at: u64,
    /// A broadcast file to offer again after a failure.
    offer_again: Option<OfferAgain>,
    /// Failed attempts at each broadcast file, by announcement.
    attempts: HashMap<String, u32>,
    parked: u64,
    /// The channel's creation time, part of each file's token.
    epoch: String,
    /// This process's hold on its id, taken when joining.
    lease: Option<Lease>,
    /// The files this process acknowledged lately, by channel epoch, name
    /// and source identity: Redis may forget an acknowledgement (a restart without its
    /// latest writes), but this receiver must not get the file twice.
    acknowledged: Remembered,
    /// The files it asked for again and waits for, as last said.
    awaited: std::sync::Mutex<Vec<String>>,
    /// With [`ReceiveOptions::in_order`]: the file passed on in part and
    /// asked for again, which goes before any other.
    resume_first: Option<String>,
    /// Its pace, for `status`.
    rate: Arc<RateMeter>,
    /// Acknowledgements being recorded (ACK and the deletions it allows).
    /// Waited for before anything that reads what they change: our
    /// pending entries, the end checks, and [`FileSource::close`].
    acks: JoinSet<Result<()>>,
}

impl Receiver {
    /// Connects to Redis. The channel need not exist yet.
    pub async fn connect(url: &str, options: ReceiveOptions) -> Result<Self> {
        names::check_channel_name(&options.channel)?;
        names::check_prefix(&options.prefix)?;
        names::check_channel_name(&options.id)?;
        let redis = Redis::connect(url).await?;
        if !options.allow_eviction {
            redis.refuse_eviction().await?;
        }
        let keys = Keys::new(&options.prefix, &options.channel);
        Ok(Receiver {
            channel: Channel::new(redis, keys),
            options,
            audience: None,
            group: String::new(),
            pending_done: false,
            unread: VecDeque::new(),
            pending_read_at: 0,
            offer_again: None,
            attempts: HashMap::new(),
            parked: 0,
            epoch: String::new(),
            lease: None,
            acknowledged: Remembered::default(),
            awaited: std::sync::Mutex::new(Vec::new()),
            resume_first: None,
            rate: Arc::default(),
            acks: JoinSet::new(),
        })
    }
}

impl FileSource for Receiver {
    /// Waits for the next file. `None` means the sender marked the end of
    /// its input and everything before the mark is finished (never with
    /// `follow`); the receiver's role is then given back.
    async fn next_file(&mut self) -> Result<Option<IncomingFile>> {
        let next = self.next_in_channel().await?;
        if next.is_none()
            && let Some(lease) = self.lease.take()
        {
            // The end, as this process sees it, counts only if the role
            // is still ours.
            lease.confirm(&self.role_shown()).await?;
            lease.release().await?;
        }
        Ok(next)
    }

    /// Acknowledges a file whose work is complete. Fails, and acknowledges
    /// nothing, unless the file was read to its end and verified.
    async fn ack(&mut self, file: IncomingFile) -> Result<()> {
        self.ack_after(file, std::future::ready(Ok(()))).await
    }

    /// Acknowledges a file once `commit` succeeded, both in the background.
    async fn ack_after(
        &mut self,
        file: IncomingFile,
        commit: impl Future<Output = Result<()>> + Send + 'static,
    ) -> Result<()> {
        if !file.is_verified() {
            return Err(Error::Corrupt {
                name: file.name().to_owned(),
                reason: "it was not read to its verified end".into(),
            });
        }
        let handout = Handout::of(&file)?;
        self.attempts.remove(&handout.entry);
        let bytes = file.received();
        let rate = self.rate.add(0);
        self.remember_acknowledged(&file);
        let outcome = Outcome::Done { bytes, rate };
        self.settle_in_background(handout, outcome, commit).await?;
        telemetry::file_received();
        Ok(())
    }

    /// Waits for the acknowledgements recorded in the background.
    async fn close(&mut self) -> Result<()> {
        self.finish_acks().await
    }

    /// Settles a file this receiver acknowledged before Redis forgot it,
    /// without reading it again.
    async fn ack_done_before(&mut self, file: IncomingFile) -> Result<()> {
        if !file.done_before() {
            return Err(source::not_done_before(&file));
        }
        let handout = Handout::of(&file)?;
        let bytes = file.expected_size().unwrap_or(0);
        file.close().await;
        let rate = self.rate.add(0);
        self.settle(handout.fid, &handout.entry, Outcome::Done { bytes, rate })
            .await
    }

    /// Adds to this receiver's count of unparsed lines (`status` shows it).
    async fn record_unparsed(&mut self, _file: &IncomingFile, lines: u64) -> Result<()> {
        self.channel.add_unparsed(&self.options.id, lines).await
    }

    /// Reports that processing a file failed. It is offered again up to
    /// [`MAX_FAILURES`] attempts in all, then parked.
    async fn fail(&mut self, file: IncomingFile, error: Error) -> Result<Failure> {
        let failure = self.settle_failure(file, error).await?;
        telemetry::file_failed(matches!(failure, Failure::Parked));
        Ok(failure)
    }

    /// How many files this receiver parked since it connected: failed too
    /// often, or refused for a hostile name.
    fn parked(&self) -> u64 {
        self.parked
    }
}

impl Receiver {
    /// The consumer group and id we read `files` with.
    fn reader(&self) -> Reader<'_> {
        Reader {
            group: &self.group,
            id: &self.options.id,
        }
    }

    /// How messages name this receiver's role.
    fn role_shown(&self) -> String {
        match &self.audience {
            Some(audience) => lease::role_of(audience, &self.options.id).1,
            None => format!("receiver {}", self.options.id),
        }
    }

    /// Fails when another process took our role over.
    fn check_role(&self) -> Result<()> {
        match &self.lease {
            Some(lease) => lease.check(&self.role_shown()),
            None => Ok(()),
        }
    }

    /// Waits for the channel to exist and checks that we belong to it.
    async fn join(&mut self) -> Result<Audience> {
        if let Some(audience) = &self.audience {
            return Ok(audience.clone());
        }
        let meta = self.wait_for_channel().await?;
        if let Audience::Broadcast(ids) = &meta.audience
            && !ids.contains(&self.options.id)
        {
            return Err(Error::UnknownReceiver {
                id: self.options.id.clone(),
                channel: self.options.channel.clone(),
                known: ids.join(", "),
            });
        }
        self.channel.join_members(&self.options.id).await?;
        let (role, shown) = lease::role_of(&meta.audience, &self.options.id);
        self.lease = Some(Lease::take(&self.channel, &role, &shown).await?);
        self.epoch = meta.epoch().to_owned();
        self.group = meta.audience.group_of(&self.options.id);
        self.audience = Some(meta.audience.clone());
        Ok(meta.audience)
    }

    /// The channel's `meta`, once a sender created it.
    async fn wait_for_channel(&self) -> Result<Meta> {
        let mut notice = WaitNotice::at_once();
        loop {
            if let Some(meta) = self.channel.meta().await? {
                return Ok(meta);
            }
            if notice.due() {
                let others = status::channels(&self.channel.redis, &self.options.prefix).await?;
                tracing::info!(
                    "channel {} does not exist yet; waiting for a sender ({})",
                    self.options.channel,
                    if others.is_empty() {
                        "no channel exists yet".to_owned()
                    } else {
                        format!("existing channels: {}", others.join(", "))
                    }
                );
            }
            self.channel.wait_for_announcements(LONGEST_WAIT).await?;
        }
    }
}
