//! The fields of a table's rows: CSV splitting, addresses, networks,
//! location ids, and text in the encodings the files use.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::super::build::TableBuilder;

/// An address read from a file.
#[derive(Clone, Copy)]
pub(super) enum Ip {
    V4(u32),
    V6(u128),
}

pub(super) fn add_range(
    builder: &mut TableBuilder,
    start: Ip,
    end: Ip,
    place: u32,
) -> Result<(), String> {
    match (start, end) {
        (Ip::V4(start), Ip::V4(end)) if start <= end => builder.add_v4(start, end, place),
        (Ip::V6(start), Ip::V6(end)) if start <= end => builder.add_v6(start, end, place),
        (Ip::V4(_), Ip::V4(_)) | (Ip::V6(_), Ip::V6(_)) => {
            return Err("range ends before it starts".into());
        }
        _ => return Err("range starts and ends in different address families".into()),
    }
    Ok(())
}

/// Whether the first field of a headerless file could be the start of a
/// range. Loose on purpose: a malformed address in a range CSV is a bad row,
/// reported with its line, not a file of unknown format.
pub(super) fn looks_like_address(field: &[u8]) -> bool {
    let field = field.trim_ascii();
    field
        .iter()
        .any(|&byte| byte.is_ascii_digit() || byte == b':')
        && field
            .iter()
            .all(|&byte| byte.is_ascii_hexdigit() || byte == b'.' || byte == b':')
}

/// A dotted IPv4, IPv6, or plain integer (IPv4, as the book writes them).
pub(super) fn address(field: &[u8]) -> Result<Ip, String> {
    let text = text(field)?.trim();
    let parsed = if text.contains(':') {
        text.parse::<Ipv6Addr>().ok().map(|ip| Ip::V6(ip.into()))
    } else if text.contains('.') {
        text.parse::<Ipv4Addr>().ok().map(|ip| Ip::V4(ip.into()))
    } else {
        text.parse::<u32>().ok().map(Ip::V4)
    };
    parsed.ok_or_else(|| format!("{text:?} is not an IP address"))
}

/// The first and last address of a CIDR network such as `1.0.0.0/24`.
pub(super) fn network(text: &str) -> Result<(Ip, Ip), String> {
    let invalid = || format!("{text:?} is not a CIDR network");
    let (address_text, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid())?;
    let host_bits_set = || format!("{text:?} has bits set after its /{prefix} prefix");
    match address(address_text.as_bytes()).map_err(|_| invalid())? {
        Ip::V4(start) if prefix <= 32 => {
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            if start & host != 0 {
                return Err(host_bits_set());
            }
            Ok((Ip::V4(start), Ip::V4(start | host)))
        }
        Ip::V6(start) if prefix <= 128 => {
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            if start & host != 0 {
                return Err(host_bits_set());
            }
            Ok((Ip::V6(start), Ip::V6(start | host)))
        }
        _ => Err(invalid()),
    }
}

pub(super) fn location_id(field: &[u8]) -> Result<u32, String> {
    let text = text(field)?;
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a location id"))
}

pub(super) fn text(field: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(field).map_err(|_| "not UTF-8 text".to_owned())
}

/// Each byte is the code point of the same value.
pub(super) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// One line of a CSV file, split into fields. Quoted fields may hold
/// commas and doubled quotes; no format read here has fields spanning
/// lines, so reading line by line keeps line numbers exact for messages.
#[derive(Default)]
pub(super) struct Row {
    /// 1-based, counting blank lines.
    pub(super) line: u64,
    /// The fields' bytes, quotes removed, one after another.
    data: Vec<u8>,
    /// Where each field ends in `data`.
    ends: Vec<usize>,
}

impl Row {
    pub(super) fn split(&mut self, line: &[u8]) {
        self.data.clear();
        self.ends.clear();
        let mut quoted = false;
        let mut bytes = line.iter().copied().peekable();
        while let Some(byte) = bytes.next() {
            match byte {
                b'"' if quoted && bytes.peek() == Some(&b'"') => {
                    self.data.push(b'"');
                    bytes.next();
                }
                b'"' => quoted = !quoted,
                b',' if !quoted => self.ends.push(self.data.len()),
                _ => self.data.push(byte),
            }
        }
        self.ends.push(self.data.len());
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i`, empty when the row is shorter.
    pub(super) fn get(&self, i: usize) -> &[u8] {
        let Some(&end) = self.ends.get(i) else {
            return b"";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..end]
    }

    /// Where a header row has the column `name`.
    pub(super) fn column(&self, name: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.get(i) == name.as_bytes())
    }
}
