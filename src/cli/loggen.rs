//! Generator of realistic web access logs, for the demo and the benchmark.
//!
//! Lines are in the Apache/nginx combined format (or the book's `IP DAY
//! ...`) with a day's worth of increasing timestamps, a skewed mix of paths,
//! statuses and user agents, and visitor addresses spread over the IPv4
//! space.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use redistribute_job::logline::LogFormat;

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/products",
    "/products/42",
    "/cart",
    "/checkout",
    "/api/v1/items?page=2",
    "/static/app.js",
    "/static/style.css",
    "/images/logo.png",
    "/blog/2026/11/redis-in-action",
    "/login",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Writes about `bytes` of log lines for day `day` (1-based, November 2026)
/// to `out`.
pub fn write_log(
    out: &mut impl Write,
    bytes: u64,
    day: u32,
    seed: u64,
    format: LogFormat,
) -> io::Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut written = 0u64;
    let mut second = 0u32;
    let mut line = String::with_capacity(256);
    while written < bytes {
        use std::fmt::Write as _;
        line.clear();
        second = (second + rng.u32(0..3)).min(86_399);
        let status = *rng
            .choice(&[200, 200, 200, 200, 304, 301, 404, 500])
            .unwrap_or(&200);
        let ip = [rng.u8(1..=223), rng.u8(..), rng.u8(..), rng.u8(1..255)];
        let (hour, minute, second) = (second / 3600, second / 60 % 60, second % 60);
        let path = rng.choice(PATHS).unwrap_or(&"/");
        let size = rng.u32(200..60_000);
        let agent = rng.choice(AGENTS).unwrap_or(&"-");
        let [a, b, c, d] = ip;
        let time = format!(
            "{day:02}/{}/2026:{hour:02}:{minute:02}:{second:02} +0000",
            MONTHS[10]
        );
        let _ = match format {
            LogFormat::Combined => writeln!(
                line,
                "{a}.{b}.{c}.{d} - - [{time}] \"GET {path} HTTP/1.1\" {status} {size} \"-\" \"{agent}\"",
            ),
            LogFormat::Common => writeln!(
                line,
                "{a}.{b}.{c}.{d} - - [{time}] \"GET {path} HTTP/1.1\" {status} {size}",
            ),
            LogFormat::VhostCombined => writeln!(
                line,
                "www.example.com:443 {a}.{b}.{c}.{d} - - [{time}] \"GET {path} HTTP/1.1\" {status} {size} \"-\" \"{agent}\"",
            ),
            LogFormat::Json => writeln!(
                line,
                "{{\"time_iso8601\":\"2026-11-{day:02}T{hour:02}:{minute:02}:{second:02}+00:00\",\"remote_addr\":\"{a}.{b}.{c}.{d}\",\"request\":\"GET {path} HTTP/1.1\",\"status\":{status},\"body_bytes_sent\":{size},\"http_user_agent\":\"{agent}\"}}",
            ),
            LogFormat::Book => writeln!(
                line,
                "{a}.{b}.{c}.{d} 2026-11-{day:02} {hour:02}:{minute:02}:{second:02} GET {path} {status} {size} \"{agent}\"",
            ),
            _ => unreachable!("every format generate-logs offers is written"),
        };
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    Ok(())
}

/// Writes a directory of `files` logs of `total` bytes (uncompressed) in
/// all; every third file is gzip'd, the first of those in two gzip members.
/// Returns the paths written.
pub fn write_log_dir(
    dir: &Path,
    total: u64,
    files: u32,
    format: LogFormat,
) -> io::Result<Vec<PathBuf>> {
    let per_file = total / u64::from(files.max(1));
    let mut written = Vec::new();
    std::fs::create_dir_all(dir)?;
    for i in 0..files {
        let day = i + 1;
        let sub = dir.join(format!("2026-11-{day:02}"));
        // Not `create_dir_all`: an interrupted demo removes its directory
        // while this thread may still run, and must not find it back.
        match std::fs::create_dir(&sub) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
            _ => {}
        }
        let gzip = i % 3 == 1;
        let path = sub.join(if gzip { "access.log.gz" } else { "access.log" });
        let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        if gzip {
            let members = if i == 1 { 2 } else { 1 };
            let mut file = file;
            for member in 0..members {
                let mut encoder =
                    flate2::write::GzEncoder::new(&mut file, flate2::Compression::fast());
                write_log(
                    &mut encoder,
                    per_file / members,
                    day,
                    u64::from(i * 10) + member,
                    format,
                )?;
                encoder.finish()?;
            }
            file.flush()?;
        } else {
            let mut file = file;
            write_log(&mut file, per_file, day, u64::from(i * 10), format)?;
            file.flush()?;
        }
        written.push(path);
    }
    Ok(written)
}
