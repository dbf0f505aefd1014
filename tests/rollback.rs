//! Redis as most people run it: RDB snapshots and no append-only file, so
//! a crash brings it back as of its last snapshot, seconds of writes gone.
//! Each test takes a snapshot mid-run (`SAVE`), lets the transfer go on for
//! several more files, kills Redis with SIGKILL and starts it again from
//! the snapshot, twice; then checks every byte and every count, and that
//! every process exited by itself.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Running, Server, TABLE, all_succeeded, book_logs, log_text, noise, spawn, spawn_printing_to,
    tree, write,
};

const T: Duration = Duration::from_secs(180);

/// How many files finish between the snapshot and the crash: the writes
/// Redis loses.
const LOST_FILES: u64 = 6;

/// Waits until `channel` has `count` files finished.
fn wait_for_files(server: &Server, channel: &str, count: u64, deadline: Instant) {
    while server.meta_counter(channel, "finished") < count {
        assert!(
            Instant::now() < deadline,
            "the transfer never reached {count} files"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Snapshots Redis once `channel` has `at` files finished, lets
/// [`LOST_FILES`] more finish, then crashes it and starts it again from
/// the snapshot.
fn roll_back(server: &mut Server, channel: &str, at: u64, deadline: Instant) {
    wait_for_files(server, channel, at, deadline);
    let mut con = server.0.client().unwrap().get_connection().unwrap();
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    wait_for_files(server, channel, at + LOST_FILES, deadline);
    server.0.crash().unwrap();
    server.0.start_again().unwrap();
    eprintln!(
        "rolled back from {} to {at} files finished",
        at + LOST_FILES
    );
}

/// Two rollbacks, early enough that every receiver still has work after
/// the second (the budget keeps the fastest within about ten files of the
/// slowest): acknowledgements lost after a receiver finished and left
/// leave the sender waiting for it until it runs again, which is right,
/// but ends no test.
fn roll_back_twice(server: &mut Server, channel: &str) {
    let deadline = Instant::now() + T;
    roll_back(server, channel, 3, deadline);
    roll_back(server, channel, 12, deadline);
}

/// Asserts that each receiver said it received each of `count` files
/// (named `f...`) once.
fn each_received_once(said: Vec<String>, count: u64) {
    for stderr in said {
        assert_eq!(
            stderr.matches("received f").count() as u64,
            count,
            "{stderr}"
        );
    }
}

/// How many files each test sends.
const FILES: u64 = 40;

/// [`FILES`] files of 50-400 KB through a 256 KiB budget: a backlog many
/// times the budget, and some files larger than it (which stream through,
/// their chunks released as they are read), as in the field.
fn varied_files(dir: &Path) {
    for i in 0..FILES {
        let len = 50_000 + (i * 97_000) % 350_000;
        let bytes = if i % 3 == 0 {
            noise(len as usize, i)
        } else {
            log_text(len as usize, i)
        };
        write(dir, &format!("f{i:02}.log"), &bytes);
    }
}

fn send(server: &Server, channel: &str, audience: &[&str], source: &Path) -> Running {
    spawn(
        server
            .send(channel)
            .args(audience)
            .chunk_size("16KiB")
            .limit("256KiB")
            .path(source),
    )
}

#[test]
fn aggregate_workers_count_every_visit_exactly_once_through_snapshot_rollbacks() {
    let mut server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let logs = work.path().join("logs");
    let expected = book_logs(&logs, FILES as usize, 3000);
    let workers: Vec<Running> = ["w1", "w2"]
        .iter()
        .map(|id| spawn(server.aggregate("logs", id).table(&table)))
        .collect();
    let sender = send(&server, "logs", &["--workers"], &logs);
    roll_back_twice(&mut server, "logs");
    all_succeeded(workers, sender, T);
    assert_eq!(server.daily_counts("country"), expected);
}

#[test]
fn broadcast_copies_are_whole_through_snapshot_rollbacks() {
    let mut server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    varied_files(&source);
    let receivers: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| spawn(server.receive("copies", id).out(work.path().join(id))))
        .collect();
    let sender = send(&server, "copies", &["--receivers", "a,b"], &source);
    roll_back_twice(&mut server, "copies");
    each_received_once(all_succeeded(receivers, sender, T), FILES);
    for id in ["a", "b"] {
        common::assert_same_tree(&source, &work.path().join(id));
    }
}

#[test]
fn stdout_is_every_file_once_in_order_through_snapshot_rollbacks() {
    let mut server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    varied_files(&source);
    // Into a file: a pipe nobody reads while Redis is rolled back would
    // fill up and stall the receiver.
    let printed = work.path().join("printed");
    let receiver = spawn_printing_to(
        server.command().args([
            "-v",
            "receive",
            "--channel",
            "printed",
            "--id",
            "p",
            "--stdout",
        ]),
        &printed,
    );
    let sender = send(&server, "printed", &["--receivers", "p"], &source);
    roll_back_twice(&mut server, "printed");
    let said = all_succeeded(vec![receiver], sender, T).remove(0);
    let expected: Vec<u8> = tree(&source).into_values().flatten().collect();
    let printed = std::fs::read(&printed).unwrap();
    assert!(
        printed == expected,
        "stdout differs from the files in order ({} bytes, expected {}); the receiver said:\n{said}",
        printed.len(),
        expected.len()
    );
}

/// Small files travel whole in their records, many a round trip apart:
/// through a proxy holding each segment 0.25 ms each way, Redis rolled
/// back twice mid-run, each of 300 files reaches both receivers once.
#[test]
fn small_files_over_a_delayed_link_arrive_once_each_through_snapshot_rollbacks() {
    const SMALL: u64 = 300;
    let mut server = Server::start();
    let remote = server.behind_delay(Duration::from_micros(250));
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..SMALL {
        let len = 1024 + (i * 7919) % (7 * 1024);
        write(&source, &format!("f{i:03}.log"), &log_text(len as usize, i));
    }
    let receivers: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| spawn(remote.receive("small", id).out(work.path().join(id))))
        .collect();
    let sender = spawn(remote.send("small").receivers("a,b").path(&source));
    roll_back_twice(&mut server, "small");
    each_received_once(all_succeeded(receivers, sender, T), SMALL);
    for id in ["a", "b"] {
        common::assert_same_tree(&source, &work.path().join(id));
    }
}
