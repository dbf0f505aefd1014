//! Log line parsing speed: nanoseconds per line on one thread, for the
//! book's format and the combined one, with random IPv4 addresses (their
//! varying lengths are what makes parsing branchy).
//!
//! `cargo bench --bench parse`; every figure is the median of 5 runs.

use std::hint::black_box;
use std::time::Instant;

use redistribute::job::logline::{self, LogFormat};

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
            }
        })
        .collect()
}

fn nanoseconds_per_line(format: LogFormat) -> f64 {
    let lines = lines(format);
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut parsed = 0usize;
            for line in &lines {
                if let Some(visit) = logline::parse(format, line.as_bytes()) {
                    parsed += visit.day.as_bytes().len();
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
    for format in [LogFormat::Book, LogFormat::Combined] {
        println!(
            "parse({format:?}): {:.1} ns a line ({LINES} lines, random IPv4 addresses)",
            nanoseconds_per_line(format)
        );
    }
}
