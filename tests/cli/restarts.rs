//! Processes killed or stopped and started again, and a Redis restarted:
//! the transfer resumes, nothing is lost, duplicated or announced twice.

use std::process::Stdio;
use std::time::{Duration, Instant};

use redistribute_transfer::redis::LocalRedisOptions;

use crate::common::{Server, assert_same_tree, noise, run, spawn, succeeded, wait, write};
use crate::{T, kill, terminate, wait_for_status};

#[test]
fn a_receiver_killed_mid_file_gets_that_file_again_after_a_restart() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "a-big", &noise(3 << 20, 1));
    write(&source, "b-small", b"small\n");
    let sender = spawn(
        server
            .send("k")
            .receivers(1)
            .chunk_size("64KiB")
            .path(&source),
    );
    // Reads a little of the first file, then stalls: killed mid-file.
    let mut stalled = spawn(
        server
            .receive("k", 0)
            .exec("head -c 1000 > /dev/null; sleep 60"),
    );
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut stalled);
    succeeded(&run(server.receive("k", 0).out(&out), T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
}

#[test]
fn a_sender_killed_mid_upload_resumes_without_duplicating_or_reannouncing() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "1-done-first", &noise(1000, 1));
    write(&source, "2-large", &noise(2 << 20, 2));
    let send = || {
        server
            .send("s")
            .receivers(1)
            .chunk_size("64KiB")
            .limit("512KiB")
            .path(&source)
    };
    // No receiver yet, so the sender fills the budget and blocks mid-file.
    let mut first = spawn(send());
    wait_for_status(&server, "s", "a full budget", |s| {
        s["bytes_held"].as_u64() > Some(400 << 10)
    });
    kill(&mut first);
    let second = spawn(send());
    succeeded(&run(server.receive("s", 0).out(&out), T));
    succeeded(&wait(second, T));
    assert_same_tree(&source, &out);
    wait_for_status(&server, "s", "the final counts", |s| {
        s["files_announced"] == 2 && s["files_finished"] == 2 && s["bytes_held"] == 0
    });
}

#[test]
fn a_redis_restart_mid_transfer_pauses_the_transfer_and_it_completes() {
    let server = &mut Server::with(LocalRedisOptions {
        persistent: true,
        ..LocalRedisOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    for i in 0..4 {
        write(&source, &format!("part{i}"), &noise(1 << 20, i));
    }
    let sender = spawn(
        server
            .send("p")
            .receivers(1)
            .chunk_size("64KiB")
            .limit("256KiB")
            .path(&source),
    );
    wait_for_status(server, "p", "the upload to start", |s| {
        s["bytes_held"].as_u64() > Some(0)
    });
    server.0.stop().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    server.0.start_again().unwrap();
    let receiver = spawn(server.receive("p", 0).out(&out));
    succeeded(&wait(receiver, T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
}

#[test]
fn a_dead_workers_file_goes_to_another_worker_after_claim_after() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "held-by-the-dead", &noise(200_000, 1));
    write(&source, "other", b"other\n");
    let sender = spawn(server.send("dq").workers().path(&source));
    let mut doomed = spawn(
        server
            .receive("dq", "doomed")
            .claim_after("1s")
            .exec("sleep 60"),
    );
    wait_for_status(&server, "dq", "the doomed worker to register", |s| {
        s["receivers"].as_array().is_some_and(|r| !r.is_empty())
    });
    std::thread::sleep(Duration::from_millis(300));
    kill(&mut doomed);
    let started = Instant::now();
    succeeded(&run(
        server.receive("dq", "heir").claim_after("1s").out(&out),
        T,
    ));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "taken over before --claim-after"
    );
}

#[test]
fn a_resumed_upload_keeps_its_chunk_size_even_when_the_option_changed() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "big", &noise(1 << 20, 3));
    let send = |chunk: &str| {
        server
            .send("cs")
            .receivers(1)
            .limit("256KiB")
            .chunk_size(chunk)
            .path(&source)
    };
    let mut first = spawn(send("64KiB"));
    wait_for_status(&server, "cs", "a full budget", |s| {
        s["bytes_held"].as_u64() >= Some(192 << 10)
    });
    kill(&mut first);
    let second = spawn(send("100KiB"));
    succeeded(&run(server.receive("cs", 0).out(&out), T));
    succeeded(&wait(second, T));
    assert_same_tree(&source, &out);
}

#[test]
fn sigterm_abandons_the_file_in_progress_cleanly_and_exits_0() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (first, rest) = (noise(300_000, 11), noise(200_000, 12));
    // A stream that pauses halfway: its first part reaches the receiver.
    let mut sender = spawn(
        server
            .send("term")
            .receivers(1)
            .stdin_as("s.log")
            .stdin(Stdio::piped()),
    );
    let mut input = sender.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, &first).unwrap();
    let receiver = spawn(server.receive("term", 0).out(&out));
    let partial = || {
        std::fs::read_dir(&out)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".rd-partial"))
    };
    let deadline = Instant::now() + T;
    while partial().is_none_or(|p| p.metadata().unwrap().len() < first.len() as u64) {
        assert!(Instant::now() < deadline, "the first part never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(&receiver);
    let output = wait(receiver, T);
    let stderr = succeeded(&output);
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert!(partial().is_none(), "the temporary copy was left behind");

    std::io::Write::write_all(&mut input, &rest).unwrap();
    drop(input);
    succeeded(&run(server.receive("term", 0).out(&out), T));
    succeeded(&wait(sender, T));
    assert_eq!(
        std::fs::read(out.join("s.log")).unwrap(),
        [first, rest].concat()
    );
}
