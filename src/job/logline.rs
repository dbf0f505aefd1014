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
pub fn parse(format: LogFormat, line: &[u8]) -> Option<Visit<'_>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line).trim_ascii_start();
    let (first, rest) = split_field(line);
    let address = parse_address(first)?;
    let day = match format {
        LogFormat::Book => match split_field(rest.trim_ascii_start()).0 {
            [] => return None,
            day => Day::Written(day),
        },
        LogFormat::Combined => {
            let open = memchr::memchr(b'[', rest)?;
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

/// An IPv4 address (fast path) or any address `std` parses.
pub fn parse_address(text: &[u8]) -> Option<Address> {
    if let Some(v4) = parse_v4(text) {
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

/// Dotted-quad IPv4 without allocation; rejects leading zeros' ambiguity
/// only as far as `std` does not care either (octets up to 255).
fn parse_v4(text: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    let mut octet = 0u32;
    let mut digits = 0;
    let mut dots = 0;
    for &b in text {
        match b {
            b'0'..=b'9' => {
                octet = octet * 10 + u32::from(b - b'0');
                digits += 1;
                if digits > 3 || octet > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && dots < 3 => {
                value = value << 8 | octet;
                octet = 0;
                digits = 0;
                dots += 1;
            }
            _ => return None,
        }
    }
    (dots == 3 && digits > 0).then_some(value << 8 | octet)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `10/Oct/2000` → `2000-10-10`.
fn combined_day(date: &[u8]) -> Option<[u8; 10]> {
    let [d1, d2, b'/', m1, m2, m3, b'/', y1, y2, y3, y4] = *date else {
        return None;
    };
    let month = MONTHS.iter().position(|m| **m == [m1, m2, m3])? + 1;
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
            let ours = parse_v4(text.as_bytes());
            let std = text.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
            if std.is_some() {
                assert_eq!(ours, std, "{text}");
            } else if text != "01.2.3.4" {
                assert_eq!(ours, None, "{text}");
            }
        }
    }
}
