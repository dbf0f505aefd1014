//! Which days a report covers, and what a day name may be: a calendar
//! date written `YYYY-MM-DD`, as in the key names.

use jiff::civil::Date;

use redistribute_transfer::error::{Error, Result};

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
pub(super) fn parse_day(day: &str) -> Option<Date> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
