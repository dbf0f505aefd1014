//! The sending side: announce files, upload them chunk by chunk within the
//! channel's memory budget, and resume where a previous run stopped.
//!
//! Every input becomes a job (`driver.rs`) that the driver works
//! through a queue: `start` opens and announces it, `upload` streams its
//! chunks, `resupply` serves receivers' requests for files again, and
//! `repair` finds what a Redis restart lost. A step that finds lost work
//! answers so; the driver then puts the lost files, in their order, ahead
//! of the current one, so nothing calls back into the step that called it.

mod batch;
mod driver;
mod repair;
mod resupply;
mod split;
mod start;
mod upload;
mod whole;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;

use crate::error::{Error, Result};
use crate::files::names;
use crate::files::progress::Progress;
use crate::native::chunk;
use crate::native::codec::Compression;
use crate::native::lease::Lease;
use crate::native::pieces::Piece;
use crate::native::protocol::channel::Channel;
use crate::native::protocol::sending::Opened;
use crate::native::protocol::{Audience, Keys, VERSION};
use crate::native::rate::RateMeter;
use crate::native::status::{self, ParkedFile};
use crate::redis::Redis;
use crate::redis::memory;
use crate::redis::shards::Shards;

use driver::{Input, Job};

/// Default size of one chunk.
pub const DEFAULT_CHUNK_SIZE: u64 = 1 << 20;
/// How many bytes of a file one chunk of `chunk_size` holds when they
/// travel uncompressed (`--compress none`, or data compressed already).
pub fn raw_chunk_capacity(chunk_size: u64) -> u64 {
    chunk::raw_capacity(memory::slot_for(chunk_size))
}

/// Default memory budget of a channel.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

/// How the sender's role is named in messages.
const SENDER: &str = "the sender";

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
    /// `native/pieces.rs`).
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

    /// Refuses options that make no sense, before anything is connected.
    fn check(&self) -> Result<()> {
        names::check_channel_name(&self.channel)?;
        names::check_prefix(&self.prefix)?;
        if let Audience::Broadcast(ids) = &self.audience {
            if ids.is_empty() {
                return Err(Error::Usage(
                    "a broadcast needs at least one receiver".into(),
                ));
            }
            for id in ids {
                names::check_channel_name(id)?;
            }
        }
        if self.chunk_size == 0 {
            return Err(Error::Usage("--chunk-size must be at least 1 byte".into()));
        }
        match (self.split, &self.audience) {
            (Some(0), _) => Err(Error::Usage("--split must be at least 1 byte".into())),
            (Some(_), Audience::Broadcast(_)) => Err(Error::Usage(
                "--split is for work queues (--workers): each piece goes to one worker".into(),
            )),
            _ => Ok(()),
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

/// Where an input of this run came from, so it can be read again for
/// receivers that lost its data, or after Redis lost it.
#[derive(Clone, Debug)]
enum Origin {
    File(PathBuf),
    Piece(Piece),
    /// Read once; it cannot be read again.
    Stream,
}

/// An input of this run, with its place in the order inputs came in.
struct Remembered {
    order: u64,
    origin: Origin,
}

/// The server a sender last looked at: connection replacements and its
/// run id then, to notice a Redis that restarted.
struct Watch {
    reconnections: u64,
    run_id: Option<String>,
}

/// What a sender learns as it runs.
///
/// Behind one mutex in [`Sender`] because its public methods take `&self`:
/// a sender is shared by reference, and a library user may send files
/// from several tasks at once. The lock is never held across an await.
struct RunState {
    /// Every input of this run by name, to upload again for receivers
    /// that ask, or after Redis lost it.
    inputs: HashMap<String, Remembered>,
    /// How many inputs were remembered: the next one's place.
    remembered: u64,
    watch: Watch,
    /// Whether the end-of-input mark was set.
    finished: bool,
    /// The highest file id this sender was given: new ids stay above it.
    highest_fid: u64,
    /// Whether receivers may be waiting for files again (`wanted` was not
    /// empty when last seen).
    asked: bool,
    /// When the rate was last written for `status`: at most once a second.
    rate_written: Option<Instant>,
    /// Decoded copies of compressed inputs cut into pieces, kept while
    /// this sender runs to upload a piece again; deleted when it is dropped.
    copies: Vec<tempfile::TempPath>,
}

/// Feeds files into one channel.
pub struct Sender {
    channel: Channel,
    options: SendOptions,
    limit: u64,
    progress: Option<Arc<dyn Progress>>,
    /// The channel's one sender is this one.
    lease: Lease,
    /// On a Redis Cluster, the masters' room: a chunk for a master past
    /// half its `maxmemory` waits.
    shards: Option<Arc<Shards>>,
    /// Bytes uploaded over the last minute: the channel's rate in, which
    /// `status` shows (meta fields `rate` and `rate_at`).
    rate: RateMeter,
    /// What this run learned so far.
    run: Mutex<RunState>,
}

impl Sender {
    /// Connects to Redis and creates the channel, or joins it when a
    /// previous run with the same audience created it.
    pub async fn open(url: &str, options: SendOptions) -> Result<Self> {
        options.check()?;
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
        let watch = Watch {
            reconnections: channel.redis.reconnections(),
            run_id: channel.redis.run_id().await?,
        };
        let lease = Lease::take(&channel, "sender", SENDER).await?;
        // What an earlier run left behind (see `purge::remove_leftovers`).
        crate::native::purge::remove_leftovers(&channel).await?;
        // A wait an earlier run left marked is over, and so is its pace
        // (only the sender holding the lease may say so).
        channel.mark_waiting(false).await?;
        channel.forget_rate().await?;
        let shards = channel
            .redis
            .is_cluster()
            .then(|| Arc::new(Shards::new(channel.redis.clone())));
        let run = RunState {
            inputs: HashMap::new(),
            remembered: 0,
            watch,
            finished: false,
            highest_fid: 0,
            asked: true,
            rate_written: None,
            copies: Vec::new(),
        };
        Ok(Sender {
            channel,
            options,
            limit,
            progress: None,
            lease,
            shards,
            rate: RateMeter::default(),
            run: Mutex::new(run),
        })
    }

    /// Reports uploaded bytes to `progress` from now on.
    pub fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = Some(progress);
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
    /// `native/pieces.rs`.
    pub async fn send_file(&self, path: &Path, name: &str) -> Result<Sent> {
        names::check_file_name(name)?;
        self.lease.check(SENDER)?;
        if let Some(size) = self.options.split {
            return self.send_pieces(path, name, size).await;
        }
        self.before_each_file().await?;
        self.remember(name, Origin::File(path.to_owned()));
        let job = Job::given(name, Input::File(path.to_owned()));
        Ok(match self.drive(job).await? {
            Some(bytes) => Sent::Uploaded { bytes },
            None => Sent::AlreadySent,
        })
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
        self.remember(name, Origin::Stream);
        let job = Job::given(name, Input::Stream(Some(Box::new(reader))));
        // A stream is always announced anew, so it is always uploaded.
        Ok(self.drive(job).await?.unwrap_or_default())
    }

    /// Sets the end-of-input mark: receivers that are not following the
    /// channel exit once they have finished every file sent before it.
    ///
    /// An upload still unfinished then was left by an earlier run that
    /// stopped, and this run was not given its file again: receivers
    /// reading it would wait for it for good, so it is abandoned.
    pub async fn finish(&self) -> Result<()> {
        // This run's own uploads that Redis lost are done again first.
        self.repair_after_restart().await?;
        self.state().finished = true;
        self.abandon_left_uploads().await?;
        self.channel.mark_end_of_input().await?;
        Ok(())
    }

    /// Files of this channel that receivers or workers gave up on (by
    /// anyone, in any run): worth reporting once the work is done.
    pub async fn parked(&self) -> Result<Vec<ParkedFile>> {
        status::parked_files(&self.channel.redis, &self.channel.keys).await
    }

    /// This run's state; see [`RunState`].
    fn state(&self) -> MutexGuard<'_, RunState> {
        self.run.lock().expect("a sender's state")
    }

    /// Remembers an input of this run, to upload it again if asked.
    fn remember(&self, name: &str, origin: Origin) {
        let mut state = self.state();
        let order = state.remembered;
        state.remembered += 1;
        state
            .inputs
            .insert(name.to_owned(), Remembered { order, origin });
    }

    /// Before each file: repairs what a Redis restart lost, and serves
    /// requests for files again when the last announcement saw any (so a
    /// transfer without requests spends no round trip per file on them).
    async fn before_each_file(&self) -> Result<()> {
        if self.state().asked {
            self.resupply().await?;
        } else {
            self.repair_after_restart().await?;
        }
        Ok(())
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
            let mut state = self.state();
            let written = &mut state.rate_written;
            if written.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return Ok(());
            }
            *written = Some(Instant::now());
        }
        self.channel.write_rate(rate).await
    }

    /// Deletes finished files' chunks and, when `early`, chunks every
    /// receiver has consumed. Returns whether there was anything to delete.
    async fn release(&self, early: bool) -> Result<bool> {
        let plan = self.channel.release_plan(early).await?;
        self.channel.reclaim(&plan).await?;
        Ok(!plan.0.is_empty())
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
}

/// Creates the channel, or checks that the existing one has the same
/// audience and schema, and registers its name for `status`.
async fn create_channel(channel: &Channel, options: &SendOptions, limit: u64) -> Result<()> {
    let opened = channel
        .create(&options.audience, limit, options.chunk_size)
        .await?;
    let existing = match opened {
        Opened::Ready => return Ok(()),
        Opened::OtherVersion(found) => {
            return Err(Error::SchemaMismatch {
                channel: options.channel.clone(),
                found,
                expected: VERSION,
            });
        }
        Opened::OtherAudience { mode, receivers } => match mode.as_str() {
            "workers" => "as a work queue".to_owned(),
            "broadcast" => format!("as a broadcast to {receivers}"),
            other => format!("with mode {other}"),
        },
    };
    Err(Error::ChannelMismatch {
        channel: options.channel.clone(),
        existing,
    })
}

#[cfg(test)]
mod tests;
