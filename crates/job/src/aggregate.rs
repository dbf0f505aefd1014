//! The flagship job: visits per day by country, region and city, counted by
//! a receiver while the logs stream, and added into the book's sorted sets
//! `daily:<dimension>:<day>` exactly once per file.
//!
//! Counting happens in local memory per file; at the end of a file each
//! (dimension, day) sorted set gets its increments in one Lua script that
//! first adds the file's token to a marker set next to it,
//! `{daily:country:<day>}:applied`. The braces make the marker hash to the
//! sorted set's own slot, so the step stays legal on Redis Cluster; the
//! marker makes a redelivered file (a worker died after counting, before
//! acknowledging) add nothing twice, key by key.

use std::sync::Arc;

use crate::geo::{self, GeoTable};
use crate::logline::LineOptions;
use crate::report::Dimension;
use redistribute_transfer::error::Result;
use redistribute_transfer::files::incoming::IncomingFile;
use redistribute_transfer::files::source::FileSource;
use redistribute_transfer::redis::Redis;

mod apply;
mod blocks;
mod counts;

pub use counts::FileCounts;

/// What the member of a visit from an address not in the table is called.
pub const UNKNOWN: &str = "unknown";

/// What an aggregation run needs besides its source of files.
#[derive(Clone, Debug)]
pub struct AggregateOptions {
    /// Key prefix of the channel and of the location table in Redis.
    pub prefix: String,
    /// What to count visits by; each has its own sorted sets.
    pub dimensions: Vec<Dimension>,
    /// How the log lines are read.
    pub lines: LineOptions,
    /// Read the location table from these files instead of Redis.
    pub table_files: Vec<std::path::PathBuf>,
    /// What the counts' keys start with: empty for the book's `daily:*`,
    /// `P:` to keep them apart (see [`Dimension::day_key`]).
    pub namespace: String,
    /// How long after its day a day's counts (and their markers) stay in
    /// Redis; `None`: until deleted by hand.
    pub keep: Option<std::time::Duration>,
}

/// Counts every file `files` hands out until it ends (never, for a
/// following receiver), adding each file's visits to Redis exactly once
/// before acknowledging it. A file that cannot be read to its verified end
/// is reported to `files` as failed. Returns the number of files counted;
/// [`FileSource::parked`] tells the files given up on.
///
/// # Errors
///
/// Redis errors that outlast the retries, a location table that cannot be
/// loaded, and a failure `files` cannot record (the book's format).
pub async fn run<S: FileSource>(
    redis: &Redis,
    files: &mut S,
    options: &AggregateOptions,
) -> Result<u64> {
    let counted = count_each(redis, files, options).await;
    // Acknowledgements under way are recorded, whatever stopped the work.
    let closed = files.close().await;
    let counted = counted?;
    closed?;
    Ok(counted)
}

/// [`run`] but for waiting for the acknowledgements.
async fn count_each<S: FileSource>(
    redis: &Redis,
    files: &mut S,
    options: &AggregateOptions,
) -> Result<u64> {
    let mut job = Job {
        redis,
        options,
        table: Table::load(redis, options).await?,
    };
    let mut counted_files = 0;
    while let Some(mut file) = files.next_file().await? {
        job.table.refresh(redis, options).await?;
        let name = file.title();
        if file.done_before() {
            // Redis came back from a snapshot older than our acknowledgement:
            // the counts it kept are marked, so counting again adds only
            // what it lost.
            tracing::info!(
                "{name}: counted before Redis restarted without its latest writes; \
                 counting it again (what Redis kept of its counts is not added twice)"
            );
        }
        let table = job.table.geo.clone();
        let counts = match FileCounts::count_file(&mut file, table, &options.lines).await {
            Ok(counts) => counts,
            Err(error) => {
                // Said only once the source recorded it: a source that
                // cannot (the book's) returns the error, shown by the caller.
                let shown = error.to_string();
                files.fail(file, error).await?;
                tracing::warn!("{shown}");
                continue;
            }
        };
        crate::telemetry::lines_counted(counts.lines, counts.unparsed);
        job.add_then_acknowledge(files, file, &counts).await?;
        counted_files += 1;
        tracing::info!("counted {name}: {} lines", counts.lines);
    }
    Ok(counted_files)
}

/// What counting the files of one run takes.
struct Job<'a> {
    redis: &'a Redis,
    options: &'a AggregateOptions,
    table: Table,
}

impl Job<'_> {
    /// Adds a counted file's visits to Redis, then acknowledges it. A
    /// Redis that restarted from a snapshot between the two holds the
    /// acknowledgement without the counts: they are added again; the
    /// markers keep what it did keep from counting twice.
    async fn add_then_acknowledge<S: FileSource>(
        &self,
        files: &mut S,
        file: IncomingFile,
        counts: &FileCounts,
    ) -> Result<()> {
        let (redis, options, table) = (self.redis, self.options, &self.table.geo);
        let (name, token) = (file.title(), file.token().to_owned());
        let mut server = redis.run_id().await?;
        counts.apply(redis, table, options, &token).await?;
        if !counts.format.is_empty() {
            tracing::debug!("{name}: read as {}", counts.format);
        }
        if counts.unparsed > 0 {
            tracing::warn!("{name}: {}", counts.unparsed_summary());
            files.record_unparsed(&file, counts.unparsed).await?;
        }
        files.ack(file).await?;
        loop {
            let now = redis.run_id().await?;
            if now == server {
                return Ok(());
            }
            tracing::info!(
                "{name}: Redis restarted while it was being counted; adding what it lost of the counts"
            );
            server = now;
            counts.apply(redis, table, options, &token).await?;
        }
    }
}

/// The location table, and where it came from, so a newer import can be
/// picked up between files.
struct Table {
    geo: Arc<GeoTable>,
    origin: Origin,
}

/// Where a location table came from.
enum Origin {
    Files,
    Redis(u64),
    Builtin,
}

impl Table {
    /// The table `options` names, else the one imported into Redis, else
    /// the built-in country table.
    async fn load(redis: &Redis, options: &AggregateOptions) -> Result<Self> {
        let (files, prefix) = (&options.table_files, &options.prefix);
        if !files.is_empty() {
            return Ok(Table {
                geo: Arc::new(GeoTable::from_files(files)?),
                origin: Origin::Files,
            });
        }
        let (geo, origin) = match geo::load(redis, prefix).await? {
            Some((version, table)) => {
                tracing::info!("using location table version {version} from Redis");
                (table, Origin::Redis(version))
            }
            None => {
                tracing::info!("no location table imported; using the built-in country table");
                (GeoTable::builtin()?, Origin::Builtin)
            }
        };
        Ok(Table {
            geo: Arc::new(geo),
            origin,
        })
    }

    /// Loads the table again when a newer one was imported into Redis.
    async fn refresh(&mut self, redis: &Redis, options: &AggregateOptions) -> Result<()> {
        let prefix = &options.prefix;
        let stale = match self.origin {
            Origin::Files => false,
            Origin::Redis(version) => geo::current_version(redis, prefix).await? != Some(version),
            Origin::Builtin => geo::current_version(redis, prefix).await?.is_some(),
        };
        if stale {
            *self = Table::load(redis, options).await?;
        }
        Ok(())
    }
}
