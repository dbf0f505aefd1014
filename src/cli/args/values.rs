//! How flag values are read: sizes, day counts, networks, log formats,
//! and library enums offered as closed lists of values.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use ipnet::IpNet;
use redistribute_job::logline::{FormatChoice, LogFormat};
use redistribute_job::report::Dimension;
use redistribute_transfer::Decode;

/// Parses sizes such as `64MiB`, `1GiB`, `1.5GB` or `131072`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("{text:?} is not a size (examples: 131072, 64MiB, 1GiB)"))
}

/// `7`, `7d` or `2w`: a number of days for `report --last`.
pub(super) fn day_count(text: &str) -> Result<u32, String> {
    let (number, per_unit) = match text.as_bytes().last() {
        Some(b'd') => (&text[..text.len() - 1], 1),
        Some(b'w') => (&text[..text.len() - 1], 7),
        _ => (text, 1),
    };
    match number.parse::<u32>() {
        Ok(count) if count > 0 => count
            .checked_mul(per_unit)
            .ok_or_else(|| format!("{text} is too many days")),
        _ => Err(format!(
            "expected a number of days or weeks, such as 7d or 2w, not {text:?}"
        )),
    }
}

/// A library enum offered as a closed list of values: the library stays
/// free of clap, and `--help` still lists each value with its meaning.
pub trait Choice: Clone + Send + Sync + 'static {
    /// Every value, in the order `--help` lists them.
    const ALL: &'static [Self];
    /// The value as typed on the command line, and what it means.
    fn describe(&self) -> (&'static str, &'static str);
}

/// Parses one of `T::ALL` by its name.
pub(super) fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    let values = T::ALL.iter().map(|value| {
        let (name, help) = value.describe();
        PossibleValue::new(name).help(help)
    });
    PossibleValuesParser::new(values).map(|name| {
        T::ALL
            .iter()
            .find(|value| value.describe().0 == name)
            .expect("clap accepted only listed names")
            .clone()
    })
}

impl Choice for Decode {
    const ALL: &'static [Self] = &[Decode::Auto, Decode::None];
    fn describe(&self) -> (&'static str, &'static str) {
        match self {
            Decode::Auto => (
                "auto",
                "decompress .gz and .zst files; pass anything else through",
            ),
            Decode::None => ("none", "pass every file through unchanged"),
        }
    }
}

impl Choice for LogFormat {
    const ALL: &'static [Self] = &[
        LogFormat::Book,
        LogFormat::Common,
        LogFormat::Combined,
        LogFormat::VhostCombined,
        LogFormat::Json,
    ];
    fn describe(&self) -> (&'static str, &'static str) {
        let help = match self {
            LogFormat::Book => "`IP DAY ...`, as in Redis in Action",
            LogFormat::Common => {
                "Apache/nginx common: `IP - user [10/Oct/2000:13:55:36 -0700] \"GET ...\" 200 2326`"
            }
            LogFormat::Combined => "common plus `\"referer\" \"user agent\"`",
            LogFormat::VhostCombined => "`host:port` before a combined line",
            LogFormat::Json => "one JSON object a line",
            _ => unreachable!("only values in ALL are described"),
        };
        (self.name(), help)
    }
}

/// `auto`, a format's name, or `nginx:LAYOUT`.
pub(super) fn format_choice(text: &str) -> Result<FormatChoice, String> {
    if text == "auto" {
        return Ok(FormatChoice::Auto);
    }
    if let Some(layout) = text.strip_prefix("nginx:") {
        return layout.parse().map(FormatChoice::Nginx);
    }
    LogFormat::ALL
        .iter()
        .find(|format| format.name() == text)
        .map(|format| FormatChoice::Named(*format))
        .ok_or_else(|| {
            format!(
                "expected auto, book, common, combined, vhost_combined, json or 'nginx:LAYOUT', \
                 not {text:?}"
            )
        })
}

/// A network such as `10.0.0.0/8`, or one address.
pub(super) fn cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("expected a network such as 10.0.0.0/8 or an address, not {text:?}"))
}

impl Choice for Dimension {
    const ALL: &'static [Self] = &[Dimension::Country, Dimension::Region, Dimension::City];
    fn describe(&self) -> (&'static str, &'static str) {
        match self {
            Dimension::Country => ("country", "ISO country codes, e.g. DE"),
            Dimension::Region => ("region", "CC/region"),
            Dimension::City => ("city", "CC/region/city"),
            _ => unreachable!("only values in ALL are described"),
        }
    }
}
