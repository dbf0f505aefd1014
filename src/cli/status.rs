//! `redistribute status`: channels, memory held, each receiver's progress.

use redistribute_transfer::native::status::{self, ChannelStatus, ReceiverStatus};
use redistribute_transfer::redis::Redis;
use redistribute_transfer::{Error, Result};

use super::args::StatusArgs;

pub async fn run(url: &str, prefix: &str, args: StatusArgs) -> Result<()> {
    use std::io::IsTerminal;
    // A snapshot that waited minutes for Redis to come back would tell
    // nothing: say at once that it is unreachable (or the cluster down).
    let redis = Redis::connect(url)
        .await?
        .with_patience(std::time::Duration::from_secs(3));
    loop {
        let found = gather(&redis, prefix, &args).await?;
        if args.watch && std::io::stdout().is_terminal() {
            print!("\x1b[H\x1b[2J"); // from the top of a cleared screen
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&found).expect("status serializes")
            );
        } else if let (true, Some(name)) = (found.is_empty(), &args.channel) {
            // Only with --watch: a channel made later shows up here.
            println!("no channel named {name:?} under prefix {prefix:?} yet; waiting for a sender");
        } else if found.is_empty() {
            println!("no channels");
        } else {
            for status in &found {
                print_status(status);
            }
        }
        if !args.watch {
            return Ok(());
        }
        println!();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The status of the channels `args` asks for.
async fn gather(redis: &Redis, prefix: &str, args: &StatusArgs) -> Result<Vec<ChannelStatus>> {
    let names = match &args.channel {
        Some(name) => vec![name.clone()],
        None => status::channels(redis, prefix).await?,
    };
    let mut found = Vec::new();
    for name in &names {
        match status::channel_status(redis, prefix, name).await? {
            Some(status) => found.push(status),
            // Watching, a channel may be made later: wait for it.
            None if args.channel.is_some() && !args.watch => {
                return Err(Error::Usage(format!(
                    "no channel named {name:?} under prefix {prefix:?}"
                )));
            }
            None => {}
        }
    }
    if args.active {
        found.retain(|s| !(s.ended && s.files_in_flight == 0 && s.parked.is_empty()));
    }
    Ok(found)
}

/// What a receiver is doing and how fast, when it said: `reading NAME
/// (12.0 MiB in), at 45.0 MiB/s, 1.2 GiB behind, about 27 s left; last
/// report 3 s ago`.
fn pace(r: &ReceiverStatus, now_ms: u64) -> Option<String> {
    let seen = r.last_seen_ms?;
    let mut parts = Vec::new();
    if let (Some(name), Some(into)) = (&r.current_file, r.bytes_into_current) {
        parts.push(format!("reading {name} ({} in)", size(into)));
    }
    if r.rate > 0 {
        parts.push(format!("at {}/s", size(r.rate)));
    }
    if let Some(behind) = r.bytes_behind.filter(|b| *b > 0) {
        parts.push(format!("{} behind", size(behind)));
    }
    if let Some(eta) = r.eta_seconds.filter(|_| r.bytes_behind.unwrap_or(0) > 0) {
        parts.push(format!("{} left", time_left(eta)));
    }
    let ago = now_ms.saturating_sub(seen) / 1000;
    Some(
        format!("{}; last report {ago} s ago", parts.join(", "))
            .trim_start_matches("; ")
            .to_owned(),
    )
}

/// `rate in 40.0 MiB/s, out 80.0 MiB/s, about 12 s left`, or nothing
/// when nothing moves and nothing is left.
fn channel_pace(s: &ChannelStatus) -> Option<String> {
    let mut parts = Vec::new();
    if s.rate_in > 0 || s.rate_out > 0 {
        parts.push(format!(
            "rate in {}/s, out {}/s",
            size(s.rate_in),
            size(s.rate_out)
        ));
    }
    if let Some(eta) = s.eta_seconds {
        parts.push(format!("{} left for what was uploaded", time_left(eta)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `under a second`, `about 45 s`, `about 12 min`, `about 3 h 20 min`.
fn time_left(seconds: u64) -> String {
    match seconds {
        0 => "under a second".into(),
        1..120 => format!("about {seconds} s"),
        120..7200 => format!("about {} min", seconds / 60),
        _ => format!("about {} h {} min", seconds / 3600, seconds / 60 % 60),
    }
}

/// A byte count for people: `12.0 MiB`.
fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

fn print_status(s: &ChannelStatus) {
    print_channel(s);
    print_receivers(s);
    for f in &s.split_files {
        println!(
            "  {}: {} of {} pieces through (done or parked)",
            f.file, f.pieces_settled, f.pieces
        );
    }
    for p in &s.parked {
        println!(
            "  parked: {} (receiver {}): {}",
            p.file, p.receiver, p.reason
        );
    }
}

/// The channel's own lines: files, memory, the sender, pace, compression,
/// chunks per master.
fn print_channel(s: &ChannelStatus) {
    println!(
        "channel {}: {}{}, {} announced, {} finished, {} in flight, {} held of {} limit",
        s.channel,
        s.mode,
        if s.ended { ", input ended" } else { "" },
        s.files_announced,
        s.files_finished,
        s.files_in_flight,
        size(s.bytes_held),
        size(s.limit),
    );
    match (&s.sender, s.sender_waiting_since_ms) {
        (Some(process), Some(since)) => println!(
            "  sender running: {process}; waiting for room for {} s, for {}",
            s.time_ms.saturating_sub(since) / 1000,
            s.awaited()
        ),
        (Some(process), None) => println!("  sender running: {process}"),
        (None, _) => println!("  no sender running"),
    }
    if let Some(pace) = channel_pace(s) {
        println!("  {pace}");
    }
    if let Some(ratio) = s.compression_ratio {
        println!(
            "  sent {} stored as {} (compression {ratio:.1}:1)",
            size(s.bytes_sent),
            size(s.bytes_stored)
        );
    }
    if !s.bytes_per_master.is_empty() {
        let each: Vec<String> = s
            .bytes_per_master
            .iter()
            .map(|m| format!("{} {}", m.master, size(m.bytes)))
            .collect();
        println!("  held per master: {}", each.join(", "));
    }
    if s.bytes_left_over > 0 {
        println!(
            "  {} of that are leftovers of finished files (back after a failover); the next send on the channel, or `purge --stale`, deletes them",
            size(s.bytes_left_over)
        );
    }
}

/// One line per receiver, and its pace under it.
fn print_receivers(s: &ChannelStatus) {
    use std::io::IsTerminal;
    let bars = std::io::stdout().is_terminal();
    println!(
        "  {:<12} {:<15} {:>7} {:>11} {:>7} {:>7} {:>9}  last file",
        "receiver", "state", "done", "bytes", "behind", "parked", "unparsed"
    );
    for r in &s.receivers {
        let behind = r.files_behind.map_or("-".to_owned(), |b| b.to_string());
        let bar = if bars { progress_bar(r) } else { String::new() };
        let state = match (&r.process, r.joined) {
            (Some(_), _) => "running",
            (None, true) => "stopped",
            (None, false) => "never connected",
        };
        println!(
            "  {:<12} {state:<15} {:>7} {:>11} {:>7} {:>7} {:>9}  {bar}{}",
            r.id,
            r.files_done,
            size(r.bytes_done),
            behind,
            r.files_parked,
            r.lines_unparsed,
            r.last_file.as_deref().unwrap_or("-"),
        );
        if let Some(line) = pace(r, s.time_ms) {
            println!("  {:<12} {line}", "");
        }
    }
}

/// `[#####...............] `: a broadcast receiver's files done of those
/// it is due; nothing for a worker.
fn progress_bar(r: &ReceiverStatus) -> String {
    let Some(behind) = r.files_behind else {
        return String::new();
    };
    let total = (r.files_done + behind).max(1);
    let filled = (20 * r.files_done / total) as usize;
    format!("[{}{}] ", "#".repeat(filled), ".".repeat(20 - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_in_the_unit_that_fits() {
        assert_eq!(time_left(0), "under a second");
        assert_eq!(time_left(45), "about 45 s");
        assert_eq!(time_left(720), "about 12 min");
        assert_eq!(time_left(12_000), "about 3 h 20 min");
    }
}
