//! Taking the visitor's address and the day out of a log line.
//!
//! The formats people have, each recognised from the first lines of a file
//! when `--log-format` is `auto` (`detect.rs`): the book's `IP DAY ...`;
//! Apache/nginx `common`, `combined` and `vhost_combined`, whose day comes
//! from `[10/Oct/2000:13:55:36 -0700]`; JSON lines with the address and
//! time under the usual names (`json.rs`); and any layout written in
//! nginx's `log_format` syntax (`nginx.rs`). Times in any usual form give
//! their day (`time.rs`), which must be on the calendar. Behind a reverse
//! proxy the client can be taken from `X-Forwarded-For`, past trusted
//! proxies ([`ClientIp::Forwarded`]).
//!
//! A [`LineParser`] is made once per file; parsing works on bytes and, for
//! every format but JSON, allocates nothing: it runs once per line of
//! every log.

mod detect;
mod json;
mod nginx;
mod time;

use std::borrow::Cow;
use std::cell::Cell;
use std::net::IpAddr;

use ipnet::IpNet;

pub use detect::detect;
pub use json::JsonFields;
pub use nginx::NginxLayout;

/// A log layout known by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogFormat {
    /// `IP DAY ...`, as in *Redis in Action*, the day written `YYYY-MM-DD`.
    Book,
    /// Apache/nginx common: `IP - user [10/Oct/2000:13:55:36 -0700] "GET ..." 200 2326`.
    Common,
    /// Common plus `"referer" "user agent"` (and nginx's optional
    /// `"X-Forwarded-For"` after them).
    Combined,
    /// Apache's `vhost_combined`: `host:port` before the combined line.
    VhostCombined,
    /// One JSON object a line, address and time under the usual names.
    Json,
}

impl LogFormat {
    /// The name `--log-format` takes.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Book => "book",
            LogFormat::Common => "common",
            LogFormat::Combined => "combined",
            LogFormat::VhostCombined => "vhost_combined",
            LogFormat::Json => "json",
        }
    }
}

/// What `--log-format` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FormatChoice {
    /// Recognised from each file's first lines.
    #[default]
    Auto,
    /// This one for every file.
    Named(LogFormat),
    /// A layout in nginx's `log_format` syntax.
    Nginx(NginxLayout),
}

/// Which address is the visitor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientIp {
    /// The address that connected: the line's first address.
    #[default]
    Remote,
    /// The client a reverse proxy names in `X-Forwarded-For` (nginx's
    /// `$http_x_forwarded_for`, a JSON field): walking back from the
    /// address that connected, the first one not in `trusted`. With no
    /// trusted proxies, the one that connected is taken as the only proxy,
    /// and the last address it forwarded is the client.
    Forwarded {
        /// Networks of the proxies in front of the server.
        trusted: Vec<IpNet>,
    },
}

/// How to read log lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineOptions {
    /// The format, or how to find it.
    pub format: FormatChoice,
    /// Which address counts as the visitor.
    pub client_ip: ClientIp,
    /// For JSON: the address field's name instead of the usual ones.
    pub ip_field: Option<String>,
    /// For JSON: the time field's name instead of the usual ones.
    pub time_field: Option<String>,
}

/// A visitor's address, in the form lookups take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IPv4 address as a number.
    V4(u32),
    /// An IPv6 address as a number.
    V6(u128),
}

impl Address {
    fn to_ip(self) -> IpAddr {
        match self {
            Address::V4(v4) => IpAddr::V4(v4.into()),
            Address::V6(v6) => IpAddr::V6(v6.into()),
        }
    }
}

/// What one line yields.
#[derive(Debug, PartialEq, Eq)]
pub struct Visit {
    /// The visitor.
    pub address: Address,
    /// The day of the visit, `YYYY-MM-DD`, on the calendar.
    pub day: [u8; 10],
}

/// What a layout reads from a line before the visitor is chosen: the
/// address that connected, the day, and the forwarded list if wanted.
type Fields<'a> = (Address, [u8; 10], Option<Cow<'a, [u8]>>);

/// Reads the lines of one file in the format found for it.
#[derive(Clone, Debug)]
pub struct LineParser {
    layout: Layout,
    /// The format as people name it, for messages.
    name: String,
    /// `None`: the address that connected is the visitor.
    forwarded: Option<Vec<IpNet>>,
    /// The last day found on the calendar (see [`LineParser::on_calendar`]);
    /// at first a day known to be on it, so no other value can skip the
    /// check (an `Option` costs a fifth of a book line's parsing).
    checked_day: Cell<time::Ymd>,
}

/// How a line is taken apart.
#[derive(Clone, Debug)]
enum Layout {
    /// `IP DAY ...`.
    Book,
    /// `common` and `combined`, which parse alike.
    Clf,
    /// `vhost_combined`: `host:port`, then a combined line.
    VhostClf,
    Json(JsonFields),
    Nginx(NginxLayout),
}

/// How many of a file's first lines [`LineParser::for_file`] looks at.
pub const SAMPLE_LINES: usize = 32;

impl LineParser {
    /// The parser for a file that starts with `start` (its first block of
    /// lines; only the first [`SAMPLE_LINES`] are looked at).
    ///
    /// # Errors
    ///
    /// A message for people when the format asked for cannot be used: no
    /// known format fits the first lines (with `auto`), or JSON lines
    /// without an address or time field.
    pub fn for_file(options: &LineOptions, start: &[u8]) -> Result<LineParser, String> {
        let sample = sample(start);
        let named = |format| LineParser::named(format, &sample, options);
        match &options.format {
            FormatChoice::Named(format) => named(*format),
            FormatChoice::Nginx(layout) => Ok(LineParser::new(
                Layout::Nginx(layout.clone()),
                layout.to_string(),
                options,
            )),
            FormatChoice::Auto => {
                let found = detect(&sample, options).filter(|(_, fits)| *fits * 2 > sample.len());
                match (found, sample.first()) {
                    (Some((format, _)), _) => named(format),
                    // Nothing to tell by: any format reads no lines alike.
                    (None, None) => named(LogFormat::Book),
                    // JSON that lacks the fields: say which are missing.
                    (None, Some(first)) if first.trim_ascii_start().starts_with(b"{") => {
                        named(LogFormat::Json)
                    }
                    (None, Some(example)) => Err(format!(
                        "no known log format fits its first lines, such as {:?}; pass \
                         --log-format (book, common, combined, vhost_combined, json or \
                         'nginx:LAYOUT')",
                        shown(example)
                    )),
                }
            }
        }
    }

    /// The parser for the named `format`; JSON's fields are found in
    /// `sample`.
    fn named(format: LogFormat, sample: &[&[u8]], options: &LineOptions) -> Result<Self, String> {
        let layout = match format {
            LogFormat::Json => {
                let fields = JsonFields::resolve(sample, options)?;
                let name = format!("json ({})", fields.describe());
                return Ok(LineParser::new(Layout::Json(fields), name, options));
            }
            LogFormat::Book => Layout::Book,
            LogFormat::VhostCombined => Layout::VhostClf,
            _ => Layout::Clf,
        };
        Ok(LineParser::new(layout, format.name().to_owned(), options))
    }

    fn new(layout: Layout, name: String, options: &LineOptions) -> LineParser {
        LineParser {
            layout,
            name,
            forwarded: match &options.client_ip {
                ClientIp::Remote => None,
                ClientIp::Forwarded { trusted } => Some(trusted.clone()),
            },
            checked_day: Cell::new(*b"1970-01-01"),
        }
    }

    /// The format, as people name it: `combined`, `json (remote_addr,
    /// time_iso8601)`, `nginx:$remote_addr ...`.
    pub fn describe(&self) -> &str {
        &self.name
    }

    /// Parses one line (without its newline); `None` when it does not fit.
    pub fn parse(&self, line: &[u8]) -> Option<Visit> {
        // Each arm ends in a visit of its own: the common formats then
        // pass nothing through the general path's larger values.
        match &self.layout {
            Layout::Book => {
                let (address, rest) = leading_address(line.trim_ascii_start())?;
                let day = split_field(rest.trim_ascii_start()).0;
                let day = self.on_calendar(day.try_into().ok()?)?;
                Some(Visit { address, day })
            }
            Layout::Clf => self.clf(line),
            Layout::VhostClf => {
                let (host, rest) = split_field(line.trim_ascii_start());
                if !host.contains(&b':') {
                    return None;
                }
                self.clf(rest)
            }
            // The others end their last field at whitespace; these may
            // end at the line's end, so a `\r` from Windows goes first.
            Layout::Json(fields) => {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.visit(fields.extract(line, self.forwarded.is_some())?)
            }
            Layout::Nginx(layout) => {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.visit(layout.extract(line)?)
            }
        }
    }

    /// The visit of what a layout read: the client chosen when asked.
    fn visit(&self, (remote, day, list): Fields<'_>) -> Option<Visit> {
        let address = match (&self.forwarded, list) {
            (Some(trusted), Some(list)) => client(remote, &list, trusted),
            _ => remote,
        };
        Some(Visit { address, day })
    }

    /// A common, combined or nginx main line: `IP - user [10/Oct/2000:13:55:36
    /// -0700] "request" status bytes "referer" "user agent" "X-Forwarded-For"`,
    /// or with nginx's `$time_iso8601` in the brackets
    /// (`[2000-10-10T13:55:36-07:00]`, a common customisation).
    /// The forwarded list is looked for only when it is used.
    fn clf(&self, line: &[u8]) -> Option<Visit> {
        let (address, rest) = leading_address(line.trim_ascii_start())?;
        // A plain scan: the bracket is a few bytes away, closer than
        // memchr's set-up pays off.
        let open = rest.iter().position(|&b| b == b'[')?;
        let stamp = rest.get(open + 1..)?;
        let ymd = if stamp.get(4) == Some(&b'-') {
            time::iso_day(stamp)?
        } else {
            time::clf_ymd(stamp.get(..11)?)?
        };
        let day = self.on_calendar(ymd)?;
        let Some(trusted) = &self.forwarded else {
            return Some(Visit { address, day });
        };
        let address = match quoted_fields(&rest[open..]).nth(3) {
            Some(list) => client(address, list, trusted),
            None => address,
        };
        Some(Visit { address, day })
    }

    /// `day` if it is on the calendar. Logs are in time order, so the
    /// day is nearly always the previous line's, which was checked.
    fn on_calendar(&self, day: time::Ymd) -> Option<time::Ymd> {
        if self.checked_day.get() != day {
            time::checked(day)?;
            self.checked_day.set(day);
        }
        Some(day)
    }
}

/// The first [`SAMPLE_LINES`] lines of `start` that hold anything.
fn sample(start: &[u8]) -> Vec<&[u8]> {
    start
        .split(|&b| b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .take(SAMPLE_LINES)
        .collect()
}

/// A line for a message: lossy UTF-8, cut after 120 characters.
pub fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut shown: String = text.chars().take(120).collect();
    if text.chars().count() > 120 {
        shown.push('…');
    }
    shown
}

/// The `"..."` fields of `text` in order, their quotes taken off; a quote
/// escaped with a backslash (Apache) does not end a field.
fn quoted_fields(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let open = memchr::memchr(b'"', rest)?;
        let mut at = open + 1;
        loop {
            let close = at + memchr::memchr(b'"', &rest[at..])?;
            if rest[close - 1] != b'\\' {
                let field = &rest[open + 1..close];
                rest = &rest[close + 1..];
                return Some(field);
            }
            at = close + 1;
        }
    })
}

/// The client among the hops of an `X-Forwarded-For` list and `remote`,
/// the address that connected: see [`ClientIp::Forwarded`]. A list that
/// is empty or `-` means no proxy forwarded the request. A hop that is not
/// an address ends the walk: nothing before it can be trusted, so the hop
/// after it is the client.
fn client(remote: Address, list: &[u8], trusted: &[IpNet]) -> Address {
    let list = list.trim_ascii();
    if list.is_empty() || list == b"-" {
        return remote;
    }
    let mut hops = list.rsplit(|&b| b == b',').map(hop_address);
    if trusted.is_empty() {
        return hops.next().flatten().unwrap_or(remote);
    }
    let is_trusted = |address: Address| trusted.iter().any(|net| net.contains(&address.to_ip()));
    let mut client = remote;
    if !is_trusted(remote) {
        return remote;
    }
    for hop in hops {
        match hop {
            Some(address) => {
                client = address;
                if !is_trusted(address) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// One hop of a forwarded list: an address, perhaps with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn hop_address(hop: &[u8]) -> Option<Address> {
    let hop = hop.trim_ascii();
    let hop = match hop.strip_prefix(b"[") {
        Some(bracketed) => &bracketed[..memchr::memchr(b']', bracketed)?],
        None => match memchr::memchr(b':', hop) {
            // One colon: an IPv4 address and its port.
            Some(colon) if memchr::memrchr(b':', hop) == Some(colon) => &hop[..colon],
            _ => hop,
        },
    };
    parse_address(hop)
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

#[cfg(test)]
mod tests;
