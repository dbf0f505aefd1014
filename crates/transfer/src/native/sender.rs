//! The sending side: announce files, upload them chunk by chunk within the
//! channel's memory budget, and resume where a previous run stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use std::io::{Read, Seek};

use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::files::names;
use crate::files::progress::Progress;
use crate::native::channel::Channel;
use crate::native::chunk::{self, Packed};
use crate::native::codec::{Codec, Compression};
use crate::native::encoder::{self, Encoded, Layout, Snapshot};
use crate::native::lease::{self, Lease};
use crate::native::notice::WaitNotice;
use crate::native::pieces::{self, Piece};
use crate::native::protocol::reading::ReleasePlan;
use crate::native::protocol::{self, Audience, Keys};
use crate::native::rate::RateMeter;
use crate::native::status::{self, ParkedFile};
use crate::redis::memory;
use crate::redis::shards::Shards;
use crate::redis::{BLOCK, Redis};
use crate::telemetry;

/// Default size of one chunk.
pub const DEFAULT_CHUNK_SIZE: u64 = 1 << 20;
/// How many bytes of a file one chunk of `chunk_size` holds when they
/// travel uncompressed (`--compress none`, or data compressed already).
pub fn raw_chunk_capacity(chunk_size: u64) -> u64 {
    chunk::raw_capacity(memory::slot_for(chunk_size))
}

/// Default memory budget of a channel.
pub const DEFAULT_LIMIT: u64 = 1 << 30;
/// Chunk writes kept in flight at once: enough to hide round trips, few
/// enough to keep the sender's memory small.
const PIPELINE_DEPTH: u64 = 4;
/// Attempts at uploading one file when Redis keeps losing part of it.
const MAX_UPLOAD_ATTEMPTS: u32 = 3;

/// What a [`Sender`] needs to know about the channel it feeds.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The channel to send into; created by the first sender.
    pub channel: String,
    /// Prefix of every key (`rd` unless changed).
    pub prefix: String,
    /// Who gets each file.
    pub audience: Audience,
    /// Most bytes of file data the channel may hold in Redis.
    pub limit: u64,
    /// Redis memory per chunk key; rounded down to an allocator size class.
    pub chunk_size: u64,
    /// What is done to data before it goes into Redis.
    pub compress: Compression,
    /// Work with a Redis whose `maxmemory-policy` may evict our keys
    /// (`allkeys-*`), which can lose files in flight.
    pub allow_eviction: bool,
    /// Work queues only: cut each local file at line ends into pieces of
    /// about this many bytes, each a work item of its own (see
    /// `transfer/pieces.rs`).
    pub split: Option<u64>,
}

impl SendOptions {
    /// Options with the defaults for everything but the channel and audience.
    pub fn new(channel: impl Into<String>, audience: Audience) -> Self {
        SendOptions {
            channel: channel.into(),
            prefix: "rd".to_owned(),
            audience,
            limit: DEFAULT_LIMIT,
            chunk_size: DEFAULT_CHUNK_SIZE,
            compress: Compression::Auto,
            allow_eviction: false,
            split: None,
        }
    }
}

/// A file's announcement, new or found from an earlier run.
struct Announced {
    fid: u64,
    state: AnnounceState,
    /// Chunks an earlier run already published.
    published: u64,
    /// Original bytes those chunks hold.
    offset: u64,
    /// Bytes those chunks take in Redis.
    stored: u64,
    /// The chunk slot the file was begun with, which a resume keeps.
    slot: u64,
}

/// What `ANNOUNCE` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnnounceState {
    /// A new upload, or one an earlier run left unfinished.
    Upload,
    /// An earlier run sent this exact file.
    AlreadySent,
    /// A re-supply that must wait until the file's unfinished upload is done.
    Busy,
}

/// Where an input came from, so it can be read again for receivers that
/// lost its data.
#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Piece(Piece),
    Stream,
}

/// A request, from `P:{C}:wanted`, to upload a file again: the
/// receivers it is for, the identity it must still have, and the file id
/// and round the new upload continues from.
#[derive(Debug)]
struct Wanted {
    identity: String,
    round: u32,
    origin: String,
    receivers: String,
}

impl Wanted {
    /// Parses `fid identity round origin receivers`.
    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(' ');
        let _fid = parts.next()?;
        let identity = parts.next()?.to_owned();
        let round = parts.next()?.parse().ok()?;
        let origin = parts.next()?.to_owned();
        let receivers = parts.next()?.to_owned();
        if receivers.is_empty() || parts.next().is_some() {
            return None;
        }
        Some(Wanted {
            identity,
            round,
            origin,
            receivers,
        })
    }

    /// How many acknowledgements complete the new upload.
    fn acks_needed(&self) -> usize {
        if self.receivers == "*" {
            1
        } else {
            self.receivers.split(',').count()
        }
    }
}

/// What happened to one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Uploaded now (possibly resuming an earlier run's upload).
    Uploaded {
        /// The file's size.
        bytes: u64,
    },
    /// A previous run already sent this exact file.
    AlreadySent,
}

/// How the sender's role is named in messages.
const SENDER: &str = "the sender";

/// Feeds files into one channel.
pub struct Sender {
    channel: Channel,
    options: SendOptions,
    limit: u64,
    progress: Option<Arc<dyn Progress>>,
    /// The channel's one sender is this one.
    lease: Lease,
    /// Every input of this run by name, to upload again on request, with
    /// the order it came in.
    sources: Mutex<HashMap<String, (usize, Source)>>,
    /// Connection replacements and the server's run id when last looked
    /// at, to notice a Redis that restarted.
    watch: Mutex<(u64, Option<String>)>,
    /// Whether the end-of-input mark was set.
    finished: AtomicBool,
    /// Whether files Redis lost are being announced again, in their order.
    redoing: AtomicBool,
    /// The highest file id this sender was given: new ids stay above it.
    highest_fid: AtomicU64,
    /// Whether receivers may be waiting for files again (`wanted` was not
    /// empty when last seen).
    asked: AtomicBool,
    /// On a Redis Cluster, the masters' room: a chunk for a master past
    /// half its `maxmemory` waits.
    shards: Option<Arc<Shards>>,
    /// Decoded copies of compressed inputs cut into pieces, kept while
    /// this sender runs to upload a piece again; deleted when it is dropped.
    copies: Mutex<Vec<tempfile::TempPath>>,
    /// Bytes uploaded over the last minute: the channel's rate in, which
    /// `status` shows (meta fields `rate` and `rate_at`).
    rate: RateMeter,
    /// When the rate was last written: at most once a second.
    rate_written: Mutex<Option<Instant>>,
}

impl Sender {
    /// Connects to Redis and creates the channel, or joins it when a
    /// previous run with the same audience created it.
    pub async fn open(url: &str, options: SendOptions) -> Result<Self> {
        names::check_channel_name(&options.channel)?;
        names::check_prefix(&options.prefix)?;
        if let Audience::Broadcast(ids) = &options.audience {
            if ids.is_empty() {
                return Err(Error::Usage(
                    "a broadcast needs at least one receiver".into(),
                ));
            }
            for id in ids {
                names::check_channel_name(id)?;
            }
        }
        if options.chunk_size == 0 {
            return Err(Error::Usage("--chunk-size must be at least 1 byte".into()));
        }
        match (options.split, &options.audience) {
            (Some(0), _) => {
                return Err(Error::Usage("--split must be at least 1 byte".into()));
            }
            (Some(_), Audience::Broadcast(_)) => {
                return Err(Error::Usage(
                    "--split is for work queues (--workers): each piece goes to one worker".into(),
                ));
            }
            _ => {}
        }
        let redis = Redis::connect(url).await?;
        if !options.allow_eviction {
            redis.refuse_eviction().await?;
        }
        let limit = match redis.maxmemory().await? {
            Some(max) if options.limit > max / 2 => {
                tracing::info!(
                    "limiting the channel to {} (half of Redis' maxmemory)",
                    bytesize::ByteSize(max / 2)
                );
                max / 2
            }
            _ => options.limit,
        };
        let channel = Channel::new(redis, Keys::new(&options.prefix, &options.channel));
        create_channel(&channel, &options, limit).await?;
        let watch = (channel.redis.reconnections(), channel.redis.run_id().await?);
        let lease = Lease::take(&channel, "sender", SENDER).await?;
        // What an earlier run left behind (see `purge::remove_leftovers`).
        crate::native::purge::remove_leftovers(&channel).await?;
        // A wait an earlier run left marked is over, and so is its pace
        // (only the sender holding the lease may say so).
        mark_waiting(&channel, false).await?;
        let forget = redis::cmd("HDEL")
            .arg(channel.keys.meta())
            .arg(&["rate", "rate_at"])
            .clone();
        channel
            .redis
            .query::<()>("forgetting an earlier sender's pace", &forget)
            .await?;
        let shards = channel
            .redis
            .is_cluster()
            .then(|| Arc::new(Shards::new(channel.redis.clone())));
        Ok(Sender {
            channel,
            options,
            limit,
            progress: None,
            lease,
            sources: Mutex::new(HashMap::new()),
            watch: Mutex::new(watch),
            finished: AtomicBool::new(false),
            redoing: AtomicBool::new(false),
            highest_fid: AtomicU64::new(0),
            asked: AtomicBool::new(true),
            shards,
            rate: RateMeter::default(),
            rate_written: Mutex::new(None),
            copies: Mutex::new(Vec::new()),
        })
    }

    /// Reports uploaded bytes to `progress` from now on.
    pub fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = Some(progress);
    }

    fn report_progress(&self, bytes: u64) {
        if let Some(progress) = &self.progress {
            progress.advance(bytes);
        }
    }

    /// Adds `bytes` uploaded to the rate, and writes the rate for `status`
    /// when it was last written a second ago or more.
    async fn note_rate(&self, bytes: u64) -> Result<()> {
        let rate = self.rate.add(bytes);
        {
            let mut written = self.rate_written.lock().expect("rate time");
            if written.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return Ok(());
            }
            *written = Some(Instant::now());
        }
        let command = redis::cmd("HSET")
            .arg(self.channel.keys.meta())
            .arg("rate")
            .arg(rate)
            .arg("rate_at")
            .arg(lease::now_ms() as u64)
            .clone();
        self.channel
            .redis
            .query::<()>("telling status the upload rate", &command)
            .await
    }

    /// Records that `name` goes in the pieces `cut` describes (`pieces
    /// size identity`), unless an earlier run sent it cut otherwise: its
    /// pieces so far were counted, and pieces cut differently would count
    /// their lines again.
    async fn record_split(&self, name: &str, cut: &str) -> Result<()> {
        let key = self.channel.keys.split();
        let earlier: Option<String> = self
            .channel
            .redis
            .query(
                "reading a file's pieces",
                redis::cmd("HGET").arg(&key).arg(name),
            )
            .await?;
        match earlier {
            Some(earlier) if earlier != cut => Err(Error::Usage(format!(
                "{name} was sent in pieces by an earlier run ({earlier}: pieces, size, \
                 input size:mtime), now it would be {cut}; pieces cut otherwise would be \
                 counted again: send it with the same --split, or purge the channel"
            ))),
            Some(_) => Ok(()),
            None => {
                let record = redis::cmd("HSET").arg(&key).arg(name).arg(cut).clone();
                self.channel
                    .redis
                    .query::<()>("recording a file's pieces", &record)
                    .await
            }
        }
    }

    /// The budget actually in force (after the `maxmemory` cap).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Sends a local file under `name`, resuming an upload a previous run
    /// left unfinished, or skipping it when that run completed it. Files
    /// receivers asked for again are uploaded first.
    ///
    /// With [`SendOptions::split`], the file goes as pieces: see
    /// `transfer/pieces.rs`.
    pub async fn send_file(&self, path: &Path, name: &str) -> Result<Sent> {
        names::check_file_name(name)?;
        self.lease.check(SENDER)?;
        if let Some(size) = self.options.split {
            return self.send_pieces(path, name, size).await;
        }
        self.before_each_file().await?;
        self.remember(name, Source::File(path.to_owned()));
        Ok(match self.send_path(path, name, None, None).await? {
            Some(bytes) => Sent::Uploaded { bytes },
            None => Sent::AlreadySent,
        })
    }

    /// Sends `path` as pieces of about `size` bytes, decoding it first
    /// when it is compressed.
    async fn send_pieces(&self, path: &Path, name: &str, size: u64) -> Result<Sent> {
        let source = path.to_owned();
        let (pieces, copy, input) = tokio::task::spawn_blocking(move || {
            let metadata = std::fs::metadata(&source)?;
            let mtime = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let copy = pieces::plain_copy(&source)?;
            let plain = copy.as_ref().map_or(source.as_path(), |copy| copy);
            let input = format!("{}:{mtime}", metadata.len());
            Ok::<_, std::io::Error>((pieces::cut(plain, size, mtime)?, copy, input))
        })
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?
        .map_err(|e| Error::io(path, e))?;
        if let Some(copy) = copy {
            self.copies.lock().expect("copies").push(copy);
        }
        let count = pieces.len();
        self.record_split(name, &format!("{count} {size} {input}"))
            .await?;
        tracing::info!(pieces = count, "{name}: cut into {count} pieces");
        let mut uploaded = None;
        for piece in pieces {
            let piece_name = piece.name(name);
            self.before_each_file().await?;
            self.remember(&piece_name, Source::Piece(piece.clone()));
            let sent = self
                .send_path(&piece.path, &piece_name, None, Some(&piece))
                .await?;
            if let Some(bytes) = sent {
                *uploaded.get_or_insert(0) += bytes;
            }
        }
        Ok(match uploaded {
            Some(bytes) => Sent::Uploaded { bytes },
            None => Sent::AlreadySent,
        })
    }

    /// Uploads `path` as `name`: anew, resumed, or `again` for receivers
    /// that lost it. `None` when there was nothing to upload. An upload
    /// part of which Redis lost (it restarted without its latest writes)
    /// starts over from what Redis still has.
    async fn send_path(
        &self,
        path: &Path,
        name: &str,
        again: Option<&Wanted>,
        piece: Option<&Piece>,
    ) -> Result<Option<u64>> {
        let mut attempts = 1;
        loop {
            match self.upload_path(path, name, again, piece).await {
                Err(Error::UploadLost { .. }) if attempts < MAX_UPLOAD_ATTEMPTS => {
                    // Not Redis' doing if another sender took over while
                    // this one was paused.
                    self.lease.confirm(SENDER).await?;
                    tracing::warn!(
                        "{name}: Redis lost part of its upload (a restart without its latest writes); uploading it again"
                    );
                    attempts += 1;
                    // Files before this one that Redis lost too go first,
                    // in their order: receivers read files in the order
                    // they are announced.
                    Box::pin(self.repair_after_restart(Some(name))).await?;
                }
                outcome => return outcome,
            }
        }
    }

    /// Uploads `path`, or the `piece` of it, as `name`.
    async fn upload_path(
        &self,
        path: &Path,
        name: &str,
        again: Option<&Wanted>,
        piece: Option<&Piece>,
    ) -> Result<Option<u64>> {
        // Opened before it is announced: a file that vanished must not leave
        // an announcement behind that receivers would wait on.
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
        let mtime = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        // A piece is its length and the input's time, the same in every
        // run (a decoded copy's own time is not).
        let identity = match piece {
            Some(piece) => format!("{}:{}", piece.range.end - piece.range.start, piece.mtime),
            None => format!("{}:{mtime}", metadata.len()),
        };
        if let Some(again) = again
            && again.identity != identity
        {
            return Err(Error::SourceChanged {
                path: path.to_owned(),
                reason: "it changed since it was sent".into(),
            });
        }
        // A piece's identity was fixed when the file was cut: the file
        // must still be the one cut.
        if let Some(reason) = piece.and_then(|piece| piece.cut_from.differs(&metadata)) {
            return Err(Error::SourceChanged {
                path: path.to_owned(),
                reason: format!("{reason} since it was cut into pieces"),
            });
        }
        let piece_field = piece.map(Piece::field);
        let announced = self
            .announce(name, &identity, true, again, piece_field.as_deref())
            .await?;
        match announced.state {
            AnnounceState::AlreadySent => {
                tracing::info!("{name}: already sent by an earlier run; skipping");
                return Ok(None);
            }
            AnnounceState::Busy => return Ok(None),
            AnnounceState::Upload => {}
        }
        let prefix = announced.offset;
        let compression = self.options.compress;
        let owned_name = name.to_owned();
        let start = piece.map_or(0, |piece| piece.range.start);
        // Rebuild the digest of what an earlier run uploaded; reading goes on from there.
        let (file, hasher, codec) = tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            let mut file = file;
            let codec = encoder::codec_for_file(compression, &file, &owned_name)?;
            file.seek(std::io::SeekFrom::Start(start))?;
            hasher.update_reader((&mut file).take(prefix))?;
            std::io::Result::Ok((file, hasher, codec))
        })
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?
        .map_err(|e| Error::io(path, e))?;
        if prefix > 0 {
            tracing::info!(
                "{name}: resuming after {} uploaded by an earlier run",
                bytesize::ByteSize(prefix)
            );
            self.report_progress(prefix);
        }
        let layout = self.layout(&announced, codec);
        let piece_len = piece.map(|piece| piece.range.end - piece.range.start);
        let expected = piece.map_or(Snapshot::of(&metadata), |piece| piece.cut_from);
        let (incoming, reading) =
            encoder::encode_file(file, path, prefix, hasher, expected, layout, piece_len);
        let uploaded = self
            .upload(&announced, name, incoming)
            .await
            .map_err(|e| match e {
                Error::Io { source, .. } => match source.downcast::<Error>() {
                    Ok(ours) => ours,
                    Err(source) => Error::io(path, source),
                },
                other => other,
            });
        drop(reading);
        if let Err(Error::SourceChanged { reason, .. }) = &uploaded {
            self.channel
                .run::<i64>(
                    "abandoning an upload",
                    &protocol::ABORT,
                    &[
                        announced.fid.to_string(),
                        format!("the source changed while it was read: {reason}"),
                    ],
                )
                .await?;
        }
        match uploaded? {
            Uploaded::Finished(size) => Ok(Some(size)),
            Uploaded::Unread => {
                // Those who asked for it again are served before the next
                // file (or in the final wait), which has the room now.
                tracing::info!(
                    "{name}: everyone it was for asked for it again from the start; \
                     it is uploaded again for them"
                );
                self.asked.store(true, Ordering::Release);
                Ok(None)
            }
        }
    }

    /// Sends everything `reader` yields under `name`. A stream cannot be
    /// resumed, so an unfinished upload of the same name is abandoned.
    pub async fn send_reader<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        name: &str,
        reader: R,
    ) -> Result<u64> {
        names::check_file_name(name)?;
        if self.options.split.is_some() {
            return Err(Error::Usage(format!(
                "{name}: pieces are cut from files, so a stream cannot be sent with --split; \
                 save it to a file first"
            )));
        }
        self.lease.check(SENDER)?;
        self.before_each_file().await?;
        self.remember(name, Source::Stream);
        let announced = self.announce(name, "stream", false, None, None).await?;
        let layout = self.layout(&announced, Codec::Raw);
        let (incoming, _reading) = encoder::encode_stream(reader, self.options.compress, layout);
        match self.upload(&announced, name, incoming).await? {
            Uploaded::Finished(size) => Ok(size),
            Uploaded::Unread => Err(Error::Processing {
                name: name.to_owned(),
                reason: "every receiver gave up on it while it was sent (see `status`); \
                         a stream cannot be read again"
                    .into(),
            }),
        }
    }

    /// How chunks of an announced file are laid out.
    fn layout(&self, announced: &Announced, codec: Codec) -> Layout {
        Layout {
            slot: announced.slot,
            codec,
        }
    }

    /// Sets the end-of-input mark: receivers that are not following the
    /// channel exit once they have finished every file sent before it.
    ///
    /// An upload still unfinished then was left by an earlier run that
    /// stopped, and this run was not given its file again: receivers
    /// reading it would wait for it for good, so it is abandoned.
    pub async fn finish(&self) -> Result<()> {
        // This run's own uploads that Redis lost are done again first.
        self.repair_after_restart(None).await?;
        self.finished.store(true, Ordering::Release);
        self.abandon_left_uploads().await?;
        self.mark_end().await
    }

    /// Sets the end-of-input mark (again, after Redis lost it).
    async fn mark_end(&self) -> Result<()> {
        self.channel
            .run::<String>("marking the end of input", &protocol::END_INPUT, &[])
            .await?;
        Ok(())
    }

    /// Abandons every upload still unfinished: only at the end of this
    /// run's input, when none of them is this run's.
    async fn abandon_left_uploads(&self) -> Result<()> {
        let keys = &self.channel.keys;
        let active: Vec<u64> = self
            .channel
            .redis
            .query(
                "reading the files in flight",
                redis::cmd("ZRANGE").arg(keys.active()).arg(0).arg(-1),
            )
            .await?;
        if active.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for &fid in &active {
            pipe.cmd("HMGET")
                .arg(keys.file(fid))
                .arg("state")
                .arg("name");
        }
        let records: Vec<(Option<String>, Option<String>)> = self
            .channel
            .redis
            .query_pipe("reading the files in flight", &pipe)
            .await?;
        for (fid, (state, name)) in active.into_iter().zip(records) {
            let name = name.unwrap_or_default();
            if state.as_deref() != Some("uploading")
                || self.sources.lock().expect("sources").contains_key(&name)
            {
                continue;
            }
            tracing::warn!(
                "{name}: an earlier sender stopped while uploading it, and this run was not \
                 given it again; abandoning it (receivers skip it)"
            );
            self.channel
                .run::<i64>(
                    "abandoning an upload",
                    &protocol::ABORT,
                    &[
                        fid.to_string(),
                        "its sender stopped before finishing it and was not given it again".into(),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// Waits until every announced file is finished by all its receivers
    /// and its data is gone from Redis, uploading files again for
    /// receivers that lost them meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::NotSupplied`] when receivers wait for files this run cannot
    /// upload again (it was not given them).
    pub async fn wait_until_done(&self) -> Result<()> {
        let mut last_event = "0-0".to_owned();
        let mut notice = WaitNotice::new();
        loop {
            let unserved = self.resupply().await?;
            self.release(false).await?;
            let (active, reclaim, wanted, newest): (
                u64,
                u64,
                u64,
                redis::streams::StreamRangeReply,
            ) = {
                let keys = &self.channel.keys;
                self.channel
                    .redis
                    .query_pipe(
                        "checking progress",
                        redis::pipe()
                            .zcard(keys.active())
                            .scard(keys.reclaim())
                            .hlen(keys.wanted())
                            .cmd("XREVRANGE")
                            .arg(keys.events())
                            .arg("+")
                            .arg("-")
                            .arg("COUNT")
                            .arg(1),
                    )
                    .await?
            };
            if active == 0 && reclaim == 0 && wanted == unserved.len() as u64 {
                if !unserved.is_empty() {
                    return Err(Error::NotSupplied {
                        channel: self.options.channel.clone(),
                        names: unserved.join(", "),
                    });
                }
                // Empty because done, or because the state vanished?
                return match self.channel.meta().await? {
                    Some(_) => {
                        // Whatever a failover brought back (see
                        // `purge::remove_leftovers`): nothing of a finished
                        // file stays in Redis.
                        crate::native::purge::remove_leftovers(&self.channel).await?;
                        self.lease.release().await
                    }
                    None => Err(Error::Protocol {
                        key: self.channel.keys.meta(),
                        reason: "the channel vanished while receivers were working (purged, or Redis restarted without persistence); send again".into(),
                    }),
                };
            }
            if notice.due() {
                tracing::info!(
                    "every file is uploaded; waiting for {}",
                    self.awaited().await?
                );
            }
            if let Some(id) = newest.ids.into_iter().next().map(|e| e.id) {
                if id == last_event {
                    self.wait_for_event(&last_event).await?;
                }
                last_event = id;
            } else {
                self.wait_for_event(&last_event).await?;
            }
        }
    }

    /// Who the channel waits for, for a wait notice.
    async fn awaited(&self) -> Result<String> {
        let status = status::channel_status(
            &self.channel.redis,
            &self.options.prefix,
            &self.options.channel,
        )
        .await?;
        Ok(status.map_or_else(|| "receivers".into(), |status| status.awaited()))
    }

    /// Files of this channel that receivers or workers gave up on (by
    /// anyone, in any run): worth reporting once the work is done.
    pub async fn parked(&self) -> Result<Vec<ParkedFile>> {
        status::parked_files(&self.channel.redis, &self.channel.keys).await
    }

    /// Uploads again the files receivers asked for because their data left
    /// Redis before they could read it (released early, or lost by Redis),
    /// when this run has their source and it is unchanged; parks them for
    /// those receivers when it cannot be read again. Returns the names of
    /// wanted files that are not among this run's inputs (so far).
    pub async fn resupply(&self) -> Result<Vec<String>> {
        self.repair_after_restart(None).await?;
        let wanted: HashMap<String, String> = self
            .channel
            .redis
            .query(
                "reading requests for files",
                redis::cmd("HGETALL").arg(self.channel.keys.wanted()),
            )
            .await?;
        let mut unserved = Vec::new();
        for (name, value) in wanted {
            let Some(request) = Wanted::parse(&value) else {
                self.give_up(&name, &format!("its request {value:?} is malformed"))
                    .await?;
                continue;
            };
            let source = self
                .sources
                .lock()
                .expect("sources")
                .get(&name)
                .map(|(_, source)| source.clone());
            match source {
                None => unserved.push(name),
                Some(Source::Stream) => {
                    self.give_up(
                        &name,
                        "it was read from a stream, which cannot be read again",
                    )
                    .await?
                }
                Some(source @ (Source::File(_) | Source::Piece(_))) => {
                    let (path, piece) = match source {
                        Source::Piece(piece) => (piece.path.clone(), Some(piece)),
                        Source::File(path) => (path, None),
                        Source::Stream => unreachable!("matched above"),
                    };
                    tracing::info!(
                        "{name}: uploading it again for {} (its data left Redis before they could read it)",
                        if request.receivers == "*" {
                            "a worker".to_owned()
                        } else {
                            format!("receivers {}", request.receivers)
                        }
                    );
                    telemetry::file_sent_again();
                    match self
                        .send_path(&path, &name, Some(&request), piece.as_ref())
                        .await
                    {
                        Ok(_) => {}
                        Err(error @ (Error::SourceChanged { .. } | Error::Io { .. })) => {
                            self.give_up(&name, &format!("it cannot be supplied again: {error}"))
                                .await?
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        unserved.sort();
        self.asked.store(!unserved.is_empty(), Ordering::Release);
        Ok(unserved)
    }

    /// Before each file: repairs what a Redis restart lost, and serves
    /// requests for files again when the last announcement saw any (so a
    /// transfer without requests spends no round trip per file on them).
    async fn before_each_file(&self) -> Result<()> {
        if self.asked.load(Ordering::Acquire) {
            self.resupply().await?;
        } else {
            self.repair_after_restart(None).await?;
        }
        Ok(())
    }

    /// After Redis restarted (its run id changed), which may have lost its
    /// latest writes: finds what it lost of this run's work and does it
    /// again (the channel, files whose upload it no longer records as
    /// complete, the end-of-input mark). What receivers lost comes back
    /// through their requests ([`Sender::resupply`]). `uploading` is the
    /// file this sender is uploading now, if any: it repairs itself.
    async fn repair_after_restart(&self, uploading: Option<&str>) -> Result<()> {
        let redis = &self.channel.redis;
        let reconnections = redis.reconnections();
        if self.watch.lock().expect("watch").0 == reconnections {
            return Ok(());
        }
        let run_id = redis.run_id().await?;
        {
            let mut watch = self.watch.lock().expect("watch");
            let same = run_id.is_none() || watch.1 == run_id;
            *watch = (reconnections, run_id);
            if same {
                return Ok(());
            }
        }
        self.redo_lost_work(uploading).await
    }

    /// Does again what Redis lost of this run's work (see
    /// [`Sender::repair_after_restart`]), except the upload of `uploading`.
    async fn redo_lost_work(&self, uploading: Option<&str>) -> Result<()> {
        // Nested (Redis restarted again meanwhile): the outer one goes on.
        let outer = self.redoing.swap(true, Ordering::AcqRel);
        let redone = self.redo_in_order(uploading).await;
        self.redoing.store(outer, Ordering::Release);
        redone
    }

    async fn redo_in_order(&self, uploading: Option<&str>) -> Result<()> {
        let redis = &self.channel.redis;
        tracing::warn!("Redis restarted; checking whether it lost any of this run's work");
        create_channel(&self.channel, &self.options, self.limit).await?;
        // In the order they came: receivers read files in that order, so
        // the one they wait for goes first, not after newer files that
        // would fill the budget.
        let mut sources: Vec<(usize, String, Source)> = self
            .sources
            .lock()
            .expect("sources")
            .iter()
            .map(|(name, (order, source))| (*order, name.clone(), source.clone()))
            .collect();
        sources.sort_by_key(|(order, ..)| *order);
        let sources: Vec<(String, Source)> = sources
            .into_iter()
            .map(|(_, name, source)| (name, source))
            .collect();
        let mut pipe = redis::pipe();
        for (name, _) in &sources {
            pipe.hget(self.channel.keys.sent(), name);
        }
        let entries: Vec<Option<String>> = redis.query_pipe("checking sent files", &pipe).await?;
        for ((name, source), entry) in sources.iter().zip(entries) {
            if entry.is_some_and(|e| e.ends_with(" sent")) || uploading == Some(name.as_str()) {
                continue;
            }
            let (path, piece) = match source {
                Source::File(path) => (path, None),
                Source::Piece(piece) => (&piece.path, Some(piece)),
                Source::Stream => return Err(Error::UploadLost { name: name.clone() }),
            };
            tracing::warn!("{name}: Redis lost part of its upload; uploading it again");
            match self.send_path(path, name, None, piece).await {
                Ok(_) => {}
                // Gone or changed since it was sent: it cannot be sent
                // again, and that must not stop the others (nor the file
                // whose announcement found Redis behind).
                Err(error @ (Error::Io { .. } | Error::SourceChanged { .. })) => {
                    tracing::warn!("{name}: Redis lost it, and it cannot be sent again: {error}");
                }
                Err(error) => return Err(error),
            }
        }
        if self.finished.load(Ordering::Acquire) {
            self.mark_end().await?;
        }
        Ok(())
    }

    /// Remembers an input of this run, to upload it again if asked.
    fn remember(&self, name: &str, source: Source) {
        let mut sources = self.sources.lock().expect("sources");
        let order = sources.len();
        sources.insert(name.to_owned(), (order, source));
    }

    /// Parks a wanted file for the receivers that wanted it.
    async fn give_up(&self, name: &str, reason: &str) -> Result<()> {
        tracing::warn!("{name}: {reason}; parking it for the receivers that lost it");
        self.channel
            .run::<i64>(
                "parking a file",
                &protocol::GIVE_UP,
                &[name.to_owned(), reason.to_owned()],
            )
            .await?;
        Ok(())
    }

    async fn announce(
        &self,
        name: &str,
        identity: &str,
        resumable: bool,
        again: Option<&Wanted>,
        piece: Option<&str>,
    ) -> Result<Announced> {
        let (needed, again_args) = match again {
            Some(w) => (
                w.acks_needed(),
                [w.receivers.clone(), w.origin.clone(), w.round.to_string()],
            ),
            None => (self.options.audience.acks_needed(), Default::default()),
        };
        let mut args = vec![
            name.to_owned(),
            identity.to_owned(),
            if resumable { "1" } else { "0" }.to_owned(),
            memory::slot_for(self.options.chunk_size).to_string(),
            needed.to_string(),
        ];
        args.extend(again_args);
        args.push((self.highest_fid.load(Ordering::Acquire) + 1).to_string());
        args.push(piece.unwrap_or_default().to_owned());
        // Not while redoing what Redis lost: those announcements are the
        // ones it lacks.
        args.push(
            if self.redoing.load(Ordering::Acquire) {
                "0"
            } else {
                "1"
            }
            .to_owned(),
        );
        let (fid, state, published, slot, offset, stored, requests) = loop {
            let answer: (String, String, u64, u64, u64, u64, u64) = self
                .channel
                .run("announcing a file", &protocol::ANNOUNCE, &args)
                .await?;
            if answer.1 != "forgot" {
                break answer;
            }
            // Found by the very step that would otherwise announce this
            // file ahead of older ones Redis lost: the restart may not
            // have cut any connection of ours yet.
            *self.watch.lock().expect("watch") = (
                self.channel.redis.reconnections(),
                self.channel.redis.run_id().await?,
            );
            Box::pin(self.redo_lost_work(Some(name))).await?;
            // Asked once: whatever Redis still lacks now, this file goes on.
            *args.last_mut().expect("the last argument") = "0".to_owned();
        };
        self.asked.store(requests > 0, Ordering::Release);
        let fid = fid.parse().map_err(|_| Error::Protocol {
            key: self.channel.keys.meta(),
            reason: format!("file id {fid:?} is not a number"),
        })?;
        self.highest_fid.fetch_max(fid, Ordering::AcqRel);
        Ok(Announced {
            fid,
            state: match state.as_str() {
                "sent" => AnnounceState::AlreadySent,
                "busy" => AnnounceState::Busy,
                _ => AnnounceState::Upload,
            },
            published,
            offset,
            stored,
            slot,
        })
    }

    /// Uploads the rest of a file from chunk `next` on, as `incoming`
    /// yields its chunks, then records its size and digest.
    ///
    /// Chunks come from the encoding tasks, so a chunk is written and
    /// published as soon as it is complete, even while the input is slow
    /// to yield the next one (a pipe, a growing log).
    async fn upload(
        &self,
        announced: &Announced,
        name: &str,
        mut incoming: mpsc::Receiver<std::io::Result<Encoded>>,
    ) -> Result<Uploaded> {
        let fid = announced.fid;
        let mut next = announced.published;
        let mut reserved = 0;
        let mut published = next;
        let mut in_flight = FuturesOrdered::new();
        let mut last_event = "0-0".to_owned();
        let mut end = None;
        let mut notice = WaitNotice::new();
        // Whether `status` was told that we wait for room.
        let mut said_waiting = false;
        // Chunks written but not yet published, oldest first: each is
        // published with its digest, so receivers check every chunk
        // before a byte of it reaches their output.
        let mut written: Vec<Written> = Vec::new();
        let mut totals = Totals {
            original: announced.offset,
            stored: announced.stored,
            // Until a chunk is published here: a full one, the most it costs.
            last_cost: announced.slot + memory::KEY_COST,
        };
        loop {
            if end.is_none() && next >= reserved {
                let (granted, event): (i64, String) = self
                    .channel
                    .run(
                        "reserving room",
                        &protocol::RESERVE,
                        &[
                            fid.to_string(),
                            (next + PIPELINE_DEPTH).to_string(),
                            self.limit.to_string(),
                            published.to_string(),
                        ],
                    )
                    .await?;
                last_event = event;
                if granted == -2 {
                    return Err(Error::UploadLost {
                        name: name.to_owned(),
                    });
                }
                if granted == -3 {
                    return Ok(Uploaded::Unread);
                }
                if granted < 0 {
                    return Err(Error::Processing {
                        name: name.to_owned(),
                        reason: "another sender took over this upload".into(),
                    });
                }
                reserved = granted as u64;
            }
            let may_read =
                end.is_none() && next < reserved && (in_flight.len() as u64) < PIPELINE_DEPTH;
            if in_flight.is_empty() && !may_read {
                if end.is_some() {
                    break;
                }
                telemetry::waiting_for_room(true);
                if notice.due() {
                    if !said_waiting {
                        said_waiting = true;
                        mark_waiting(&self.channel, true).await?;
                    }
                    tracing::info!(
                        "{name}: the channel holds its limit ({}); waiting for {}",
                        bytesize::ByteSize(self.limit),
                        self.awaited().await?
                    );
                }
                // Receivers may be waiting for an older file Redis lost in a
                // restart, which nothing but this sender uploads again.
                Box::pin(self.repair_after_restart(Some(name))).await?;
                if !self.release(true).await? {
                    self.wait_for_event(&last_event).await?;
                }
                continue;
            }
            if notice.over() {
                telemetry::waiting_for_room(false);
            }
            if std::mem::take(&mut said_waiting) {
                mark_waiting(&self.channel, false).await?;
            }
            tokio::select! {
                done = in_flight.next(), if !in_flight.is_empty() => {
                    written.push(done.expect("in flight")?);
                    // Publish every write that is already complete in one step.
                    while let Some(Some(done)) = in_flight.next().now_or_never() {
                        written.push(done?);
                    }
                    let bytes = totals.add(&written);
                    let digests: String = written
                        .drain(..)
                        .map(|chunk| chunk.digest.to_hex().to_string())
                        .collect();
                    let count = published + digests.len() as u64 / 64;
                    if !self.publish(fid, published, count, &digests, &totals).await? {
                        return Err(Error::UploadLost {
                            name: name.to_owned(),
                        });
                    }
                    published = count;
                    self.report_progress(bytes);
                    if let Err(error) = self.note_rate(bytes).await {
                        // Only `status` reads it: not worth failing an upload.
                        tracing::debug!("could not record the upload rate: {error}");
                    }
                }
                chunk = incoming.recv(), if may_read => match chunk {
                    Some(Ok(Encoded::Chunk(packed))) => {
                        in_flight.push_back(self.write_chunk(fid, next, packed));
                        next += 1;
                    }
                    Some(Ok(Encoded::End { size, digest })) => end = Some((size, digest)),
                    Some(Err(error)) => return Err(Error::io(name, error)),
                    None => return Err(Error::io(name, std::io::Error::other("reading stopped"))),
                },
            }
        }
        let (size, digest) = end.expect("the loop ends at the end of input");
        let recorded: i64 = self
            .channel
            .run(
                "finishing a file",
                &protocol::FINISH,
                &[
                    fid.to_string(),
                    size.to_string(),
                    digest.to_hex().to_string(),
                    published.to_string(),
                    totals.last_cost.to_string(),
                ],
            )
            .await?;
        if recorded < 0 {
            return Err(Error::UploadLost {
                name: name.to_owned(),
            });
        }
        if recorded == 0 {
            return Err(Error::Processing {
                name: name.to_owned(),
                reason:
                    "its upload was abandoned meanwhile (another sender run took this file over)"
                        .into(),
            });
        }
        tracing::debug!(
            "{name}: sent {} as {}",
            bytesize::ByteSize(size),
            bytesize::ByteSize(totals.stored)
        );
        telemetry::file_sent(size, totals.stored);
        Ok(Uploaded::Finished(size))
    }

    /// Publishes chunks `from..count`, whose BLAKE3 digests `digests`
    /// holds as concatenated hex; `totals` covers chunks `0..count`.
    /// `false` when Redis lost earlier publications of the file: the
    /// upload must start over from what Redis has.
    async fn publish(
        &self,
        fid: u64,
        from: u64,
        count: u64,
        digests: &str,
        totals: &Totals,
    ) -> Result<bool> {
        let published: i64 = self
            .channel
            .run(
                "publishing chunks",
                &protocol::PUBLISH,
                &[
                    fid.to_string(),
                    from.to_string(),
                    count.to_string(),
                    digests.to_owned(),
                    totals.original.to_string(),
                    totals.stored.to_string(),
                ],
            )
            .await?;
        Ok(published >= 0)
    }

    /// Writes one chunk, hashing it meanwhile on the blocking pool.
    fn write_chunk(
        &self,
        fid: u64,
        index: u64,
        packed: Packed,
    ) -> impl Future<Output = Result<Written>> + use<> {
        let redis = self.channel.redis.clone();
        let key = self.channel.keys.chunk(fid, index);
        let shards = self.shards.clone();
        async move {
            let data = packed.data;
            let hashing = tokio::task::spawn_blocking({
                let data = data.clone();
                move || blake3::hash(&data)
            });
            if let Some(shards) = shards {
                shards.wait_for_room(&key).await?;
            }
            // The data's one copy: into the command, which every attempt sends.
            let mut command = redis::cmd("SET");
            command.arg(key).arg(data.as_ref());
            redis.query::<()>("writing a chunk", &command).await?;
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

    /// Deletes finished files' chunks and, when `early`, chunks every
    /// receiver has consumed. Returns whether there was anything to delete.
    async fn release(&self, early: bool) -> Result<bool> {
        let early = if early { "1" } else { "0" };
        let plan: Vec<String> = self
            .channel
            .run(
                "planning deletions",
                &protocol::RELEASE_PLAN,
                &[early.to_owned()],
            )
            .await?;
        let plan = ReleasePlan::parse(&self.channel.keys.meta(), &plan)?;
        self.channel.reclaim(&plan).await?;
        Ok(!plan.0.is_empty())
    }

    /// Blocks until a receiver reports progress after `last_event`, or for
    /// at most [`BLOCK`].
    async fn wait_for_event(&self, last_event: &str) -> Result<()> {
        self.channel
            .redis
            .wait::<redis::Value>(
                "waiting for receivers",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(BLOCK.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(self.channel.keys.events())
                    .arg(last_event),
            )
            .await?;
        Ok(())
    }
}

/// Tells `status` since when the channel's sender waits for room (meta
/// field `waiting`, Unix ms), or that it no longer does.
async fn mark_waiting(channel: &Channel, waiting: bool) -> Result<()> {
    let meta = channel.keys.meta();
    let command = if waiting {
        let mut command = redis::cmd("HSET");
        command
            .arg(&meta)
            .arg("waiting")
            .arg(lease::now_ms() as u64);
        command
    } else {
        let mut command = redis::cmd("HDEL");
        command.arg(&meta).arg("waiting");
        command
    };
    channel
        .redis
        .query::<()>("telling status about a wait", &command)
        .await
}

/// Creates the channel, or checks that the existing one has the same
/// audience and schema, and registers its name for `status`.
async fn create_channel(channel: &Channel, options: &SendOptions, limit: u64) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mismatch: Vec<String> = channel
        .run(
            "creating the channel",
            &protocol::OPEN,
            &[
                options.audience.mode().to_owned(),
                options.audience.receivers_field(),
                limit.to_string(),
                options.chunk_size.to_string(),
                now.to_string(),
                protocol::VERSION.to_owned(),
            ],
        )
        .await?;
    if let [mode, receivers] = mismatch.as_slice() {
        if let Some(found) = mode.strip_prefix("version ") {
            return Err(Error::SchemaMismatch {
                channel: options.channel.clone(),
                found: found.to_owned(),
                expected: protocol::VERSION,
            });
        }
        return Err(Error::ChannelMismatch {
            channel: options.channel.clone(),
            existing: match mode.as_str() {
                "workers" => "as a work queue".to_owned(),
                "broadcast" => format!("as a broadcast to {receivers}"),
                other => format!("with mode {other}"),
            },
        });
    }
    channel
        .redis
        .query::<()>(
            "registering the channel",
            redis::cmd("SADD")
                .arg(channel.keys.channels())
                .arg(&options.channel),
        )
        .await?;
    Ok(())
}

/// How an upload ended.
enum Uploaded {
    /// Every byte is in Redis: the file's size.
    Finished(u64),
    /// Abandoned unfinished: everyone it was for settled it already
    /// (see [`protocol::RESERVE`]).
    Unread,
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
