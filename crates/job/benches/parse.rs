//! Log line parsing speed: nanoseconds per line on one thread, for the
//! book's format, the combined one and JSON lines, with random IPv4
//! addresses (their varying lengths are what makes parsing branchy), read
//! by the parser `--log-format auto` finds for them.
//!
//! `cargo bench --bench parse`; every figure is the median of 5 runs.

use std::hint::black_box;
use std::time::Instant;

use redistribute_job::logline::{LineOptions, LineParser, LogFormat};

const LINES: usize = 1_000_000;
const RUNS: usize = 5;

fn lines(format: LogFormat) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(1);
    (0..LINES)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(rng.u32(..));
            let (hour, minute) = (i / 60_000 % 24, i / 1000 % 60);
            match format {
                LogFormat::Book => format!("{ip} 2026-11-30 {hour:02}:{minute:02}:00 GET /index.html 200 5120"),
                LogFormat::Combined => format!(
                    "{ip} - - [30/Nov/2026:{hour:02}:{minute:02}:00 +0000] \"GET /index.html HTTP/1.1\" 200 5120 \"-\" \"curl/8.5.0\""
                ),
                LogFormat::Json => format!(
                    "{{\"time_iso8601\":\"2026-11-30T{hour:02}:{minute:02}:00+00:00\",\"remote_addr\":\"{ip}\",\"request\":\"GET /index.html HTTP/1.1\",\"status\":200,\"body_bytes_sent\":5120,\"http_user_agent\":\"curl/8.5.0\"}}"
                ),
                _ => unreachable!("only the formats main measures"),
            }
        })
        .collect()
}

fn nanoseconds_per_line(format: LogFormat) -> f64 {
    let lines = lines(format);
    let start = lines[..100].join("\n");
    let parser = LineParser::for_file(&LineOptions::default(), start.as_bytes())
        .expect("auto finds the format");
    assert_eq!(parser.describe().split(' ').next(), Some(format.name()));
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut parsed = 0usize;
            for line in &lines {
                if let Some(visit) = parser.parse(line.as_bytes()) {
                    parsed += visit.day.len();
                    black_box(visit.address);
                }
            }
            black_box(parsed);
            started.elapsed().as_secs_f64() * 1e9 / LINES as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() {
    for format in [LogFormat::Book, LogFormat::Combined, LogFormat::Json] {
        println!(
            "parse({}): {:.1} ns a line ({LINES} lines, random IPv4 addresses)",
            format.name(),
            nanoseconds_per_line(format)
        );
    }
}
