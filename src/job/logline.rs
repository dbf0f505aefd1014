//! Taking the visitor's address and the day out of a log line.
//!
//! Two formats: the book's `IP DAY ...` (the first two whitespace-separated
//! fields, the day as written), and the Apache/nginx combined format, whose
//! day comes from `[10/Oct/2000:13:55:36 -0700]` as `2000-10-10` (the day in
//! the log's own time zone, as the line states it). Parsing works on bytes
//! and allocates nothing: it runs once per line of every log.

use std::net::IpAddr;

/// How log lines are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `IP DAY ...`, as in *Redis in Action*.
    #[default]
    Book,
    /// Apache/nginx combined: `IP - user [10/Oct/2000:13:55:36 -0700] "GET ..." ...`.
    Combined,
}

/// A visitor's address, in the form lookups take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IPv4 address as a number.
    V4(u32),
    /// An IPv6 address as a number.
    V6(u128),
}

/// What one line yields: the address and the day (`YYYY-MM-DD` for the
/// combined format; the second field as written for the book's).
#[derive(Debug, PartialEq, Eq)]
pub struct Visit<'a> {
    /// The visitor.
    pub address: Address,
    /// When the visit happened.
    pub day: Day<'a>,
}

/// A day, either borrowed from the line or rebuilt from a combined-format date.
#[derive(Debug, PartialEq, Eq)]
pub enum Day<'a> {
    /// The book's day field, as written.
    Written(&'a [u8]),
    /// A combined-format date rebuilt as `YYYY-MM-DD`.
    Ymd([u8; 10]),
}

impl Day<'_> {
    /// The day as bytes, as it goes into a key name.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Day::Written(bytes) => bytes,
            Day::Ymd(bytes) => bytes,
        }
    }
}

/// Parses one line (without its newline); `None` when it does not fit.
/// Reads only as far as the fields it needs, each byte once.
pub fn parse(format: LogFormat, line: &[u8]) -> Option<Visit<'_>> {
    let (address, rest) = leading_address(line.trim_ascii_start())?;
    let day = match format {
        LogFormat::Book => match split_field(rest.trim_ascii_start()).0 {
            [] => return None,
            day => Day::Written(day),
        },
        LogFormat::Combined => {
            // A plain scan: the bracket is a few bytes away, closer than
            // memchr's set-up pays off.
            let open = rest.iter().position(|&b| b == b'[')?;
            Day::Ymd(combined_day(rest.get(open + 1..open + 12)?)?)
        }
    };
    Some(Visit { address, day })
}

/// The text up to the first whitespace, and the rest.
fn split_field(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The address a line starts with, and the rest of the line.
fn leading_address(line: &[u8]) -> Option<(Address, &[u8])> {
    if let Some((v4, length)) = leading_v4(line) {
        return Some((Address::V4(v4), &line[length..]));
    }
    let (first, rest) = split_field(line);
    Some((parse_address(first)?, rest))
}

/// A dotted-quad IPv4 address that starts `text` and ends at whitespace or
/// the end of it: its value and length. Each octet's length and value come
/// from its next three bytes without branching on them: with random
/// addresses, loops that stop at the first non-digit mispredict once an
/// octet, which cost more than all the rest of a line's parsing.
fn leading_v4(text: &[u8]) -> Option<(u32, usize)> {
    let digit = |at: usize| u32::from(text.get(at).map_or(u8::MAX, |b| b.wrapping_sub(b'0')));
    let mut value = 0u32;
    let mut at = 0;
    for octet_index in 0..4 {
        let (d0, d1, d2) = (digit(at), digit(at + 1), digit(at + 2));
        let one = usize::from(d0 < 10);
        let two = one & usize::from(d1 < 10);
        let three = two & usize::from(d2 < 10);
        let length = one + two + three;
        let octet = [0, d0, d0 * 10 + d1, d0 * 100 + d1 * 10 + d2][length];
        if length == 0 || octet > 255 {
            return None;
        }
        value = value << 8 | octet;
        at += length;
        if octet_index < 3 {
            if text.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
    }
    match text.get(at) {
        Some(next) if !next.is_ascii_whitespace() => None,
        _ => Some((value, at)),
    }
}

/// An IPv4 address (fast path) or any address `std` parses.
pub fn parse_address(text: &[u8]) -> Option<Address> {
    if let Some((v4, length)) = leading_v4(text)
        && length == text.len()
    {
        return Some(Address::V4(v4));
    }
    match std::str::from_utf8(text).ok()?.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(Address::V4(v4.into())),
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => Address::V4(v4.into()),
            None => Address::V6(v6.into()),
        }),
    }
}

/// `10/Oct/2000` → `2000-10-10`.
fn combined_day(date: &[u8]) -> Option<[u8; 10]> {
    let [d1, d2, b'/', m1, m2, m3, b'/', y1, y2, y3, y4] = *date else {
        return None;
    };
    let month = match &[m1, m2, m3] {
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
    let digits = [d1, d2, y1, y2, y3, y4];
    if !digits.iter().all(u8::is_ascii_digit) || !(b"01"..=b"31").contains(&&[d1, d2]) {
        return None;
    }
    let [m_tens, m_ones] = [b'0' + (month / 10) as u8, b'0' + (month % 10) as u8];
    Some([y1, y2, y3, y4, b'-', m_tens, m_ones, b'-', d1, d2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_lines_give_address_and_day_as_written() {
        let visit = parse(LogFormat::Book, b"10.1.2.3 2026-11-24 GET /index.html").unwrap();
        assert_eq!(visit.address, Address::V4(0x0a01_0203));
        assert_eq!(visit.day.as_bytes(), b"2026-11-24");
    }

    #[test]
    fn combined_lines_give_the_day_of_their_timestamp() {
        let line = br#"2001:db8::1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "-""#;
        let visit = parse(LogFormat::Combined, line).unwrap();
        assert_eq!(
            visit.address,
            Address::V6(0x2001_0db8_0000_0000_0000_0000_0000_0001)
        );
        assert_eq!(visit.day.as_bytes(), b"2000-10-10");
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(
            parse_address(b"::ffff:1.2.3.4"),
            Some(Address::V4(0x0102_0304))
        );
    }

    #[test]
    fn garbage_does_not_parse() {
        for line in [
            &b""[..],
            b"   ",
            b"999.1.1.1 2026-11-24",
            b"1.2.3 day",
            b"hello world",
            b"1.2.3.4",
        ] {
            assert_eq!(
                parse(LogFormat::Book, line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"1.2.3.4 - - [32/Foo/2000:1] x"[..],
            b"1.2.3.4 - - no bracket",
        ] {
            assert_eq!(parse(LogFormat::Combined, line), None);
        }
    }

    #[test]
    fn a_leading_ipv4_address_ends_at_whitespace_and_nowhere_else() {
        assert_eq!(leading_v4(b"1.2.3.4 x"), Some((0x0102_0304, 7)));
        assert_eq!(leading_v4(b"1.2.3.4\tx"), Some((0x0102_0304, 7)));
        assert_eq!(leading_v4(b"1.2.3.4\r"), Some((0x0102_0304, 7)));
        assert_eq!(leading_v4(b"1.2.3.4"), Some((0x0102_0304, 7)));
        for text in [
            &b"1.2.3.4x"[..],
            b"1.2.3.4:80",
            b"1.2.3.4.5",
            b"1.2.3.1234 x",
            b"1.2.3",
        ] {
            assert_eq!(
                leading_v4(text),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        let visit = parse(LogFormat::Book, b"  1.2.3.4  2026-11-24\r").unwrap();
        assert_eq!(visit.day.as_bytes(), b"2026-11-24");
    }

    #[test]
    fn the_fast_ipv4_parser_agrees_with_std() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4",
            "01.2.3.4",
            "256.1.1.1",
            "1..2.3",
            "1.2.3.4.5",
            "1.2.3.",
        ] {
            let ours = leading_v4(text.as_bytes())
                .filter(|&(_, length)| length == text.len())
                .map(|(value, _)| value);
            let std = text.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
            if std.is_some() {
                assert_eq!(ours, std, "{text}");
            } else if text != "01.2.3.4" {
                assert_eq!(ours, None, "{text}");
            }
        }
    }
}
