//! Counting one file: its lines parsed, in the format its first lines
//! show, and looked up in the location table, visits per day and place.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::AsyncBufRead;

use super::UNKNOWN;
use super::blocks::{BLOCKS_IN_FLIGHT, MAX_LINE, read_blocks};
use crate::geo::GeoTable;
use crate::logline::{self, Address, LineOptions, LineParser};
use crate::report::Dimension;
use redistribute_transfer::error::{Error, Result};
use redistribute_transfer::files::decode::Decode;
use redistribute_transfer::files::incoming::IncomingFile;

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
    /// The first few lines that did not parse, to show and to tell what
    /// they look like.
    unparsed_lines: Vec<Vec<u8>>,
    /// The format the lines were read as, for messages.
    pub format: String,
}

/// Unparsed lines kept per file, whole (they are at most [`MAX_LINE`]):
/// telling what a JSON line looks like needs all of it.
const KEPT_LINES: usize = 16;

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
            unparsed_lines: Vec::new(),
            format: String::new(),
        }
    }

    /// One unparsed line, kept while few are (blank ones show nothing).
    fn unparsed(&mut self, line: &[u8]) {
        self.unparsed += 1;
        if self.unparsed_lines.len() < KEPT_LINES && !line.trim_ascii().is_empty() {
            self.unparsed_lines.push(line.to_vec());
        }
    }

    /// The share of lines that did not parse, and one of them, for the
    /// warning a file with some gets.
    pub fn unparsed_summary(&self) -> String {
        let share = self.unparsed as f64 * 100.0 / self.lines.max(1) as f64;
        format!(
            "{} of {} lines ({share:.1} %) did not parse as {}{}",
            self.unparsed,
            self.lines,
            self.format_name(),
            self.example()
        )
    }

    /// The format lines were read as; a file whose every line was too long
    /// to look at was read as none.
    fn format_name(&self) -> &str {
        if self.format.is_empty() {
            "any log format"
        } else {
            &self.format
        }
    }

    /// One line that did not parse, for a message: kept ones are shown,
    /// otherwise they were all too long to keep.
    fn example(&self) -> String {
        match self.unparsed_lines.first() {
            Some(line) => format!(", such as {:?}", logline::shown(line)),
            None => format!(
                " (lines longer than {} KiB, which no log has)",
                MAX_LINE >> 10
            ),
        }
    }

    /// Why a file most of whose lines did not parse is not counted:
    /// which format its lines look like, if any.
    fn mismatch(&self, options: &LineOptions) -> String {
        let kept: Vec<&[u8]> = self.unparsed_lines.iter().map(Vec::as_slice).collect();
        let looks = logline::detect(&kept, options)
            .filter(|(_, fits)| *fits * 2 > kept.len())
            .map(|(format, _)| format.name());
        match looks {
            Some(name) => format!(
                "{} of {} lines do not parse: they look like {name}, not {}; pass --log-format {name}",
                self.unparsed, self.lines, self.format
            ),
            None if self.format.is_empty() => format!(
                "{} of {} lines do not parse as any log format{}; pass --log-format",
                self.unparsed,
                self.lines,
                self.example()
            ),
            None => format!(
                "{} of {} lines do not parse as {} nor as any known log format{}; \
                 pass --log-format",
                self.unparsed,
                self.lines,
                self.format,
                self.example()
            ),
        }
    }

    /// Counts one line (without its newline); IPv4 visits are counted when
    /// their batch is looked up ([`FileCounts::flush`]).
    fn add_line(&mut self, table: &GeoTable, parser: &LineParser, line: &[u8]) {
        self.lines += 1;
        if line.len() > MAX_LINE {
            self.unparsed += 1;
            return;
        }
        let Some(visit) = parser.parse(line) else {
            self.unparsed(line);
            return;
        };
        let day = self.day_index(&visit.day);
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

    /// Counts the lines of a block of whole lines (the last block of a
    /// file may end without a newline).
    fn add_block(&mut self, table: &GeoTable, parser: &LineParser, block: &[u8]) {
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', block) {
            self.add_line(table, parser, &block[start..newline]);
            start = newline + 1;
        }
        if start < block.len() {
            self.add_line(table, parser, &block[start..]);
        }
    }

    /// Reads a whole file's (decoded) lines.
    ///
    /// # Errors
    ///
    /// [`Error::Processing`] when the file cannot be read to its end;
    /// [`Error::Unprocessable`] when no known format fits its first lines
    /// (with `auto`), or when most of its lines do not parse: counting a
    /// file read in the wrong format would record a fraction of its visits
    /// as if that were all.
    pub async fn count_file(
        file: &mut IncomingFile,
        table: Arc<GeoTable>,
        options: &LineOptions,
    ) -> Result<Self> {
        let name = file.name().to_owned();
        let counts = FileCounts::count_lines(file.decoded(Decode::Auto), table, options)
            .await
            .map_err(|e| match e.kind() {
                // No format fits: the same lines will not fit next time.
                std::io::ErrorKind::InvalidInput => Error::Unprocessable {
                    name: name.clone(),
                    reason: e.to_string(),
                },
                _ => Error::reading(&name, e),
            })?;
        if counts.unparsed * 2 > counts.lines {
            return Err(Error::Unprocessable {
                name,
                reason: counts.mismatch(options),
            });
        }
        Ok(counts)
    }

    /// Counts the lines `reader` gives, in the format `options` asks for
    /// or the one its first block shows. Reading and decoding stay on this
    /// task while a blocking thread parses and counts blocks of whole
    /// lines, so the two overlap; a few blocks in flight bound the memory.
    async fn count_lines(
        reader: impl AsyncBufRead + Unpin,
        table: Arc<GeoTable>,
        options: &LineOptions,
    ) -> std::io::Result<Self> {
        let (blocks, mut to_count) = tokio::sync::mpsc::channel::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let (give_back, returned) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let options = options.clone();
        let counter = tokio::task::spawn_blocking(move || {
            let mut counts = FileCounts::new(&table);
            let mut parser: Option<LineParser> = None;
            while let Some(mut block) = to_count.blocking_recv() {
                let parser = match &mut parser {
                    Some(parser) => parser,
                    empty => {
                        let found = LineParser::for_file(&options, &block).map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
                        })?;
                        counts.format = found.describe().to_owned();
                        empty.insert(found)
                    }
                };
                counts.add_block(&table, parser, &block);
                block.clear();
                let _ = give_back.send(block);
            }
            counts.flush(&table);
            Ok::<_, std::io::Error>(counts)
        });
        let read = read_blocks(reader, &blocks, returned).await;
        drop(blocks);
        let mut counts = counter.await.map_err(std::io::Error::other)??;
        let overlong = read?;
        counts.lines += overlong;
        counts.unparsed += overlong;
        Ok(counts)
    }

    /// The increments for one dimension, per day: member → visits.
    pub(super) fn by(
        &self,
        table: &GeoTable,
        dimension: Dimension,
    ) -> Vec<(&[u8], HashMap<String, u64>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::blocks::LINE_BLOCK_BYTES;
    use crate::logline::{FormatChoice, LogFormat};

    async fn count(text: &str, format: FormatChoice) -> std::io::Result<FileCounts> {
        let table = Arc::new(GeoTable::builtin().unwrap());
        let options = LineOptions {
            format,
            ..LineOptions::default()
        };
        FileCounts::count_lines(text.as_bytes(), table, &options).await
    }

    #[tokio::test]
    async fn a_few_unparsed_lines_are_summed_up_with_their_share_and_one_of_them() {
        let mut text = "1.2.3.4 2026-11-01 x\n".repeat(99);
        text.push_str("1.2.3.4 2026-11-31 a day that is not one\n");
        let counts = count(&text, FormatChoice::Auto).await.unwrap();
        assert_eq!((counts.lines, counts.unparsed), (100, 1));
        assert_eq!(
            counts.unparsed_summary(),
            "1 of 100 lines (1.0 %) did not parse as book, such as \"1.2.3.4 2026-11-31 a day that is not one\""
        );
    }

    #[tokio::test]
    async fn a_file_in_another_format_than_asked_says_which_it_looks_like() {
        let combined =
            "1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"ua\"\n";
        let counts = count(&combined.repeat(10), FormatChoice::Named(LogFormat::Book))
            .await
            .unwrap();
        assert_eq!(counts.unparsed, 10);
        let why = counts.mismatch(&LineOptions::default());
        assert_eq!(
            why,
            "10 of 10 lines do not parse: they look like combined, not book; pass --log-format combined"
        );
        let garbage = count(
            "\u{1}\u{2}\n".repeat(3).as_str(),
            FormatChoice::Named(LogFormat::Book),
        )
        .await
        .unwrap();
        assert!(
            garbage
                .mismatch(&LineOptions::default())
                .contains("nor as any known log format")
        );
        // With auto, a file no format fits is refused at its first lines.
        let Err(refused) = count("\u{1}\u{2}\n", FormatChoice::Auto).await else {
            panic!("a file of garbage was counted");
        };
        assert!(
            refused.to_string().contains("no known log format"),
            "{refused}"
        );
    }

    /// A file of one huge line (no log has one) is refused with words that
    /// name what it is, not an empty format and an empty example.
    #[test]
    fn a_file_of_one_overlong_line_is_refused_in_plain_words() {
        // As reading leaves it: the line skipped unread, no format seen.
        let mut counts = FileCounts::new(&GeoTable::builtin().unwrap());
        counts.lines = 1;
        counts.unparsed = 1;
        let message = counts.mismatch(&LineOptions::default());
        assert!(
            message.contains("any log format") && message.contains("longer than 64 KiB"),
            "{message}"
        );
        assert!(!message.contains("\"\""), "{message}");
    }

    /// Per day and country, what counting `lines` one by one must give.
    fn expected(table: &GeoTable, lines: &[String]) -> HashMap<(String, String), u64> {
        let book = LineOptions {
            format: FormatChoice::Named(LogFormat::Book),
            ..LineOptions::default()
        };
        let book = LineParser::for_file(&book, b"").unwrap();
        let mut visits = HashMap::new();
        for line in lines.iter().filter(|line| line.len() <= MAX_LINE) {
            let Some(visit) = book.parse(line.as_bytes()) else {
                continue;
            };
            let Address::V4(ip) = visit.address else {
                panic!("the test writes IPv4 addresses only");
            };
            let member = table.lookup_v4(ip).map_or(UNKNOWN.to_owned(), |id| {
                member(table, id, Dimension::Country)
            });
            let day = String::from_utf8_lossy(&visit.day).into_owned();
            *visits.entry((day, member)).or_default() += 1;
        }
        visits
    }

    #[tokio::test]
    async fn lines_stay_whole_whatever_the_reads_and_overlong_ones_count_as_unparsed() {
        let table = Arc::new(GeoTable::builtin().unwrap());
        let mut rng = fastrand::Rng::with_seed(5);
        let mut lines: Vec<String> = (0..30_000)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(rng.u32(..));
                format!("{ip} 2026-11-0{} GET /{i} 200", 1 + i % 3)
            })
            .collect();
        // Longer than a line may be, one of them longer than a block.
        lines.insert(100, "x".repeat(MAX_LINE + 1));
        lines.insert(
            20_000,
            format!("1.2.3.4 2026-11-01 {}", "y".repeat(LINE_BLOCK_BYTES * 2)),
        );
        lines.insert(25_000, "not a log line".into());
        // The last line has no newline.
        let text = lines.join("\n").into_bytes();
        let want = expected(&table, &lines);
        for capacity in [7, 4096, 1 << 20] {
            let reader = tokio::io::BufReader::with_capacity(capacity, &text[..]);
            let counts = FileCounts::count_lines(reader, table.clone(), &LineOptions::default())
                .await
                .unwrap();
            assert_eq!(counts.format, "book");
            assert_eq!(counts.lines, lines.len() as u64, "reads of {capacity}");
            assert_eq!(counts.unparsed, 3, "reads of {capacity}");
            let mut got = HashMap::new();
            for (day, members) in counts.by(&table, Dimension::Country) {
                for (member, visits) in members {
                    let day = String::from_utf8_lossy(day).into_owned();
                    got.insert((day, member), visits);
                }
            }
            let wrong: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .collect();
            assert!(wrong.is_empty(), "reads of {capacity}: {wrong:?} differ");
            assert_eq!(got.len(), want.len(), "reads of {capacity}");
        }
    }
}
