//! Which named format a file's first lines are in, for `--log-format
//! auto`: each format is tried on every sampled line, and the one most
//! lines fit wins (the more specific first on a tie: `vhost_combined`
//! lines would not fit `combined`, but JSON lines fit nothing else).
//! `common` and `combined` parse alike; they are told apart by the quoted
//! referer and user agent, for the name said at `-v`.

use super::{LineOptions, LineParser, LogFormat};

/// Formats in the order a tie goes.
const CANDIDATES: [LogFormat; 4] = [
    LogFormat::Json,
    LogFormat::VhostCombined,
    LogFormat::Combined,
    LogFormat::Book,
];

/// The named format most of `sample`'s lines parse as, and how many do;
/// `None` when no line parses as any.
pub fn detect(sample: &[&[u8]], options: &LineOptions) -> Option<(LogFormat, usize)> {
    let mut best: Option<(LogFormat, usize)> = None;
    for format in CANDIDATES {
        // JSON without its fields fits nothing.
        let Ok(parser) = LineParser::named(format, sample, options) else {
            continue;
        };
        let fits = sample
            .iter()
            .filter(|line| parser.parse(line).is_some())
            .count();
        if fits > best.map_or(0, |(_, most)| most) {
            best = Some((format, fits));
        }
    }
    best.map(|(format, fits)| match format {
        LogFormat::Combined if !sample.iter().any(|line| has_agent(line)) => {
            (LogFormat::Common, fits)
        }
        format => (format, fits),
    })
}

/// Whether a line has quoted fields after the request, as combined does.
fn has_agent(line: &[u8]) -> bool {
    super::quoted_fields(line).nth(2).is_some()
}
