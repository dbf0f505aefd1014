//! The receiving side: wait for announced files, stream their chunks as they
//! arrive, verify them, and acknowledge each one once its work is done.
//!
//! A receiver reads the channel's `files` stream through a consumer group
//! (its own in a broadcast, the shared `workers` group in a work queue), so
//! an announcement stays pending until acknowledged: a receiver restarted
//! with the same id first gets back everything it had not acknowledged.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use redis::streams::{StreamId, StreamReadReply};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::files::incoming::{AbortOnDrop, IncomingFile, PieceOf, Ticket};
use crate::files::names;
use crate::files::source::{self, Failure, FileSource};
use crate::native::channel::{Channel, Meta};
use crate::native::chunk;
use crate::native::lease::{self, Lease};
use crate::native::notice::WaitNotice;
use crate::native::protocol::{self, Audience, Keys};
use crate::native::rate::RateMeter;
use crate::native::status;
use crate::redis::{BLOCK, Redis};
use crate::telemetry;

/// Chunk reads kept in flight while streaming a file.
const PREFETCH: usize = 4;
/// Consumption is reported every this many chunks, and whenever the
/// receiver catches up with the upload (which is when a sender waiting for
/// room needs to know).
const REPORT_EVERY: u64 = 8;
/// Attempts at a file before it is parked.
pub const MAX_FAILURES: u32 = 3;
/// How many times a file may be uploaded again for a receiver that found
/// its data gone, before it is parked.
const MAX_RESUPPLIES: u32 = 3;
/// How many acknowledged files a receiver remembers, to recognise one that
/// a Redis restart without its latest writes offers again.
const REMEMBERED: usize = 10_000;

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
    /// Whether the announcements pending from an earlier run were all handled.
    pending_done: bool,
    /// The connection replacements when our pending announcements were
    /// last found handled: a Redis that restarted from an older snapshot
    /// brings back announcements we had read, which come before any new
    /// one, so after any replacement they are read again.
    pending_read_at: u64,
    /// A broadcast file to offer again after a failure, with its attempt count.
    retry: Option<(String, u64, u32)>,
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
}

/// A bounded set of the newest acknowledged files.
#[derive(Default)]
struct Remembered {
    order: std::collections::VecDeque<(String, String)>,
    set: std::collections::HashSet<(String, String)>,
}

impl Remembered {
    /// Remembers `file` (the channel's epoch and the file's name) with the
    /// identity of its source.
    fn insert(&mut self, file: &str, identity: &str) {
        if identity == "stream" {
            return; // never sent again under the same identity
        }
        let key = (file.to_owned(), identity.to_owned());
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }

    fn contains(&self, file: &str, identity: &str) -> bool {
        self.set.contains(&(file.to_owned(), identity.to_owned()))
    }
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
            pending_done: false,
            pending_read_at: 0,
            retry: None,
            attempts: HashMap::new(),
            parked: 0,
            epoch: String::new(),
            lease: None,
            acknowledged: Remembered::default(),
            awaited: std::sync::Mutex::new(Vec::new()),
            resume_first: None,
            rate: Arc::default(),
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
        if !file.is_verified() {
            return Err(Error::Corrupt {
                name: file.name().to_owned(),
                reason: "it was not read to its verified end".into(),
            });
        }
        let (fid, entry) = native(&file)?;
        self.attempts.remove(&entry);
        self.acknowledge(fid, &entry, "done", "", file.received())
            .await?;
        telemetry::file_received();
        let key = self.channel.keys.receiver(&self.options.id);
        self.channel
            .redis
            .query_pipe::<()>(
                "reporting progress",
                redis::pipe()
                    .hdel(&key, &["current", "at"])
                    .ignore()
                    // HSET of two fields, not redis-rs' `hset_multiple`,
                    // which sends HMSET: users of the documented ACL lack it.
                    .cmd("HSET")
                    .arg(&key)
                    .arg("seen")
                    .arg(lease::now_ms() as u64)
                    .arg("rate")
                    .arg(self.rate.add(0))
                    .ignore(),
            )
            .await?;
        if let Ticket::Native { identity, .. } = file.ticket() {
            self.acknowledged
                .insert(&format!("{}:{}", self.epoch, file.name()), identity);
        }
        Ok(())
    }

    /// Settles a file this receiver acknowledged before Redis forgot it,
    /// without reading it again.
    async fn ack_done_before(&mut self, file: IncomingFile) -> Result<()> {
        if !file.done_before() {
            return Err(source::not_done_before(&file));
        }
        let (fid, entry) = native(&file)?;
        let size = file.expected_size().unwrap_or(0);
        file.close().await;
        self.acknowledge(fid, &entry, "done", "", size).await
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
    /// Asks the sender to upload a file again whose data left Redis before
    /// we could read it; the file comes back as a new announcement.
    async fn request_again(
        &mut self,
        fid: u64,
        entry: &str,
        name: &str,
        reason: &str,
    ) -> Result<Failure> {
        let group = self
            .audience
            .as_ref()
            .map(|a| a.group_of(&self.options.id))
            .unwrap_or_default();
        self.attempts.remove(entry);
        let outcome: String = self
            .channel
            .run(
                "asking for a file again",
                &protocol::REQUEST,
                &[
                    fid.to_string(),
                    self.options.id.clone(),
                    group,
                    entry.to_owned(),
                    MAX_RESUPPLIES.to_string(),
                    reason.to_owned(),
                ],
            )
            .await?;
        match outcome.as_str() {
            "parked" => {
                self.parked += 1;
                Ok(Failure::Parked)
            }
            "wanted" => {
                tracing::info!("{name}: asked the sender to upload it again");
                Ok(Failure::WillRetry)
            }
            _ => Ok(Failure::WillRetry),
        }
    }

    /// The next file of the channel, or `None` at its end.
    async fn next_in_channel(&mut self) -> Result<Option<IncomingFile>> {
        let audience = self.join().await?;
        if let Some(lease) = &self.lease {
            lease.check(&self.role_shown())?;
        }
        if let Some(name) = self.resume_first.take()
            && let Some(file) = self.announced_again(&name).await?
        {
            return Ok(Some(file));
        }
        if let Some((entry, fid, attempt)) = self.retry.take() {
            // Seconds, growing: a failure that passes (a busy disk, a
            // restarting service) gets time to pass.
            tokio::time::sleep(Duration::from_secs(1 << attempt.saturating_sub(1).min(6))).await;
            if let Some(file) = self.open(&entry, fid).await? {
                return Ok(Some(file));
            }
        }
        // Whether the last wait was cut short: the next look is then a
        // quick one, which completes even where connections die younger
        // than a blocking read lasts, and whose empty answer, unlike a cut
        // wait's, proves that nothing new is waiting.
        let mut cut_short = false;
        let mut idle = WaitNotice::new();
        loop {
            let reconnections = self.channel.redis.reconnections();
            if reconnections != self.pending_read_at {
                self.pending_done = false;
            }
            if !self.pending_done {
                match self.read("0", None).await?.0 {
                    Some(entry) => {
                        if let Some(file) = self.handle(&entry).await? {
                            return Ok(Some(file));
                        }
                        continue;
                    }
                    None => {
                        self.pending_done = true;
                        self.pending_read_at = reconnections;
                    }
                }
            }
            if audience == Audience::Workers {
                self.requeue_stale().await?;
            }
            let ended_before = self.meta().await?.ended;
            let block = match audience {
                Audience::Workers => BLOCK.min(self.options.claim_after / 2),
                Audience::Broadcast(_) => BLOCK,
            };
            let (entry, cut) = self.read(">", (!cut_short).then_some(block)).await?;
            cut_short = cut;
            if cut {
                // An entry a lost reply delivered is pending now: read
                // pending entries first, oldest first.
                self.pending_done = false;
                continue;
            }
            match entry {
                Some(entry) => {
                    idle.over();
                    if let Some(file) = self.handle(&entry).await? {
                        return Ok(Some(file));
                    }
                    if self.at_end(&entry).await? {
                        return Ok(None);
                    }
                }
                // Nothing new arrived after the end mark was set.
                None if ended_before
                    && !self.options.follow
                    && self.all_finished(&audience).await? =>
                {
                    return Ok(None);
                }
                // Idle: look at our own pending entries again next time, in
                // case a reply carrying one was lost with a connection.
                None => {
                    self.pending_done = false;
                    // Following, idling is the normal state: said at -v.
                    if idle.due() {
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
                }
            }
        }
    }

    /// Waits for `name` to be announced again for us and opens it, leaving
    /// every other new announcement pending for later, in its order.
    /// `None` when it will not come (the sender gave up on it).
    async fn announced_again(&mut self, name: &str) -> Result<Option<IncomingFile>> {
        tracing::info!("{name}: waiting for it to be uploaded again before any other file");
        // Whatever is pending afterwards is read again, oldest first.
        self.pending_done = false;
        let mut looked_at = std::collections::HashSet::new();
        let mut notice = WaitNotice::new();
        loop {
            if let Some(lease) = &self.lease {
                lease.check(&self.role_shown())?;
            }
            if notice.due() {
                tracing::info!(
                    "{name}: still waiting for it to be uploaded again (later files wait behind it; \
                     `status` shows what the sender does)"
                );
            }
            for (entry, fid) in self.pending_files().await? {
                if !looked_at.insert(entry.clone()) {
                    continue;
                }
                let fields: (Option<String>, Option<String>) = self
                    .channel
                    .redis
                    .query(
                        "reading a file record",
                        redis::cmd("HMGET")
                            .arg(self.channel.keys.file(fid))
                            .arg("name")
                            .arg("for"),
                    )
                    .await?;
                let ours = |ids: &str| ids.split(',').any(|id| id == self.options.id);
                if fields.0.as_deref() == Some(name) && fields.1.as_deref().is_some_and(ours) {
                    return self.open(&entry, fid).await;
                }
            }
            let wanted: Option<String> = self
                .channel
                .redis
                .query(
                    "checking requests for files",
                    redis::cmd("HGET").arg(self.channel.keys.wanted()).arg(name),
                )
                .await?;
            let waiting = wanted.is_some_and(|value| {
                let receivers = value.rsplit(' ').next().unwrap_or_default();
                receivers.split(',').any(|id| id == self.options.id)
            });
            // Announced meanwhile (the request is gone with the same step),
            // or given up on.
            let (entry, _) = self.read(">", waiting.then_some(BLOCK)).await?;
            if entry.is_none() && !waiting {
                return Ok(None);
            }
        }
    }

    /// Our pending announcements of files, oldest first.
    async fn pending_files(&self) -> Result<Vec<(String, u64)>> {
        let group = self
            .audience
            .as_ref()
            .map(|a| a.group_of(&self.options.id))
            .unwrap_or_default();
        let reply: Option<StreamReadReply> = self
            .channel
            .redis
            .query(
                "reading announcements",
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg(&self.options.id)
                    .arg("STREAMS")
                    .arg(self.channel.keys.files())
                    .arg("0"),
            )
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|entry| {
                let fid = entry.get::<String>("fid")?.parse().ok()?;
                Some((entry.id, fid))
            })
            .collect())
    }

    /// Records a failed attempt at a file: offered again, or parked after
    /// [`MAX_FAILURES`] attempts in all.
    async fn settle_failure(&mut self, file: IncomingFile, error: Error) -> Result<Failure> {
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
        let (fid, entry) = native(&file)?;
        if let Ticket::Native { gone, .. } = file.ticket()
            && gone.load(Ordering::Acquire)
        {
            let failure = self.request_again(fid, &entry, file.name(), reason).await?;
            if self.options.in_order
                && failure == Failure::WillRetry
                && file.received() > 0
                && matches!(audience, Audience::Broadcast(_))
            {
                self.resume_first = Some(file.name().to_owned());
            }
            return Ok(failure);
        }
        match audience {
            Audience::Workers => {
                let outcome: String = self
                    .channel
                    .run(
                        "reporting a failure",
                        &protocol::FAILED,
                        &[
                            fid.to_string(),
                            self.options.id.clone(),
                            entry.clone(),
                            "0".into(),
                            max_failures.to_string(),
                            reason.to_owned(),
                        ],
                    )
                    .await?;
                if outcome == "parked" {
                    self.parked += 1;
                    return Ok(Failure::Parked);
                }
                Ok(Failure::WillRetry)
            }
            Audience::Broadcast(_) => {
                let attempts = self.attempts.entry(entry.clone()).or_insert(0);
                *attempts += 1;
                if *attempts >= max_failures {
                    let reason = format!(
                        "{reason} (failed {})",
                        crate::text::counted(*attempts, "time", "times")
                    );
                    self.attempts.remove(&entry);
                    self.acknowledge(fid, &entry, "parked", &reason, 0).await?;
                    self.parked += 1;
                    Ok(Failure::Parked)
                } else {
                    self.retry = Some((entry, fid, *attempts));
                    Ok(Failure::WillRetry)
                }
            }
        }
    }

    async fn acknowledge(
        &self,
        fid: u64,
        entry: &str,
        outcome: &str,
        reason: &str,
        bytes: u64,
    ) -> Result<()> {
        let group = self
            .audience
            .as_ref()
            .map(|a| a.group_of(&self.options.id))
            .unwrap_or_default();
        let plan: Vec<String> = self
            .channel
            .run(
                "acknowledging a file",
                &protocol::ACK,
                &[
                    fid.to_string(),
                    self.options.id.clone(),
                    group,
                    entry.to_owned(),
                    outcome.to_owned(),
                    reason.to_owned(),
                    bytes.to_string(),
                ],
            )
            .await?;
        self.channel.reclaim(&plan).await
    }

    /// How messages name this receiver's role.
    fn role_shown(&self) -> String {
        match &self.audience {
            Some(audience) => lease::role_of(audience, &self.options.id).1,
            None => format!("receiver {}", self.options.id),
        }
    }

    /// Waits for the channel to exist and checks that we belong to it.
    async fn join(&mut self) -> Result<Audience> {
        if let Some(audience) = &self.audience {
            return Ok(audience.clone());
        }
        let mut notice = WaitNotice::at_once();
        let meta = loop {
            if let Some(meta) = self.channel.meta().await? {
                break meta;
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
            self.channel
                .redis
                .wait::<redis::Value>(
                    "waiting for the channel",
                    redis::cmd("XREAD")
                        .arg("BLOCK")
                        .arg(BLOCK.as_millis() as u64)
                        .arg("STREAMS")
                        .arg(self.channel.keys.files())
                        .arg("0-0"),
                )
                .await?;
        };
        if let Audience::Broadcast(ids) = &meta.audience
            && !ids.contains(&self.options.id)
        {
            return Err(Error::UnknownReceiver {
                id: self.options.id.clone(),
                channel: self.options.channel.clone(),
                known: ids.join(", "),
            });
        }
        self.channel
            .redis
            .query::<()>(
                "registering the receiver",
                redis::cmd("SADD")
                    .arg(self.channel.keys.members())
                    .arg(&self.options.id),
            )
            .await?;
        let (role, shown) = lease::role_of(&meta.audience, &self.options.id);
        self.lease = Some(Lease::take(&self.channel, &role, &shown).await?);
        self.epoch = meta.fields.get("created_ms").cloned().unwrap_or_default();
        self.audience = Some(meta.audience.clone());
        Ok(meta.audience)
    }

    async fn meta(&self) -> Result<Meta> {
        self.channel.meta().await?.ok_or_else(|| Error::Protocol {
            key: self.channel.keys.meta(),
            reason: "the channel disappeared (was it purged?)".into(),
        })
    }

    /// Reads one announcement from our group: `0` for our own pending ones,
    /// `>` for new ones (blocking up to `block`). Also tells whether the
    /// read was cut short (a wait) or had to be retried: a read whose reply
    /// was lost with a connection may still have delivered an entry, which
    /// then waits among our pending ones and must be handled before
    /// anything newer.
    async fn read(
        &self,
        from: &'static str,
        block: Option<Duration>,
    ) -> Result<(Option<StreamId>, bool)> {
        let group = self
            .audience
            .as_ref()
            .map(|a| a.group_of(&self.options.id))
            .unwrap_or_default();
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(group)
            .arg(&self.options.id)
            .arg("COUNT")
            .arg(1);
        if let Some(block) = block {
            command.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        command
            .arg("STREAMS")
            .arg(self.channel.keys.files())
            .arg(from);
        let redis = &self.channel.redis;
        let (reply, cut): (Option<StreamReadReply>, bool) = if block.is_some() {
            match redis.wait("waiting for files", &command).await? {
                Some(reply) => (reply, false),
                None => (None, true),
            }
        } else {
            let attempts = AtomicU32::new(0);
            let reply = redis
                .retry("reading announcements", |mut con| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let command = &command;
                    async move { command.query_async(&mut con).await }
                })
                .await?;
            (reply, attempts.into_inner() > 1)
        };
        let entry = reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next());
        Ok((entry, cut))
    }

    /// Turns an announcement into a file to process, or handles it here
    /// (markers, vanished or refused files) and returns `None`.
    async fn handle(&mut self, entry: &StreamId) -> Result<Option<IncomingFile>> {
        let kind: String = entry.get("kind").unwrap_or_default();
        if kind != "file" {
            self.acknowledge(0, &entry.id, "skip", "", 0).await?;
            return Ok(None);
        }
        let Some(fid) = entry
            .get::<String>("fid")
            .and_then(|f| f.parse::<u64>().ok())
        else {
            // Poison: set aside, and go on with the next file.
            tracing::error!(
                "announcement {} in {} has no valid file id; skipping it",
                entry.id,
                self.channel.keys.files()
            );
            self.acknowledge(0, &entry.id, "skip", "", 0).await?;
            self.parked += 1;
            return Ok(None);
        };
        self.open(&entry.id, fid).await
    }

    /// Whether `entry` is the end-of-input mark we stop at.
    async fn at_end(&self, entry: &StreamId) -> Result<bool> {
        if self.options.follow || entry.get::<String>("kind").as_deref() != Some("eof") {
            return Ok(false);
        }
        let meta = self.meta().await?;
        let current = meta.ended && meta.fields.get("eof_id") == Some(&entry.id);
        Ok(current && self.all_finished(&meta.audience).await?)
    }

    /// Whether nothing is left for us: a broadcast receiver is done when its
    /// own queue is empty, a worker only when every file is finished (until
    /// then it stays to take over files of workers that die).
    /// Either way, files we (or any worker) asked to be uploaded again are
    /// still to come.
    async fn all_finished(&self, audience: &Audience) -> Result<bool> {
        let wanted: HashMap<String, String> = self
            .channel
            .redis
            .query(
                "checking requests for files",
                redis::cmd("HGETALL").arg(self.channel.keys.wanted()),
            )
            .await?;
        let who = match audience {
            Audience::Broadcast(_) => self.options.id.as_str(),
            Audience::Workers => "*",
        };
        let mut awaited: Vec<String> = wanted
            .into_iter()
            .filter(|(_, value)| {
                let receivers = value.rsplit(' ').next().unwrap_or_default();
                receivers.split(',').any(|r| r == who)
            })
            .map(|(name, _)| name)
            .collect();
        awaited.sort();
        let waiting = !awaited.is_empty();
        {
            let mut shown = self.awaited.lock().expect("awaited");
            if waiting && *shown != awaited {
                tracing::info!(
                    "waiting for the sender to upload again: {}",
                    awaited.join(", ")
                );
            }
            *shown = awaited;
        }
        if waiting {
            return Ok(false);
        }
        match audience {
            // Our own unacknowledged entries: one whose acknowledgement
            // Redis forgot (a restart) comes back as pending.
            // And announcements after the last one we read: files uploaded
            // again follow the end-of-input mark. Read after `wanted`, which
            // a file leaves in the same step that announces it.
            Audience::Broadcast(_) => {
                let files = self.channel.keys.files();
                let group = audience.group_of(&self.options.id);
                let ((pending, ..), groups, newest): (
                    (u64, redis::Value, redis::Value, redis::Value),
                    redis::streams::StreamInfoGroupsReply,
                    redis::streams::StreamRangeReply,
                ) = self
                    .channel
                    .redis
                    .query_pipe(
                        "checking progress",
                        redis::pipe()
                            .cmd("XPENDING")
                            .arg(&files)
                            .arg(&group)
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
            Audience::Workers => {
                let count: u64 = self
                    .channel
                    .redis
                    .query(
                        "checking progress",
                        redis::cmd("ZCARD").arg(self.channel.keys.active()),
                    )
                    .await?;
                Ok(count == 0)
            }
        }
    }

    /// Work queue: gives files held too long by silent workers to others.
    async fn requeue_stale(&self) -> Result<()> {
        let idle = self.options.claim_after.as_millis() as u64;
        let stale: Vec<(String, String, u64, u64)> = self
            .channel
            .redis
            .query(
                "looking for stalled files",
                redis::cmd("XPENDING")
                    .arg(self.channel.keys.files())
                    .arg("workers")
                    .arg("IDLE")
                    .arg(idle)
                    .arg("-")
                    .arg("+")
                    .arg(16),
            )
            .await?;
        for (entry, worker, _, _) in stale {
            let Some(fid) = self.fid_of(&entry).await? else {
                // A marker (or a vanished entry) left by a dead worker.
                self.acknowledge(0, &entry, "skip", "", 0).await?;
                continue;
            };
            let outcome: String = self
                .channel
                .run(
                    "taking over a stalled file",
                    &protocol::FAILED,
                    &[
                        fid.to_string(),
                        worker.clone(),
                        entry.clone(),
                        idle.to_string(),
                        MAX_FAILURES.to_string(),
                        format!("worker {worker} stopped responding"),
                    ],
                )
                .await?;
            tracing::info!("file {fid} held by silent worker {worker}: {outcome}");
        }
        Ok(())
    }

    async fn fid_of(&self, entry: &str) -> Result<Option<u64>> {
        let found: redis::streams::StreamRangeReply = self
            .channel
            .redis
            .query(
                "reading an announcement",
                redis::cmd("XRANGE")
                    .arg(self.channel.keys.files())
                    .arg(entry)
                    .arg(entry),
            )
            .await?;
        Ok(found
            .ids
            .first()
            .and_then(|e| e.get::<String>("fid"))
            .and_then(|f| f.parse().ok()))
    }

    /// Starts streaming file `fid`, or settles an announcement that cannot be
    /// processed.
    /// Parks a file whose record is malformed (poison), naming the key and
    /// the reason, so the receiver can go on with the next file.
    async fn set_aside(
        &mut self,
        fid: u64,
        entry: &str,
        key: &str,
        reason: String,
    ) -> Result<Option<IncomingFile>> {
        let reason = format!("{key}: {reason}");
        tracing::error!("{reason}; parking it");
        self.acknowledge(fid, entry, "parked", &reason, 0).await?;
        self.parked += 1;
        Ok(None)
    }

    async fn open(&mut self, entry: &str, fid: u64) -> Result<Option<IncomingFile>> {
        let key = self.channel.keys.file(fid);
        // Raw bytes: a record someone else wrote may hold anything, and
        // one bad record must not stop the receiver.
        let fields: HashMap<Vec<u8>, Vec<u8>> = self
            .channel
            .redis
            .query("reading a file record", redis::cmd("HGETALL").arg(&key))
            .await?;
        let field = |name: &str| fields.get(name.as_bytes()).map(Vec::as_slice);
        let state = field("state").unwrap_or_default();
        if fields.is_empty() || state == b"aborted" || state == b"done" {
            tracing::debug!("file {fid} was abandoned or already finished; skipping");
            self.acknowledge(fid, entry, "skip", "", 0).await?;
            return Ok(None);
        }
        let ours = |ids: &[u8]| {
            ids == b"*"
                || ids
                    .split(|&b| b == b',')
                    .any(|id| id == self.options.id.as_bytes())
        };
        let settled = fields.contains_key(format!("ack:{}", self.options.id).as_bytes());
        if settled || field("for").is_some_and(|ids| !ours(ids)) {
            // Settled by us already (a reply lost, or Redis rolled back),
            // or an upload again for other receivers.
            self.acknowledge(fid, entry, "skip", "", 0).await?;
            return Ok(None);
        }
        let name = match String::from_utf8(field("name").unwrap_or_default().to_vec()) {
            Ok(name) => name,
            Err(bad) => {
                let shown = String::from_utf8_lossy(bad.as_bytes()).into_owned();
                return self
                    .set_aside(fid, entry, &key, format!("its name {shown:?} is not UTF-8"))
                    .await;
            }
        };
        if let Err(refused) = names::check_file_name(&name) {
            tracing::error!("{refused}; parking it");
            self.acknowledge(fid, entry, "parked", &refused.to_string(), 0)
                .await?;
            self.parked += 1;
            return Ok(None);
        }
        let slot: u64 = field("chunk")
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if slot < 4096 {
            return self
                .set_aside(
                    fid,
                    entry,
                    &key,
                    "its record has no valid chunk size".into(),
                )
                .await;
        }
        let origin = field("origin")
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
            .unwrap_or(fid);
        let identity = String::from_utf8_lossy(field("identity").unwrap_or(b"stream")).into_owned();
        // Redis forgot our acknowledgement (it restarted without its latest
        // writes): whether the work is to be done again depends on where
        // its effect lives, which only the consumer knows.
        let done_before = self
            .acknowledged
            .contains(&format!("{}:{name}", self.epoch), &identity);
        let (sender, chunks) = mpsc::channel(PREFETCH);
        let verified = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(AtomicBool::new(false));
        let fetch = Fetch {
            channel: self.channel.clone(),
            receiver: self.options.id.clone(),
            fid,
            name: name.clone(),
            slot,
            verified: verified.clone(),
            gone: gone.clone(),
            rate: self.rate.clone(),
            rated: AtomicU64::new(0),
        };
        let mut tasks = vec![AbortOnDrop(tokio::spawn(fetch.run(sender)))];
        if self.audience == Some(Audience::Workers) {
            tasks.push(AbortOnDrop(tokio::spawn(heartbeat(
                self.channel.clone(),
                self.options.id.clone(),
                entry.to_owned(),
                (self.options.claim_after / 4).min(Duration::from_secs(1)),
            ))));
        }
        let size = expected_size(&identity);
        let piece = field("piece")
            .and_then(|field| std::str::from_utf8(field).ok())
            .and_then(|field| PieceOf::parse(&name, field));
        let ticket = Ticket::Native {
            fid,
            entry: entry.to_owned(),
            epoch: self.epoch.clone(),
            origin,
            identity,
            gone,
        };
        let file = IncomingFile::new(name, ticket, chunks, verified, tasks)
            .of_channel(&self.options.prefix, &self.options.channel)
            .expecting(size)
            .piece_of(piece);
        Ok(Some(if done_before {
            file.marked_done_before()
        } else {
            file
        }))
    }
}

/// The size a file had when the sender opened it: the first part of its
/// identity, `size:mtime`; `None` for a stream (identity `stream`).
fn expected_size(identity: &str) -> Option<u64> {
    identity.split_once(':')?.0.parse().ok()
}

/// A stream entry id (`ms-seq`) as numbers, to compare ids.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The file id and announcement of a file this receiver handed out.
fn native(file: &IncomingFile) -> Result<(u64, String)> {
    match file.ticket() {
        Ticket::Native { fid, entry, .. } => Ok((*fid, entry.clone())),
        Ticket::Classic { .. } => Err(Error::Usage(format!(
            "file {:?} came from a classic channel; acknowledge it there",
            file.name()
        ))),
    }
}

/// Keeps a worker's claim on a file fresh, so nobody takes it over while
/// the worker is alive, however long the work takes.
async fn heartbeat(channel: Channel, worker: String, entry: String, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let _ = channel
            .redis
            .query::<redis::Value>(
                "refreshing a claim",
                redis::cmd("XCLAIM")
                    .arg(channel.keys.files())
                    .arg("workers")
                    .arg(&worker)
                    .arg(0)
                    .arg(&entry)
                    .arg("JUSTID"),
            )
            .await;
    }
}

/// Streams one file's chunks from Redis into a channel, verifying size and
/// digest at the end. Errors travel as `io::Error`s to the reader.
struct Fetch {
    channel: Channel,
    receiver: String,
    fid: u64,
    name: String,
    /// The allocation of each chunk, which bounds its size.
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

/// The original bytes passed on so far.
#[derive(Default)]
struct Delivered {
    hasher: blake3::Hasher,
    received: u64,
}

impl Delivered {
    /// Passes on a restored chunk's bytes once restored. Returns whether
    /// the reader still wants them.
    async fn pass_on(
        &mut self,
        restored: tokio::task::JoinHandle<Result<Vec<Bytes>>>,
        out: &mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<bool> {
        let pieces = restored
            .await
            .map_err(|e| Error::io("restoring a chunk", std::io::Error::other(e)))??;
        for piece in pieces {
            self.hasher.update(&piece);
            self.received += piece.len() as u64;
            telemetry::bytes_received(piece.len() as u64);
            if out.send(Ok(piece)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// What the upload log says so far.
#[derive(Default)]
struct Progress {
    published: u64,
    /// The BLAKE3 digest of each published chunk, by index.
    digests: Vec<Option<blake3::Hash>>,
    end: Option<(u64, String)>,
    aborted: Option<String>,
    last_id: String,
}

impl Fetch {
    async fn run(self, out: mpsc::Sender<io::Result<Bytes>>) {
        if let Err(error) = self.stream(&out).await {
            let _ = out
                .send(Err(io::Error::new(io::ErrorKind::InvalidData, error)))
                .await;
        }
    }

    async fn stream(&self, out: &mpsc::Sender<io::Result<Bytes>>) -> Result<()> {
        let mut progress = Progress {
            last_id: "0-0".into(),
            ..Progress::default()
        };
        // Reading from the start: our old position must not let a sender
        // delete chunks we are about to read again.
        self.report(0, true, 0).await?;
        self.poll_log(&mut progress, None).await?;
        let mut delivered = Delivered::default();
        let mut requested = 0u64;
        let mut consumed = 0u64;
        let mut reported = 0u64;
        let mut in_flight = FuturesOrdered::new();
        let mut waiting = WaitNotice::new();
        // The chunk being restored while the one before goes out: at most
        // two restored chunks in memory, however many are being fetched.
        let mut restoring: Option<tokio::task::JoinHandle<Result<Vec<Bytes>>>> = None;
        loop {
            if let Some(reason) = &progress.aborted {
                return Err(self.corrupt(format!("the sender abandoned it: {reason}")));
            }
            while in_flight.len() < PREFETCH && requested < progress.published {
                let expected = progress.digests.get(requested as usize).copied().flatten();
                in_flight.push_back(self.get_checked_chunk(requested, expected));
                requested += 1;
            }
            let Some(data) = in_flight.next().await else {
                if let Some(restored) = restoring.take()
                    && !delivered.pass_on(restored, out).await?
                {
                    return Ok(()); // the reader went away; nothing to verify for
                }
                if progress.end.is_some() {
                    break;
                }
                if reported < consumed {
                    // About to wait: a sender short of room may free what we consumed.
                    self.report(consumed, false, delivered.received).await?;
                    reported = consumed;
                }
                if waiting.due() {
                    tracing::info!(
                        "{}: waiting for the sender to upload more ({consumed} of {} chunks published so far read)",
                        self.name,
                        progress.published
                    );
                }
                if !self.poll_log(&mut progress, Some(BLOCK)).await? {
                    self.check_record().await?;
                }
                continue;
            };
            waiting.over();
            let data = match data {
                Ok(Fetched::Verified(data)) => Ok(data),
                Ok(Fetched::Unchecked(data)) => self.checked(consumed, data, &progress).await,
                Ok(Fetched::Missing) => Err(self.missing(consumed).await),
                Err(error) => Err(error),
            };
            let data = match data {
                Ok(data) => data,
                Err(error) => {
                    // What was verified before still goes out.
                    if let Some(restored) = restoring.take() {
                        delivered.pass_on(restored, out).await?;
                    }
                    return Err(error);
                }
            };
            consumed += 1;
            if consumed.is_multiple_of(REPORT_EVERY) {
                self.report(consumed, false, delivered.received).await?;
                reported = consumed;
            }
            let (slot, name) = (self.slot, self.name.clone());
            let next = tokio::task::spawn_blocking(move || {
                chunk::decode(&data, slot).map_err(|reason| Error::Corrupt { name, reason })
            });
            if let Some(restored) = restoring.replace(next)
                && !delivered.pass_on(restored, out).await?
            {
                return Ok(());
            }
        }
        let Delivered { hasher, received } = delivered;
        self.rate
            .add(received.saturating_sub(self.rated.swap(received, Ordering::Relaxed)));
        let (size, digest) = progress.end.clone().unwrap_or_default();
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

    /// Checks a chunk against the digest published with it before any of
    /// its bytes go further, reading it once more if it does not match (a
    /// reply damaged on the way).
    async fn checked(&self, index: u64, data: Bytes, progress: &Progress) -> Result<Bytes> {
        let Some(expected) = progress.digests.get(index as usize).copied().flatten() else {
            return Err(self.corrupt(format!("chunk {index} was published without a digest")));
        };
        if blake3::hash(&data) == expected {
            return Ok(data);
        }
        tracing::warn!(
            "{}: chunk {index} does not match its digest; reading it again",
            self.name
        );
        match self.get_chunk(index).await? {
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

    /// Records how many chunks we consumed (see [`protocol::CONSUME`]),
    /// and for `status` the file, how far into it we are (`delivered`
    /// bytes passed on), when, and our pace.
    async fn report(&self, consumed: u64, restart: bool, delivered: u64) -> Result<()> {
        self.channel
            .run::<i64>(
                "reporting progress",
                &protocol::CONSUME,
                &[
                    self.fid.to_string(),
                    self.receiver.clone(),
                    consumed.to_string(),
                    if restart { "1" } else { "0" }.to_owned(),
                ],
            )
            .await?;
        let before = self.rated.swap(delivered, Ordering::Relaxed);
        let rate = self.rate.add(delivered.saturating_sub(before));
        self.channel
            .redis
            .query::<()>(
                "reporting progress",
                redis::cmd("HSET")
                    .arg(self.channel.keys.receiver(&self.receiver))
                    .arg("current")
                    .arg(&self.name)
                    .arg("at")
                    .arg(delivered)
                    .arg("seen")
                    .arg(lease::now_ms() as u64)
                    .arg("rate")
                    .arg(rate),
            )
            .await
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
        let freed: Option<u64> = self
            .channel
            .redis
            .query(
                "reading a file record",
                redis::cmd("HGET")
                    .arg(self.channel.keys.file(self.fid))
                    .arg("freed"),
            )
            .await
            .ok()
            .flatten();
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
        let read = self.get_chunk(index);
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

    fn get_chunk(&self, index: u64) -> impl Future<Output = Result<Option<Bytes>>> + use<> {
        let redis = self.channel.redis.clone();
        let mut command = redis::cmd("GET");
        command.arg(self.channel.keys.chunk(self.fid, index));
        async move {
            let data: Option<Vec<u8>> = redis.query("reading a chunk", &command).await?;
            Ok(data.map(Bytes::from))
        }
    }

    /// After a wait with no news: fails when the file's record is gone
    /// (Redis restarted without it, or the channel was purged), as nobody
    /// will ever add to its upload log.
    async fn check_record(&self) -> Result<()> {
        let exists: bool = self
            .channel
            .redis
            .query(
                "checking a file record",
                redis::cmd("EXISTS").arg(self.channel.keys.file(self.fid)),
            )
            .await?;
        if exists {
            return Ok(());
        }
        Err(self.corrupt(
            "its record vanished from Redis (restarted without its latest writes, or purged)"
                .into(),
        ))
    }

    /// Reads the upload log from where we left off, blocking up to `block`
    /// when it has nothing new. Returns whether anything new came.
    async fn poll_log(&self, progress: &mut Progress, block: Option<Duration>) -> Result<bool> {
        let mut command = redis::cmd("XREAD");
        command.arg("COUNT").arg(1000);
        if let Some(block) = block {
            command.arg("BLOCK").arg(block.as_millis() as u64);
        }
        command
            .arg("STREAMS")
            .arg(self.channel.keys.file_log(self.fid))
            .arg(&progress.last_id);
        let redis = &self.channel.redis;
        let reply: Option<StreamReadReply> = if block.is_some() {
            redis.wait("waiting for chunks", &command).await?.flatten()
        } else {
            redis.query("reading the upload log", &command).await?
        };
        let mut news = false;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            news = true;
            if let Some(n) = entry.get::<String>("n").and_then(|n| n.parse::<u64>().ok()) {
                progress.published = progress.published.max(n);
                let digests: String = entry.get("d").unwrap_or_default();
                let first = n.saturating_sub(digests.len() as u64 / 64);
                for (i, hex) in digests.as_bytes().chunks_exact(64).enumerate() {
                    let index = (first + i as u64) as usize;
                    if progress.digests.len() <= index {
                        progress.digests.resize(index + 1, None);
                    }
                    progress.digests[index] = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|hex| blake3::Hash::from_hex(hex).ok());
                }
            }
            if entry.get::<String>("end").is_some() {
                let size = entry
                    .get::<String>("size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                progress.end = Some((size, entry.get("digest").unwrap_or_default()));
            }
            if let Some(reason) = entry.get::<String>("abort") {
                progress.aborted = Some(reason);
            }
            progress.last_id = entry.id;
        }
        Ok(news)
    }
}
