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
mod days;
mod render;

use days::parse_day;
pub use days::{DaySelection, check_day};

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use futures_util::{StreamExt, TryStreamExt};
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
                    .keep_trying("reading the visits of the followed members", |mut con| {
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
        .keep_trying("reading a day of the report", |mut con| async move {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percent_with_two_decimals() {
        assert_eq!(share(1, 3), 33.33);
        assert_eq!(share(2, 3), 66.67);
        assert_eq!(share(5, 0), 0.0);
    }
}
