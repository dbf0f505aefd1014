//! Redis on another host: every client reaches the server through a proxy
//! that holds each segment 0.25 ms in each direction (a LAN's round trip),
//! while the harness looks at the server directly. Every byte and every
//! exit is checked, as everywhere else; speed is the benchmark's business
//! (`scripts/bench-small`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Remote, Running, Server, all_succeeded, assert_same_tree, log_text, spawn};

/// One way; a PING's round trip through the proxy measures about 0.65 ms
/// on the development machine (the proxy's own cost comes on top of twice
/// this).
const DELAY: Duration = Duration::from_micros(250);
const T: Duration = Duration::from_secs(120);
/// Small files in every test here.
const SMALL_FILES: u64 = 300;

/// 300 access logs of 1 to 8 KiB spread over five host directories, and
/// one of 4 MiB; returns how many files that is.
fn many_small_logs_and_a_large_one(dir: &Path) -> usize {
    for i in 0..SMALL_FILES {
        let len = 1024 + (i * 7919) % (7 * 1024);
        let name = format!("host{}/access-{i:03}.log", i % 5);
        common::write(dir, &name, &log_text(len as usize, i));
    }
    common::write(dir, "big/access.log", &log_text(4 << 20, 1_000));
    SMALL_FILES as usize + 1
}

/// Copies that a receiver has renamed into place under `dir` so far.
fn copies_in(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

/// Receivers `0` and `1` of `channel` through `remote`, copying into
/// `outN` under `dir`.
fn receivers_0_and_1(remote: &Remote, channel: &str, dir: &Path) -> Vec<Running> {
    (0..2)
        .map(|i| spawn(remote.receive(channel, i).out(dir.join(format!("out{i}")))))
        .collect()
}

#[test]
fn hundreds_of_small_files_and_a_large_one_reach_two_receivers_whole_over_a_delayed_link() {
    let server = Server::start();
    let remote = server.behind_delay(DELAY);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let files = many_small_logs_and_a_large_one(&source);
    let out = |i: usize| work.path().join(format!("out{i}"));
    let receivers = receivers_0_and_1(&remote, "far", work.path());
    let sender = spawn(remote.send("far").receivers(2).path(&source));
    all_succeeded(receivers, sender, T);
    for i in 0..2 {
        assert_same_tree(&source, &out(i));
    }
    assert_eq!(copies_in(&out(0)), files);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left = rt.block_on(server.keys("rd:c:*"));
    assert!(left.is_empty(), "chunks left behind: {left:?}");
}

#[test]
fn a_receiver_killed_mid_transfer_over_a_delayed_link_and_restarted_gets_every_byte() {
    let server = Server::start();
    let remote = server.behind_delay(DELAY);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let files = many_small_logs_and_a_large_one(&source);
    let out = |id: &str| work.path().join(format!("out-{id}"));
    let receive = |id: &str| spawn(remote.receive("far", id).out(out(id)));
    let steady = receive("steady");
    let mut victim = receive("victim");
    let sender = spawn(remote.send("far").receivers("steady,victim").path(&source));
    // Killed once it has some copies in place and before it has them all.
    let deadline = Instant::now() + T;
    while copies_in(&out("victim")) < 30 {
        assert!(
            victim.try_wait().unwrap().is_none(),
            "the victim ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the victim never got 30 files");
        std::thread::sleep(Duration::from_millis(5));
    }
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let had = copies_in(&out("victim"));
    assert!(
        had < files,
        "the kill landed after the end ({had} of {files} files)"
    );
    let again = receive("victim");
    all_succeeded(vec![steady, again], sender, T);
    assert_same_tree(&source, &out("steady"));
    assert_same_tree(&source, &out("victim"));
    eprintln!("the victim was killed with {had} of {files} files in place");
}

#[test]
fn a_sender_killed_mid_run_over_a_delayed_link_resumes_and_announces_no_file_twice() {
    let server = Server::start();
    let remote = server.behind_delay(DELAY);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let files = many_small_logs_and_a_large_one(&source);
    let out = |i: usize| work.path().join(format!("out{i}"));
    let receivers = receivers_0_and_1(&remote, "again", work.path());
    let send = || spawn(remote.send("again").receivers(2).path(&source));
    let mut first = send();
    // Killed with some files announced (several a round trip) and not all.
    let deadline = Instant::now() + T;
    while server.meta_counter("again", "announced") < 40 {
        assert!(
            Instant::now() < deadline,
            "the sender never announced 40 files"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let had = server.meta_counter("again", "announced");
    assert!(
        had < files as u64,
        "the kill landed after the last announcement"
    );
    all_succeeded(receivers, send(), T);
    for i in 0..2 {
        assert_same_tree(&source, &out(i));
    }
    assert_eq!(
        server.meta_counter("again", "announced"),
        files as u64,
        "a file was announced twice (the sender was killed at {had})"
    );
}
