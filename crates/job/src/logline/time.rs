//! The day of a timestamp, in whichever of the usual forms a log writes
//! it: `10/Oct/2000:13:55:36 -0700` (Apache and nginx `$time_local`),
//! ISO 8601 (`2000-10-10T13:55:36-07:00`, `$time_iso8601`, JSON loggers),
//! or seconds (or milliseconds, micro-, nanoseconds) since the Unix epoch
//! (`$msec`, `1700000000.123`). A written date is the day as the line
//! states it, in the log's own time zone; an epoch time has none, so its
//! day is the UTC one. Every day is checked to be on the calendar: a line
//! claiming `2026-02-30` is not a visit on any day.

/// A day as it goes into key names: `YYYY-MM-DD`.
pub type Ymd = [u8; 10];

/// The day of a timestamp in any of the forms above.
pub fn day_of(text: &[u8]) -> Option<Ymd> {
    let text = text.trim_ascii();
    match text.get(2) {
        Some(b'/') => checked(clf_ymd(text.get(..11)?)?),
        _ if text.get(4) == Some(&b'-') => iso_day(text),
        _ => epoch_day(text),
    }
}

/// `10/Oct/2000` → `2000-10-10`, not yet [`checked`].
pub fn clf_ymd(date: &[u8]) -> Option<Ymd> {
    let [d1, d2, b'/', m1, m2, m3, b'/', y1, y2, y3, y4] = *date else {
        return None;
    };
    let month: u8 = match &[m1, m2, m3] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    Some([
        y1,
        y2,
        y3,
        y4,
        b'-',
        b'0' + month / 10,
        b'0' + month % 10,
        b'-',
        d1,
        d2,
    ])
}

/// The date an ISO 8601 timestamp starts with: `YYYY-MM-DD`, then its
/// end, `T` or a space.
pub fn iso_day(text: &[u8]) -> Option<Ymd> {
    let day: Ymd = text.get(..10)?.try_into().ok()?;
    match text.get(10) {
        None | Some(b'T' | b't' | b' ') => checked(day),
        _ => None,
    }
}

/// The UTC day of a Unix time: whole seconds when it has 9 to 11 digits
/// before any fraction (since 1973), else milliseconds (up to 14),
/// microseconds (up to 17) or nanoseconds. Fewer digits are more likely a
/// compact date or a counter than a time.
fn epoch_day(text: &[u8]) -> Option<Ymd> {
    let whole = match text.iter().position(|&b| b == b'.') {
        Some(dot) if text[dot + 1..].iter().all(u8::is_ascii_digit) => &text[..dot],
        Some(_) => return None,
        None => text,
    };
    if !(9..=19).contains(&whole.len()) || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number: i64 = std::str::from_utf8(whole).ok()?.parse().ok()?;
    let seconds = match whole.len() {
        ..=11 => number,
        12..=14 => number / 1_000,
        15..=17 => number / 1_000_000,
        _ => number / 1_000_000_000,
    };
    epoch_seconds_day(seconds)
}

/// The UTC day of `seconds` since the Unix epoch.
pub fn epoch_seconds_day(seconds: i64) -> Option<Ymd> {
    let date = jiff::Timestamp::from_second(seconds)
        .ok()?
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let year = u16::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let digit = |n: u16| b'0' + (n % 10) as u8;
    let (month, day) = (date.month() as u16, date.day() as u16);
    Some([
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(month / 10),
        digit(month),
        b'-',
        digit(day / 10),
        digit(day),
    ])
}

/// `day` if it is `YYYY-MM-DD` and on the calendar. Written out rather
/// than asked of a date library: it runs once per log line.
pub fn checked(day: Ymd) -> Option<Ymd> {
    let digit = |at: usize| u32::from(day[at].wrapping_sub(b'0'));
    let digits = [0, 1, 2, 3, 5, 6, 8, 9];
    if day[4] != b'-' || day[7] != b'-' || digits.iter().any(|&at| digit(at) > 9) {
        return None;
    }
    let year = digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3);
    let (month, date) = (digit(5) * 10 + digit(6), digit(8) * 10 + digit(9));
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let longest = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (year > 0 && (1..=longest).contains(&date)).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Option<String> {
        day_of(text.as_bytes()).map(|d| String::from_utf8(d.to_vec()).unwrap())
    }

    #[test]
    fn every_usual_form_gives_its_day() {
        assert_eq!(
            day("10/Oct/2000:13:55:36 -0700").as_deref(),
            Some("2000-10-10")
        );
        assert_eq!(
            day("2000-10-10T13:55:36-07:00").as_deref(),
            Some("2000-10-10")
        );
        assert_eq!(day("2000-10-10 13:55:36").as_deref(), Some("2000-10-10"));
        assert_eq!(day("2000-10-10").as_deref(), Some("2000-10-10"));
        // 2023-11-14T22:13:20Z, in seconds, with a fraction, and finer.
        for epoch in [
            "1700000000",
            "1700000000.123",
            "1700000000123",
            "1700000000123456",
            "1700000000123456789",
        ] {
            assert_eq!(day(epoch).as_deref(), Some("2023-11-14"), "{epoch}");
        }
        assert_eq!(day("100000000").as_deref(), Some("1973-03-03"));
    }

    #[test]
    fn days_off_the_calendar_or_malformed_are_none() {
        for bad in [
            "30/Feb/2024:00:00:00 +0000",
            "31/Apr/2024:00:00:00 +0000",
            "29/Feb/2023:00:00:00 +0000",
            "00/Jan/2024:00:00:00 +0000",
            "10/Foo/2000:13:55:36 -0700",
            "2024-02-30T00:00:00Z",
            "2024-13-01",
            "2024-1-01",
            "2024-01-01x",
            "\u{1}\u{2}\u{3}\u{4}-\u{5}",
            "-",
            "",
            "17e9",
            "1.2.3",
            "99999999999999999999",
            "20261102",
            "0",
        ] {
            assert_eq!(day(bad), None, "{bad:?}");
        }
        assert!(day("29/Feb/2024:00:00:00 +0000").is_some());
    }
}
