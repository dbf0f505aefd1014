//! `redistribute report`: the top places per day, read from the sorted sets
//! the aggregation job fills, printed as a table, JSON or CSV, or drawn as
//! an SVG chart (`report/chart/`): over a range of days, the top members'
//! visits day by day, then a bar chart per day.
//!
//! The keys are the book's, `daily:<dimension>:<day>`, without this tool's
//! prefix, so a report also reads sets written by the book's own scripts.
//! Each day costs one Lua call that returns its top members, member count
//! and total: the total needs every score, and summing them inside Redis
//! spares sending a hundred thousand cities over the network to show ten.
//! [`gather`] is the only part that talks to Redis; a [`Report`] is plain
//! data, and its renderings are pure functions of it.

mod chart;

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use futures_util::{StreamExt, TryStreamExt};
use jiff::civil::Date;
use redis::Script;
use serde::Serialize;

use crate::geo::country_name;
use redistribute_transfer::error::{Error, Result};
use redistribute_transfer::redis::Redis;

/// How many days are read at once: enough to hide round trips on a long
/// range, few enough not to crowd out other clients' commands.
const DAYS_IN_FLIGHT: usize = 16;

/// At most this many members are followed across a range of days: more
/// lines than a reader can tell apart by colour.
pub const MAX_SERIES: usize = 8;

/// What visits are counted by; each has its own sorted set per day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Dimension {
    /// Members are ISO country codes, e.g. `DE`.
    #[default]
    Country,
    /// Members are `CC/region`.
    Region,
    /// Members are `CC/region/city`.
    City,
}

impl Dimension {
    /// The dimension's part of a key name: `daily:<key>:<day>`.
    pub fn key(self) -> &'static str {
        match self {
            Dimension::Country => "country",
            Dimension::Region => "region",
            Dimension::City => "city",
        }
    }

    /// The name of the sorted set holding one day's visits, under
    /// `namespace`: empty for the book's own keys, `P:` to keep them apart.
    pub fn day_key(self, namespace: &str, day: &str) -> String {
        format!("{namespace}daily:{}:{day}", self.key())
    }

    /// `country` for one member, `countries` for any other number.
    fn noun(self, members: u64) -> &'static str {
        match members {
            1 => self.key(),
            _ => self.plural(),
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Dimension::Country => "countries",
            Dimension::Region => "regions",
            Dimension::City => "cities",
        }
    }
}

/// Which days a report covers. Days are `YYYY-MM-DD`, as in the key names.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaySelection {
    /// Every day that has a sorted set.
    All,
    /// One day, reported even if nothing was counted on it.
    One(String),
    /// The days from `from` to `to`, both included, that have a sorted set.
    Range {
        /// The first day.
        from: String,
        /// The last day.
        to: String,
    },
}

impl DaySelection {
    /// The `count` days that end with `last`, both included: `--last 7d`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a malformed day, a count of 0, or a range
    /// reaching before the calendar's start.
    pub fn ending(last: &str, count: u32) -> Result<DaySelection> {
        let first = shift(last, count, -1)?;
        Ok(DaySelection::Range {
            from: first,
            to: last.to_owned(),
        })
    }

    /// The `count` days that start with `first`, both included.
    ///
    /// # Errors
    ///
    /// As for [`DaySelection::ending`].
    pub fn starting(first: &str, count: u32) -> Result<DaySelection> {
        let last = shift(first, count, 1)?;
        Ok(DaySelection::Range {
            from: first.to_owned(),
            to: last,
        })
    }

    /// Checks that every day is a real calendar date and a range is not
    /// reversed, so a typo reports an error instead of an empty report.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] naming the bad day.
    pub fn check(&self) -> Result<()> {
        match self {
            DaySelection::All => Ok(()),
            DaySelection::One(day) => check_day(day),
            DaySelection::Range { from, to } => {
                check_day(from)?;
                check_day(to)?;
                if from > to {
                    return Err(Error::Usage(format!(
                        "the day range {from} to {to} is empty: its first day comes after its last"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// The day `count - 1` days after (`direction` 1) or before (-1) `day`.
fn shift(day: &str, count: u32, direction: i64) -> Result<String> {
    let date = parse_day(day).ok_or_else(|| bad_day(day))?;
    if count == 0 {
        return Err(Error::Usage(
            "a range of 0 days is empty: ask for at least 1 day".into(),
        ));
    }
    let span = jiff::Span::new().try_days(direction * (i64::from(count) - 1));
    let outside = || Error::Usage(format!("{count} days from {day} leave the calendar"));
    let other = span
        .and_then(|span| date.checked_add(span))
        .map_err(|_| outside())?
        .to_string();
    // Years after 9999 (or before 0) are dates, but not `YYYY-MM-DD` days.
    parse_day(&other).map(|_| other).ok_or_else(outside)
}

/// What to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportQuery {
    /// What to rank.
    pub by: Dimension,
    /// Which days.
    pub days: DaySelection,
    /// Members shown per day, highest visits first; 0 shows every member
    /// (for a complete CSV export).
    pub top: usize,
    /// What the keys start with: empty for the book's `daily:*`, `P:` for
    /// a job run with `--prefix P` (see [`Dimension::day_key`]).
    pub namespace: String,
}

/// The top members per day, as gathered from Redis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// What was ranked.
    pub by: Dimension,
    /// Members shown per day, as asked (0: all).
    pub top: usize,
    /// In date order; days without any visits are left out, except a day
    /// asked for by [`DaySelection::One`].
    pub days: Vec<DayReport>,
    /// The members followed across the days, the most visited first: over
    /// two days or more, the top members of all the days' rows together
    /// (at most [`MAX_SERIES`], and no more than `top`); none for one day.
    pub series: Vec<Series>,
}

/// One member's visits on every day of a report, including the days it
/// was not among the top rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// As in [`Row::member`].
    pub member: String,
    /// As in [`Row::name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// Visits per day, in the order of [`Report::days`].
    pub visits: Vec<u64>,
}

/// One day of a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayReport {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Visits on this day across all members, not only the rows shown.
    pub total: u64,
    /// How many members had visits, so a reader knows what the top N leaves out.
    pub members: u64,
    /// The top members, highest visits first.
    pub rows: Vec<Row>,
}

/// One member's line in a day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// 1 for the most visits; ties are ordered as Redis orders them.
    pub rank: usize,
    /// A country code, `CC/region` or `CC/region/city`.
    pub member: String,
    /// The country's English name, in reports by country, when the code
    /// is a country's (`unknown` and registry codes have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// Visits counted for it on this day.
    pub visits: u64,
    /// Percent of the day's total, rounded to two decimals.
    pub share: f64,
}

impl Row {
    /// The member as people read it: `DE Germany` when the name is known.
    pub fn title(&self) -> String {
        title(&self.member, self.name)
    }
}

impl Series {
    /// As [`Row::title`].
    pub fn title(&self) -> String {
        title(&self.member, self.name)
    }
}

fn title(member: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{member} {name}"),
        None => member.to_owned(),
    }
}

/// The name shown beside `member`: a country's, in reports by country.
fn name_of(by: Dimension, member: &str) -> Option<&'static str> {
    match by {
        Dimension::Country => country_name(member),
        _ => None,
    }
}

/// Sums a day's scores and returns its top members in one call.
/// KEYS: the day's sorted set. ARGV: how many members (0 = all).
/// Returns {member count, total as a decimal string, {member, score, ...}}:
/// the total is a string because Redis truncates Lua numbers to integers
/// of 64 bits on return, and scores are floats.
static DAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'zset' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is a ' .. kind)
end
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local total = 0
for i = 2, #all, 2 do total = total + tonumber(all[i]) end
local last = 1
local top = tonumber(ARGV[1])
if top > 0 then last = math.max(1, #all - 2 * top + 1) end
local rows = {}
for i = #all - 1, last, -2 do
  rows[#rows + 1] = all[i]
  rows[#rows + 1] = all[i + 1]
end
return {#all / 2, string.format('%.17g', total), rows}
"#,
    )
});

/// Reads the report `query` asks for.
///
/// # Errors
///
/// [`Error::Usage`] for a malformed day, [`Error::Protocol`] when a
/// `daily:` key is not a sorted set, and Redis errors that outlast retries.
pub async fn gather(redis: &Redis, query: &ReportQuery) -> Result<Report> {
    query.days.check()?;
    let days = match &query.days {
        DaySelection::One(day) => vec![day.clone()],
        DaySelection::All => stored_days(redis, query, |_| true).await?,
        DaySelection::Range { from, to } => {
            // Day names sort like dates, so a range is a string comparison.
            stored_days(redis, query, |day| {
                from.as_str() <= day && day <= to.as_str()
            })
            .await?
        }
    };
    let keep_empty = matches!(query.days, DaySelection::One(_));
    let days: Vec<DayReport> = futures_util::stream::iter(days)
        .map(|day| read_day(redis, query, day))
        .buffered(DAYS_IN_FLIGHT)
        .try_filter(|day| std::future::ready(keep_empty || day.members > 0))
        .try_collect()
        .await?;
    let series = follow(redis, query, &days).await?;
    Ok(Report {
        by: query.by,
        top: query.top,
        days,
        series,
    })
}

/// The members of the rows of `days`, the most visits over all of them
/// first (ties by name): who is followed across days, and who gets the
/// most distinct colours.
fn ranked(days: &[DayReport]) -> Vec<&str> {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for row in days.iter().flat_map(|day| &day.rows) {
        *totals.entry(row.member.as_str()).or_default() += row.visits;
    }
    let mut members: Vec<(&str, u64)> = totals.into_iter().collect();
    members.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    members.into_iter().map(|(member, _)| member).collect()
}

/// The [`Report::series`] of `days`: picks the members, then reads their
/// visits on every day with one ZMSCORE a day.
async fn follow(redis: &Redis, query: &ReportQuery, days: &[DayReport]) -> Result<Vec<Series>> {
    if days.len() < 2 {
        return Ok(Vec::new());
    }
    let wanted = match query.top {
        0 => MAX_SERIES,
        top => top.min(MAX_SERIES),
    };
    let members: Vec<&str> = ranked(days).into_iter().take(wanted).collect();
    let per_day: Vec<Vec<Option<f64>>> = futures_util::stream::iter(days)
        .map(|day| {
            let key = query.by.day_key(&query.namespace, &day.day);
            let members = &members;
            async move {
                redis
                    .retry("reading the visits of the followed members", |mut con| {
                        let mut command = redis::cmd("ZMSCORE");
                        command.arg(&key).arg(members);
                        async move { command.query_async(&mut con).await }
                    })
                    .await
            }
        })
        .buffered(DAYS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(members
        .iter()
        .enumerate()
        .map(|(index, member)| Series {
            member: (*member).to_owned(),
            name: name_of(query.by, member),
            visits: per_day
                .iter()
                .map(|scores| visits(scores.get(index).copied().flatten().unwrap_or(0.0)))
                .collect(),
        })
        .collect())
}

/// The days that have a sorted set for `by` and pass `wanted`, sorted.
/// Keys whose day part is not a date (someone else's) are ignored.
async fn stored_days(
    redis: &Redis,
    query: &ReportQuery,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let pattern = query.by.day_key(&query.namespace, "*");
    let prefix = query.by.day_key(&query.namespace, "");
    let keys = redis.scan("listing report days", &pattern).await?;
    let days: BTreeSet<String> = keys
        .iter()
        .filter_map(|key| key.strip_prefix(&prefix))
        .filter(|day| parse_day(day).is_some() && wanted(day))
        .map(str::to_owned)
        .collect();
    Ok(days.into_iter().collect())
}

/// What [`DAY`] returns: member count, total, then (member, score) pairs.
/// Members are read as bytes so a stray non-UTF-8 member cannot fail the report.
type DayReply = (u64, String, Vec<(Vec<u8>, f64)>);

async fn read_day(redis: &Redis, query: &ReportQuery, day: String) -> Result<DayReport> {
    let (by, top) = (query.by, query.top);
    let key = by.day_key(&query.namespace, &day);
    let mut invocation = DAY.prepare_invoke();
    invocation.key(&key).arg(top);
    let invocation = &invocation;
    let read: Result<DayReply> = redis
        .retry("reading a day of the report", |mut con| async move {
            invocation.invoke_async(&mut con).await
        })
        .await;
    let (members, total, top_rows) = match read {
        Err(Error::Redis { source, .. }) if source.code() == Some("WRONGTYPE") => {
            return Err(Error::Protocol {
                key,
                reason: "not a sorted set".into(),
            });
        }
        other => other?,
    };
    let total = visits(total.parse().unwrap_or(0.0));
    let rows = top_rows
        .into_iter()
        .enumerate()
        .map(|(index, (member, score))| {
            let visits = visits(score);
            let member = String::from_utf8_lossy(&member).into_owned();
            Row {
                rank: index + 1,
                name: name_of(by, &member),
                member,
                visits,
                share: share(visits, total),
            }
        })
        .collect();
    Ok(DayReport {
        day,
        total,
        members,
        rows,
    })
}

/// Scores are floats in Redis but visits are whole: ZINCRBY of integers
/// stays exact up to 2^53, far beyond any day's visits.
fn visits(score: f64) -> u64 {
    score.round().max(0.0) as u64
}

fn share(visits: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (visits as f64 * 10_000.0 / total as f64).round() / 100.0
}

/// Checks one day name.
///
/// # Errors
///
/// [`Error::Usage`] unless `day` is a calendar date written `YYYY-MM-DD`.
pub fn check_day(day: &str) -> Result<()> {
    match parse_day(day) {
        Some(_) => Ok(()),
        None => Err(bad_day(day)),
    }
}

fn bad_day(day: &str) -> Error {
    Error::Usage(format!(
        "invalid day {day:?}: expected a date written YYYY-MM-DD, e.g. 2024-03-01"
    ))
}

/// The date a `YYYY-MM-DD` day names, if it exists: the shape is checked
/// first because a date parser also takes other ISO 8601 forms.
fn parse_day(day: &str) -> Option<Date> {
    let bytes = day.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    day.parse().ok()
}

/// `1234567` as `1,234,567`, for people.
fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl Report {
    /// An aligned table for people: each day's rows, then a line with the
    /// day's total and member count, days separated by a blank line.
    pub fn to_table(&self) -> String {
        if self.days.is_empty() {
            return format!("no visits by {} on the selected days\n", self.by.key());
        }
        let header = ["day", "rank", self.by.key(), "visits", "share"].map(String::from);
        let mut blocks: Vec<Vec<[String; 5]>> = Vec::new();
        for day in &self.days {
            let mut lines: Vec<[String; 5]> = day
                .rows
                .iter()
                .map(|row| {
                    [
                        day.day.clone(),
                        row.rank.to_string(),
                        row.title(),
                        thousands(row.visits),
                        format!("{:.1}%", row.share),
                    ]
                })
                .collect();
            lines.push([
                day.day.clone(),
                String::new(),
                format!(
                    "all {} {}",
                    thousands(day.members),
                    self.by.noun(day.members)
                ),
                thousands(day.total),
                if day.total > 0 { "100.0%" } else { "" }.to_owned(),
            ]);
            blocks.push(lines);
        }
        let mut widths = header.clone().map(|cell| cell.chars().count());
        for line in blocks.iter().flatten() {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        // Numbers align right so their digits line up; text aligns left.
        let right = [false, true, false, true, true];
        let render = |line: &[String; 5]| {
            let cells: Vec<String> = line
                .iter()
                .zip(widths)
                .zip(right)
                .map(|((cell, width), right)| {
                    let pad = " ".repeat(width - cell.chars().count());
                    if right {
                        format!("{pad}{cell}")
                    } else {
                        format!("{cell}{pad}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = render(&header);
        for (i, block) in blocks.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.extend(block.iter().map(render));
        }
        out
    }

    /// The days as a JSON array: `[{"day", "total", "members", "rows":
    /// [{"rank", "member", "name", "visits", "share"}]}]`, share in
    /// percent, `name` only for members that are countries with a name.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.days).expect("a report always serializes") + "\n"
    }

    /// One line per row under the header `day,rank,member,visits,share`,
    /// share in percent; members with commas or quotes are quoted.
    pub fn to_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let written: csv::Result<()> = (|| {
            writer.write_record(["day", "rank", "member", "visits", "share"])?;
            for day in &self.days {
                for row in &day.rows {
                    writer.write_record([
                        day.day.as_str(),
                        &row.rank.to_string(),
                        &row.member,
                        &row.visits.to_string(),
                        &format!("{:.2}", row.share),
                    ])?;
                }
            }
            writer.flush()?;
            Ok(())
        })();
        written.expect("writing CSV into memory cannot fail");
        let bytes = writer.into_inner().expect("flushed above");
        String::from_utf8(bytes).expect("CSV of strings is UTF-8")
    }

    /// A horizontal bar chart, one block per day, as a standalone SVG
    /// document (`report/chart/` draws it).
    pub fn to_svg(&self) -> String {
        chart::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(days: Vec<DayReport>) -> Report {
        Report {
            by: Dimension::City,
            top: 2,
            days,
            series: Vec::new(),
        }
    }

    fn day(day: &str, rows: &[(&str, u64)], total: u64, members: u64) -> DayReport {
        DayReport {
            day: day.into(),
            total,
            members,
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, &(member, visits))| Row {
                    rank: i + 1,
                    member: member.into(),
                    name: None,
                    visits,
                    share: share(visits, total),
                })
                .collect(),
        }
    }

    #[test]
    fn only_calendar_dates_are_days() {
        assert!(parse_day("2024-02-29").is_some());
        assert!(parse_day("2000-02-29").is_some());
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-04-31",
            "2024-00-10",
            "2024-1-01",
            "2024/01/01",
            "+024-01-01",
            "2024-01-01 ",
            "",
        ] {
            assert!(parse_day(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges_count_whole_days_across_months_and_leap_days() {
        let range = |from: &str, to: &str| DaySelection::Range {
            from: from.into(),
            to: to.into(),
        };
        assert_eq!(
            DaySelection::ending("2024-03-02", 3).unwrap(),
            range("2024-02-29", "2024-03-02")
        );
        assert_eq!(
            DaySelection::starting("2023-12-31", 2).unwrap(),
            range("2023-12-31", "2024-01-01")
        );
        assert_eq!(
            DaySelection::ending("2024-03-02", 1).unwrap(),
            range("2024-03-02", "2024-03-02")
        );
        assert!(matches!(
            DaySelection::ending("2024-03-02", 0),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            DaySelection::ending("2024-02-30", 2),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            DaySelection::ending("0001-01-02", 5000),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn a_reversed_range_is_a_usage_error() {
        let range = DaySelection::Range {
            from: "2024-01-02".into(),
            to: "2024-01-01".into(),
        };
        assert!(matches!(range.check(), Err(Error::Usage(_))));
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn shares_are_percent_with_two_decimals() {
        assert_eq!(share(1, 3), 33.33);
        assert_eq!(share(2, 3), 66.67);
        assert_eq!(share(5, 0), 0.0);
    }

    #[test]
    fn table_columns_line_up() {
        let table = report(vec![day(
            "2024-01-01",
            &[("DE/Bayern/München", 12345), ("FR/IDF/Paris", 7)],
            20000,
            40,
        )])
        .to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        // Columns count characters, not bytes: "ü" must not shift a line.
        let end_of = |line: &str, needle: &str| {
            line[..line.find(needle).unwrap()].chars().count() + needle.chars().count()
        };
        assert_eq!(end_of(lines[1], "12,345"), end_of(lines[2], "7"), "{table}");
        assert!(lines[3].contains("all 40 cities"), "{table}");
        assert!(lines[3].contains("20,000"), "{table}");
    }

    #[test]
    fn an_empty_report_says_so() {
        assert!(report(vec![]).to_table().starts_with("no visits by city"));
    }
}
