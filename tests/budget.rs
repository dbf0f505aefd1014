//! The budget counts what Redis really spends: chunk keys cost what
//! `MEMORY USAGE` says, a full channel grows `used_memory` by its `--limit`
//! and little more, and compression lets the same budget hold several
//! times more logs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, assert_same_tree, log_text, noise, run, spawn, succeeded, wait, write};
use redistribute_transfer::redis::memory::KEY_COST;

const T: Duration = Duration::from_secs(60);
const SLOT: u64 = 256 << 10;
const LIMIT: u64 = 2 << 20;

fn used_memory(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

fn status(server: &Server) -> serde_json::Value {
    let output = run(
        server
            .command()
            .args(["status", "--json", "--channel", "logs"]),
        T,
    );
    // Before the sender created the channel, status fails: nothing yet.
    serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .map(|s| s[0].clone())
        .unwrap_or_default()
}

#[test]
fn a_full_channel_costs_redis_its_limit_and_holds_several_times_more_logs() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    // Plain logs and, every third file, gzip'd ones (sent as they are).
    succeeded(&run(
        server
            .command()
            .args(["generate-logs", "--size", "24MiB", "--files", "3"])
            .arg(&source),
        T,
    ));
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let before = used_memory(&mut con);
    let sender = spawn(
        server
            .send("logs")
            .receivers(1)
            .chunk_size("256KiB")
            .limit("2MiB")
            .path(&source),
    );
    // Full: no room for one more chunk. Nobody reads, so it stays full.
    let deadline = Instant::now() + T;
    let held = loop {
        let held = status(&server)["bytes_held"].as_u64().unwrap_or(0);
        if held + SLOT + KEY_COST > LIMIT {
            break held;
        }
        assert!(Instant::now() < deadline, "the channel never filled");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&server)["bytes_held"].as_u64(), Some(held));
    let chunks: Vec<String> = redis::cmd("KEYS").arg("rd:c:*").query(&mut con).unwrap();
    let usage: u64 = chunks
        .iter()
        .map(|key| {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query::<u64>(&mut con)
                .unwrap()
        })
        .sum();
    let grown = used_memory(&mut con) - before;
    eprintln!(
        "{} chunks; held {held}, MEMORY USAGE {usage}, used_memory grew {grown}",
        chunks.len()
    );
    // The budget never counts less than Redis spends on chunks, and not
    // much more: full chunks cost exactly their slot.
    assert!(usage <= held, "MEMORY USAGE {usage} > held {held}");
    assert!(
        usage * 100 >= held * 95,
        "MEMORY USAGE {usage} << held {held}"
    );
    // Redis as a whole: the chunks, the channel's records and streams, and
    // the sender's query buffer (up to 4 chunks being written; see
    // docs/operations.md).
    assert!(
        grown <= LIMIT + 4 * SLOT + (256 << 10),
        "used_memory grew {grown}"
    );
    assert!(grown >= LIMIT * 3 / 4, "used_memory grew only {grown}");
    // What the full budget holds: the original bytes of the chunks in Redis.
    let mut original = 0u64;
    let mut files: Vec<String> = redis::cmd("KEYS")
        .arg("rd:{logs}:f:*")
        .query(&mut con)
        .unwrap();
    files.retain(|f| !f.ends_with(":log"));
    for file in files {
        let (size, offset): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&file)
            .arg("size")
            .arg("offset")
            .query(&mut con)
            .unwrap();
        original += size.or(offset).unwrap_or(0);
    }
    assert!(
        original > 3 * LIMIT,
        "a {LIMIT}-byte budget holds only {original} bytes of logs"
    );

    let out = work.path().join("out");
    let receiver = spawn(server.receive("logs", 0).out(&out));
    succeeded(&wait(receiver, T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
    let done = status(&server);
    assert_eq!(done["bytes_held"], 0, "{done}");
    let ratio = done["compression_ratio"].as_f64().unwrap();
    assert!(ratio > 3.0, "{done}");
    let chunks: Vec<String> = redis::cmd("KEYS").arg("rd:c:*").query(&mut con).unwrap();
    assert!(chunks.is_empty(), "{chunks:?}");
}

/// Sends `source` with `--compress MODE` on a channel of its own to one
/// receiver writing into `out`; returns the channel's status once both
/// exited, and what the sender said at `-v`.
fn send_with(
    server: &Server,
    mode: &str,
    source: &Path,
    out: &Path,
) -> (serde_json::Value, String) {
    let channel = format!("{mode}-{}", out.file_name().unwrap().to_string_lossy());
    let receiver = spawn(server.receive(&channel, 0).out(out));
    let said = succeeded(&run(
        server
            .command()
            .args(["-v", "send", "--channel", &channel, "--receivers", "1"])
            .args(["--compress", mode])
            .arg(source),
        T,
    ));
    succeeded(&wait(receiver, T));
    let output = run(
        server
            .command()
            .args(["status", "--json", "--channel", &channel]),
        T,
    );
    let status = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap();
    (status[0].clone(), said)
}

#[test]
fn every_compression_delivers_the_original_bytes_and_stores_what_it_should() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    write(&logs, "a.log", &log_text(3 << 20, 1));
    write(&logs, "empty.log", b"");
    write(&logs, "one.log", b"x");
    let incompressible = work.path().join("noise");
    write(&incompressible, "random.bin", &noise(3 << 20, 2));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &log_text(6 << 20, 3)).unwrap();
    // Named as if it were text: recognised by its content.
    write(&incompressible, "looks-plain.txt", &gzip.finish().unwrap());
    let mut ratios = Vec::new();
    for mode in ["auto", "lz4", "zstd", "none"] {
        let out = work.path().join(format!("out-{mode}"));
        let (logs_status, _) = send_with(&server, mode, &logs, &out.join("logs"));
        assert_same_tree(&logs, &out.join("logs"));
        let ratio = logs_status["compression_ratio"].as_f64().unwrap();
        ratios.push(ratio);
        let (noise_status, said) = send_with(&server, mode, &incompressible, &out.join("noise"));
        assert_same_tree(&incompressible, &out.join("noise"));
        assert_eq!(
            said.contains("looks-plain.txt: gz data, sent as it is"),
            mode == "auto",
            "{said}"
        );
        // Data that does not compress costs its size and block headers
        // only: 9 bytes per chunk or per 64 KiB block tried.
        let (sent, stored) = (
            noise_status["bytes_sent"].as_u64().unwrap(),
            noise_status["bytes_stored"].as_u64().unwrap(),
        );
        assert!(
            stored >= sent && stored < sent + sent / 500,
            "{mode}: {noise_status}"
        );
        eprintln!("{mode}: logs compress {ratio:.2}:1; noise and gzip {sent} -> {stored}");
    }
    let [auto, lz4, zstd, none] = ratios[..] else {
        unreachable!()
    };
    assert_eq!(auto, lz4, "auto is lz4 for plain text");
    assert!(lz4 > 3.0 && zstd > lz4 && none < 1.0, "{ratios:?}");
}
