//! One huge file shared by many workers: `send --workers --split` cuts it
//! into pieces at line ends, and any worker takes any piece.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{ADDRESSES, Running, Server, TABLE, run, spawn, succeeded, wait, write};

const T: Duration = Duration::from_secs(180);

/// Writes `lines` book-format lines over four days to `out`, adding the
/// visits to `expected` as they are written; returns the bytes written.
fn log_lines(
    out: &mut impl Write,
    lines: usize,
    seed: u64,
    expected: &mut BTreeMap<(String, String), f64>,
) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = [[0u64; ADDRESSES.len()]; 4];
    let mut bytes = 0;
    for i in 0..lines {
        let pick = rng.usize(..ADDRESSES.len());
        let day = i * 4 / lines;
        let line = format!("{} 2026-11-0{} x\n", ADDRESSES[pick].0, day + 1);
        out.write_all(line.as_bytes()).unwrap();
        bytes += line.len() as u64;
        counts[day][pick] += 1;
    }
    for (day, per_address) in counts.iter().enumerate() {
        for (pick, count) in per_address.iter().enumerate() {
            *expected
                .entry((
                    format!("2026-11-0{}", day + 1),
                    ADDRESSES[pick].1.to_owned(),
                ))
                .or_insert(0.0) += *count as f64;
        }
    }
    bytes
}

/// How many pieces `bytes` of short lines may make: every piece but the
/// last holds `PIECE` bytes and the rest of a line.
fn pieces_for(bytes: u64) -> std::ops::RangeInclusive<u64> {
    bytes / PIECE..=bytes / PIECE + 1
}

const PIECE: u64 = 16 << 20;

/// Files done per worker, from `status --json`.
fn done_per_worker(server: &Server, channel: &str) -> BTreeMap<String, u64> {
    workers(server, channel)
        .into_iter()
        .map(|(id, (done, _))| (id, done))
        .collect()
}

/// Per worker: files done, and whether it reads one now; none before
/// the sender created the channel.
fn workers(server: &Server, channel: &str) -> BTreeMap<String, (u64, bool)> {
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", channel]),
        T,
    );
    if !status.status.success() {
        return BTreeMap::new();
    }
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    status[0]["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                (
                    r["files_done"].as_u64().unwrap(),
                    r["current_file"].is_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn three_workers_share_the_pieces_of_huge_files_and_count_each_once_despite_a_kill() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut expected = BTreeMap::new();
    // Ten million lines (about 225 MB), and a gzip'd file of two million.
    let mut big = std::io::BufWriter::new(std::fs::File::create(logs.join("big.log")).unwrap());
    let big_bytes = log_lines(&mut big, 10_000_000, 1, &mut expected);
    big.flush().unwrap();
    let gz = std::fs::File::create(logs.join("more.log.gz")).unwrap();
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(gz), flate2::Compression::fast());
    let gz_bytes = log_lines(&mut gz, 2_000_000, 2, &mut expected);
    gz.finish().unwrap().flush().unwrap();

    let sender = spawn(server.send("huge").workers().split("16MiB").path(&logs));
    let worker = |id: &str| spawn(server.aggregate("huge", id).table(&table).claim_after("2s"));
    let mut running: Vec<Running> = ["w1", "w2", "w3"].iter().map(|id| worker(id)).collect();
    // Once w2 has counted a piece and reads its next, kill it -9 and
    // start it again: the piece it held goes to whoever claims it.
    let deadline = Instant::now() + T;
    while !matches!(workers(&server, "huge").get("w2"), Some((1.., true))) {
        assert!(Instant::now() < deadline, "w2 never got to a second piece");
        std::thread::sleep(Duration::from_millis(20));
    }
    running[1].kill().unwrap(); // SIGKILL
    let _ = running[1].wait();
    running[1] = worker("w2");
    for worker in running {
        succeeded(&wait(worker, T));
    }
    succeeded(&wait(sender, T));

    assert_eq!(server.daily_counts("country"), expected);
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", "huge"]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let split: Vec<(&str, u64, u64)> = status[0]["split_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap(),
                f["pieces"].as_u64().unwrap(),
                f["pieces_settled"].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = split.iter().map(|f| f.0).collect();
    assert_eq!(names, ["big.log", "more.log.gz"]);
    for ((_, pieces, settled), bytes) in split.iter().zip([big_bytes, gz_bytes]) {
        assert!(pieces_for(bytes).contains(pieces), "{split:?}");
        assert_eq!(settled, pieces, "{split:?}");
    }
    assert!(split[0].1 >= 10, "{split:?}");
    // Every piece counted once, and every worker did a fair share.
    let done = done_per_worker(&server, "huge");
    let pieces: u64 = done.values().sum();
    assert_eq!(pieces, split[0].1 + split[1].1, "{done:?}");
    for (id, count) in &done {
        assert!(
            *count * 6 >= pieces,
            "{id} did {count} of {pieces} pieces: {done:?}"
        );
    }
}

#[test]
fn a_command_gets_each_piece_with_its_number_and_out_refuses_pieces() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let text: String = (0..1000).map(|i| format!("line {i:04}\n")).collect();
    let file = write(work.path(), "in/app.log", text.as_bytes());
    let sender = spawn(server.send("pieces").workers().split("2KiB").path(&file));
    let pieces = work.path().join("pieces");
    std::fs::create_dir_all(&pieces).unwrap();
    let command = format!(
        "cat > '{}'/\"$REDISTRIBUTE_NAME.$REDISTRIBUTE_PIECE-of-$REDISTRIBUTE_PIECES\"",
        pieces.display()
    );
    succeeded(&run(server.receive("pieces", "w").exec(&command), T));
    succeeded(&wait(sender, T));
    let mut names: Vec<String> = std::fs::read_dir(&pieces)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // 10,000 bytes in pieces of about 2 KiB: each ends a line past 2048.
    assert_eq!(
        names,
        [
            "app.log.1-of-5",
            "app.log.2-of-5",
            "app.log.3-of-5",
            "app.log.4-of-5",
            "app.log.5-of-5"
        ]
    );
    let joined: Vec<u8> = names
        .iter()
        .flat_map(|name| std::fs::read(pieces.join(name)).unwrap())
        .collect();
    assert_eq!(String::from_utf8(joined).unwrap(), text);

    let sender = spawn(server.send("refused").workers().split("2KiB").path(&file));
    let out = run(
        server.receive("refused", "w").out(work.path().join("out")),
        T,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr.lines().last().unwrap_or_default();
    assert!(
        said.contains("app.log#1 is piece 1 of 5 of app.log")
            && said.contains("use --exec or --stdout"),
        "{said}"
    );
    drop(sender);
    // A broadcast cannot be split: each piece is one worker's.
    let broadcast = run(server.send("b").receivers(2).split("1MiB").path(&file), T);
    assert_eq!(broadcast.status.code(), Some(2));
    // Nor can a stream: pieces are cut from a file.
    let stream = run(
        server
            .send("s")
            .workers()
            .split("1MiB")
            .stdin_as("x")
            .stdin(std::process::Stdio::null()),
        T,
    );
    assert_eq!(stream.status.code(), Some(2));
    let said = common::failed_with_one_line(&stream);
    assert!(said.contains("stdin cannot be sent with --split"), "{said}");
    // Sent again cut otherwise, its pieces would count twice: refused.
    let recut = run(server.send("pieces").workers().split("4KiB").path(&file), T);
    assert_eq!(recut.status.code(), Some(2));
    let said = common::failed_with_one_line(&recut);
    assert!(
        said.contains("was sent in pieces by an earlier run (5 2048 "),
        "{said}"
    );
}

#[test]
fn a_sender_killed_mid_piece_resumes_it_and_every_piece_arrives_whole() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let text: String = (0..150_000)
        .map(|i| format!("line {i:07} {}\n", "x".repeat(i % 40)))
        .collect();
    let file = write(work.path(), "in/app.log", text.as_bytes());
    let send = || {
        spawn(
            server
                .send("resume")
                .workers()
                .split("2MiB")
                .limit("1MiB")
                .chunk_size("64KiB")
                .compress("none")
                .path(&file),
        )
    };
    let mut sender = send();
    // A worker reading line by line in the shell, slow enough that the
    // sender waits for room in the middle of a piece.
    let pieces = work.path().join("pieces");
    std::fs::create_dir_all(&pieces).unwrap();
    let command = format!(
        "while IFS= read -r l; do printf '%s\\n' \"$l\"; done > '{}'/\"$REDISTRIBUTE_PIECE\"",
        pieces.display()
    );
    let worker = spawn(server.receive("resume", "w").exec(&command));
    // Killed once its second piece is partly uploaded, and started again.
    let deadline = Instant::now() + T;
    loop {
        let status = run(
            server
                .command()
                .args(["status", "--json", "--channel", "resume"]),
            T,
        );
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        if status[0]["files_announced"].as_u64() >= Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "the second piece never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Time to publish what the budget lets it of the second piece.
    std::thread::sleep(Duration::from_millis(300));
    sender.kill().unwrap(); // SIGKILL
    let _ = sender.wait();
    let sender = send();
    succeeded(&wait(worker, T));
    let said = succeeded(&wait(sender, T));
    // The piece it was killed in: the second, or a later one on a slow run.
    assert!(
        said.lines()
            .any(|line| line.contains("app.log#") && line.contains(": resuming after")),
        "{said}"
    );
    let mut names: Vec<u32> = std::fs::read_dir(&pieces)
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    names.sort();
    let joined: String = names
        .iter()
        .map(|i| std::fs::read_to_string(pieces.join(i.to_string())).unwrap())
        .collect();
    assert_eq!(joined.len(), text.len());
    assert!(
        joined == text,
        "the pieces put together differ from the file"
    );
}
