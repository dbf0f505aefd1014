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

use crate::connection::Redis;
use crate::decode::Decode;
use crate::error::{Error, Result};
use crate::geo::GeoTable;
use crate::incoming::IncomingFile;
use crate::logline::{self, Address, LogFormat};
use crate::report::Dimension;

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
    pub lines: u64,
    pub unparsed: u64,
}

/// IPv4 visits looked up per batch.
const BATCH: usize = 256;

impl FileCounts {
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

/// What an `aggregate` run needs.
#[derive(Clone, Debug)]
pub struct AggregateOptions {
    pub receive: crate::receiver::ReceiveOptions,
    pub dimensions: Vec<Dimension>,
    pub format: LogFormat,
    /// Read the location table from these files instead of Redis.
    pub table_files: Vec<std::path::PathBuf>,
    /// Speak the book's wire format.
    pub classic: bool,
}

/// Where the location table came from, so a newer import can be picked up
/// between files.
enum Source {
    Files,
    Redis(u64),
    Builtin,
}

/// Runs the job until the sender's end of input (or forever with `follow`).
/// Returns the number of files counted.
pub async fn run(url: &str, options: &AggregateOptions) -> Result<u64> {
    let redis = Redis::connect(url).await?;
    let prefix = &options.receive.prefix;
    let (mut table, mut source) = load_table(&redis, prefix, &options.table_files).await?;
    let mut receiver = if options.classic {
        let receive = &options.receive;
        Either::Classic(
            crate::classic::ClassicReceiver::connect(url, &receive.channel, &receive.id).await?,
        )
    } else {
        Either::Native(Box::new(
            crate::receiver::Receiver::connect(url, options.receive.clone()).await?,
        ))
    };
    let mut files = 0;
    while let Some(mut file) = receiver.next_file().await? {
        let stale = match source {
            Source::Files => false,
            Source::Redis(version) => {
                crate::geo::current_version(&redis, prefix).await? != Some(version)
            }
            Source::Builtin => crate::geo::current_version(&redis, prefix).await?.is_some(),
        };
        if stale {
            (table, source) = load_table(&redis, prefix, &options.table_files).await?;
        }
        let name = file.name().to_owned();
        let counted = FileCounts::count_file(&mut file, &table, options.format).await;
        let counts = match (counted, &mut receiver) {
            (Ok(counts), _) => counts,
            (Err(error), Either::Native(receiver)) => {
                tracing::warn!("{error}");
                receiver.fail(file, &error.to_string()).await?;
                continue;
            }
            // The book's format has no way to report a failure: stop, and
            // the file comes back on the next run.
            (Err(error), Either::Classic(_)) => return Err(error),
        };
        let token = file.token(prefix, &options.receive.channel);
        counts
            .apply(&redis, &table, &options.dimensions, &token)
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
            let key = crate::protocol::Keys::new(prefix, &options.receive.channel)
                .receiver(&options.receive.id);
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
        receiver.ack(file).await?;
        files += 1;
        tracing::info!("counted {name}: {} lines", counts.lines);
    }
    if let Either::Native(receiver) = &receiver
        && receiver.parked() > 0
    {
        return Err(Error::Usage(format!(
            "{} files failed repeatedly and were parked; see `redistribute status --channel {}`",
            receiver.parked(),
            options.receive.channel
        )));
    }
    Ok(files)
}

/// A receiver of either protocol.
enum Either {
    Native(Box<crate::receiver::Receiver>),
    Classic(crate::classic::ClassicReceiver),
}

impl Either {
    async fn next_file(&mut self) -> Result<Option<IncomingFile>> {
        match self {
            Either::Native(receiver) => receiver.next_file().await,
            Either::Classic(receiver) => receiver.next_file().await,
        }
    }

    async fn ack(&mut self, file: IncomingFile) -> Result<()> {
        match self {
            Either::Native(receiver) => receiver.ack(file).await,
            Either::Classic(receiver) => receiver.ack(file).await,
        }
    }
}

async fn load_table(
    redis: &Redis,
    prefix: &str,
    files: &[std::path::PathBuf],
) -> Result<(GeoTable, Source)> {
    if !files.is_empty() {
        return Ok((GeoTable::from_files(files)?, Source::Files));
    }
    match crate::geo::load(redis, prefix).await? {
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
