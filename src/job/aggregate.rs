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

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;
use tokio::io::AsyncBufReadExt;

use crate::error::{Error, Result};
use crate::files::decode::Decode;
use crate::files::incoming::IncomingFile;
use crate::files::source::FileSource;
use crate::job::geo::{self, GeoTable};
use crate::job::logline::{self, Address, LogFormat};
use crate::job::report::Dimension;
use crate::redis::Redis;
use crate::transfer::protocol::Keys;

/// Longest line we look at; longer ones count as unparsed (a binary file
/// without newlines must not grow memory without bound).
const MAX_LINE: usize = 64 * 1024;

/// What the member of a visit from an address not in the table is called.
pub const UNKNOWN: &str = "unknown";

/// Adds increments to one sorted set unless this file already did.
/// KEYS: sorted set, its marker set. ARGV: token, then member/increment pairs.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
end
return 1
"#,
    )
});

/// One file's visits, counted per day and place.
pub struct FileCounts {
    /// Per day: visits per place id, the last slot for unknown addresses.
    days: Vec<(Vec<u8>, Vec<u64>)>,
    /// Index into `days` of the previous line's day: logs are in time order.
    last_day: usize,
    places: usize,
    /// IPv4 visits (address, day index) waiting to be looked up together:
    /// lookups in a tight loop overlap their cache misses, which lookups
    /// interleaved with parsing cannot.
    pending: Vec<(u32, usize)>,
    /// Lines read, parsed or not.
    pub lines: u64,
    /// Lines that did not parse as the log format.
    pub unparsed: u64,
}

/// IPv4 visits looked up per batch.
const BATCH: usize = 256;

impl FileCounts {
    /// Empty counts for a file, with room for every place of `table`.
    pub fn new(table: &GeoTable) -> Self {
        FileCounts {
            days: Vec::new(),
            last_day: 0,
            places: table.places().len(),
            pending: Vec::with_capacity(BATCH),
            lines: 0,
            unparsed: 0,
        }
    }

    /// Counts one line (without its newline); IPv4 visits are counted when
    /// their batch is looked up ([`FileCounts::flush`]).
    fn add_line(&mut self, table: &GeoTable, format: LogFormat, line: &[u8]) {
        self.lines += 1;
        if line.len() > MAX_LINE {
            self.unparsed += 1;
            return;
        }
        let Some(visit) = logline::parse(format, line) else {
            self.unparsed += 1;
            return;
        };
        let day = self.day_index(visit.day.as_bytes());
        match visit.address {
            Address::V4(ip) => {
                self.pending.push((ip, day));
                if self.pending.len() == BATCH {
                    self.flush(table);
                }
            }
            Address::V6(ip) => {
                let slot = table.lookup_v6(ip).map_or(self.places, |id| id as usize);
                self.days[day].1[slot] += 1;
            }
        }
    }

    /// Looks up and counts the pending IPv4 visits.
    fn flush(&mut self, table: &GeoTable) {
        let mut slots = [0usize; BATCH];
        for (slot, (ip, _)) in slots.iter_mut().zip(&self.pending) {
            *slot = table.lookup_v4(*ip).map_or(self.places, |id| id as usize);
        }
        for (slot, (_, day)) in slots.iter().zip(&self.pending) {
            self.days[*day].1[*slot] += 1;
        }
        self.pending.clear();
    }

    /// The index in `days` of `day`, added when new.
    fn day_index(&mut self, day: &[u8]) -> usize {
        if self.days.get(self.last_day).is_none_or(|(d, _)| d != day) {
            self.last_day = match self.days.iter().position(|(d, _)| d == day) {
                Some(index) => index,
                None => {
                    self.days.push((day.to_vec(), vec![0; self.places + 1]));
                    self.days.len() - 1
                }
            };
        }
        self.last_day
    }

    /// Reads a whole file's (decoded) lines.
    pub async fn count_file(
        file: &mut IncomingFile,
        table: &GeoTable,
        format: LogFormat,
    ) -> Result<Self> {
        let name = file.name().to_owned();
        let mut counts = FileCounts::new(table);
        let mut reader = file.decoded(Decode::Auto);
        let mut carry: Vec<u8> = Vec::new();
        let mut overlong = false;
        loop {
            let buffer = reader.fill_buf().await.map_err(|e| Error::Processing {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            if buffer.is_empty() {
                break;
            }
            let length = buffer.len();
            let mut rest = buffer;
            while let Some(newline) = memchr::memchr(b'\n', rest) {
                let line = &rest[..newline];
                if overlong {
                    overlong = false;
                    counts.lines += 1;
                    counts.unparsed += 1;
                } else if carry.is_empty() {
                    counts.add_line(table, format, line);
                } else {
                    carry.extend_from_slice(line);
                    counts.add_line(table, format, &carry);
                    carry.clear();
                }
                rest = &rest[newline + 1..];
            }
            if !overlong {
                carry.extend_from_slice(rest);
                if carry.len() > MAX_LINE {
                    overlong = true;
                    carry.clear();
                }
            }
            reader.as_mut().consume(length);
        }
        if overlong {
            counts.lines += 1;
            counts.unparsed += 1;
        } else if !carry.is_empty() {
            counts.add_line(table, format, &carry);
        }
        counts.flush(table);
        Ok(counts)
    }

    /// The increments for one dimension, per day: member → visits.
    fn by(&self, table: &GeoTable, dimension: Dimension) -> Vec<(&[u8], HashMap<String, u64>)> {
        self.days
            .iter()
            .map(|(day, visits)| {
                let mut members: HashMap<String, u64> = HashMap::new();
                for (slot, &count) in visits.iter().enumerate().filter(|(_, c)| **c > 0) {
                    let member = if slot == self.places {
                        UNKNOWN.to_owned()
                    } else {
                        member(table, slot as u32, dimension)
                    };
                    *members.entry(member).or_default() += count;
                }
                (day.as_slice(), members)
            })
            .collect()
    }

    /// Adds this file's counts into Redis, once per `token` whatever
    /// happens: a repeated call adds nothing to a set it already reached.
    pub async fn apply(
        &self,
        redis: &Redis,
        table: &GeoTable,
        dimensions: &[Dimension],
        token: &str,
    ) -> Result<()> {
        for &dimension in dimensions {
            for (day, members) in self.by(table, dimension) {
                let day = String::from_utf8_lossy(day);
                let key = dimension.day_key(&day);
                let marker = format!("{{{key}}}:applied");
                redis
                    .retry("adding counts", |mut con| {
                        let mut invocation = APPLY.prepare_invoke();
                        invocation.key(&key).key(&marker).arg(token);
                        for (member, count) in &members {
                            invocation.arg(member).arg(*count);
                        }
                        async move { invocation.invoke_async::<i64>(&mut con).await }
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// The sorted-set member a place counts under: `CC`, `CC/region` or
/// `CC/region/city`, with `unknown` standing in for what the table lacks.
fn member(table: &GeoTable, id: u32, dimension: Dimension) -> String {
    let place = table.place(id);
    let or_unknown = |s: &str| {
        if s.is_empty() {
            UNKNOWN.to_owned()
        } else {
            s.to_owned()
        }
    };
    let country = or_unknown(&place.country);
    match dimension {
        Dimension::Country => country,
        Dimension::Region => format!("{country}/{}", or_unknown(&place.region)),
        Dimension::City => format!(
            "{country}/{}/{}",
            or_unknown(&place.region),
            or_unknown(&place.city)
        ),
    }
}

/// What an aggregation run needs besides its source of files.
#[derive(Clone, Debug)]
pub struct AggregateOptions {
    /// Key prefix of the channel and of the location table in Redis.
    pub prefix: String,
    /// The channel files come from: part of each file's token.
    pub channel: String,
    /// This receiver's id, under which unparsed lines are recorded.
    pub id: String,
    /// What to count visits by; each has its own sorted sets.
    pub dimensions: Vec<Dimension>,
    /// How the log lines are laid out.
    pub format: LogFormat,
    /// Read the location table from these files instead of Redis.
    pub table_files: Vec<std::path::PathBuf>,
}

/// Where the location table came from, so a newer import can be picked up
/// between files.
enum Source {
    Files,
    Redis(u64),
    Builtin,
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
    let prefix = &options.prefix;
    let (mut table, mut source) = load_table(redis, prefix, &options.table_files).await?;
    let mut counted_files = 0;
    while let Some(mut file) = files.next_file().await? {
        let stale = match source {
            Source::Files => false,
            Source::Redis(version) => geo::current_version(redis, prefix).await? != Some(version),
            Source::Builtin => geo::current_version(redis, prefix).await?.is_some(),
        };
        if stale {
            (table, source) = load_table(redis, prefix, &options.table_files).await?;
        }
        let name = file.name().to_owned();
        let counts = match FileCounts::count_file(&mut file, &table, options.format).await {
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
        let token = file.token(prefix, &options.channel);
        counts
            .apply(redis, &table, &options.dimensions, &token)
            .await?;
        if std::env::var_os("REDISTRIBUTE_TEST_DIE_BEFORE_ACK").is_some() {
            // Test-only failure point: counts written, file not acknowledged.
            std::process::exit(86);
        }
        if counts.unparsed > 0 {
            tracing::warn!(
                "{name}: {} of {} lines did not parse as {:?} log lines",
                counts.unparsed,
                counts.lines,
                options.format
            );
            let key = Keys::new(prefix, &options.channel).receiver(&options.id);
            redis
                .query::<()>(
                    "recording unparsed lines",
                    redis::cmd("HINCRBY")
                        .arg(key)
                        .arg("unparsed")
                        .arg(counts.unparsed),
                )
                .await?;
        }
        files.ack(file).await?;
        counted_files += 1;
        tracing::info!("counted {name}: {} lines", counts.lines);
    }
    Ok(counted_files)
}

async fn load_table(
    redis: &Redis,
    prefix: &str,
    files: &[std::path::PathBuf],
) -> Result<(GeoTable, Source)> {
    if !files.is_empty() {
        return Ok((GeoTable::from_files(files)?, Source::Files));
    }
    match geo::load(redis, prefix).await? {
        Some((version, table)) => {
            tracing::info!("using location table version {version} from Redis");
            Ok((table, Source::Redis(version)))
        }
        None => {
            tracing::info!("no location table imported; using the built-in country table");
            Ok((GeoTable::builtin()?, Source::Builtin))
        }
    }
}
