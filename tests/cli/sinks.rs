//! Where files go, and where they come from, failing midway: a closed
//! stdout, a command that does not exist, an output directory that cannot
//! be written, a source cut short while it is sent. The receiver stops or
//! the file is abandoned; nothing is lost or delivered short.

use std::time::{Duration, Instant};

use redistribute_transfer::redis::memory::KEY_COST;

use crate::common::{
    Running, Server, assert_same_tree, failed_with_one_line, last_line_of_failure, noise, run,
    spawn, succeeded, wait, write,
};
use crate::{T, send_to_one, wait_for_status};

#[test]
fn a_source_cut_short_while_it_is_sent_is_abandoned_not_delivered_short() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let path = write(&source, "growing.log", &noise(1 << 20, 3));
    let send = || {
        server
            .send("cut")
            .receivers(1)
            .chunk_size("16KiB")
            .limit("64KiB")
            .path(&source)
    };
    // No receiver yet and a small budget: the sender stalls after a few
    // chunks, and the file is cut while it waits.
    let sender = spawn(send());
    // Full: no room for one more chunk (16 KiB and its key).
    wait_for_status(&server, "cut", "the sender to fill the budget", |s| {
        s["bytes_held"].as_u64().unwrap() + 16_384 + KEY_COST > 64 << 10
    });
    std::fs::write(&path, noise(100_000, 4)).unwrap();
    let out = work.path().join("out");
    let receiver = spawn(server.receive("cut", 0).out(&out));
    let line = failed_with_one_line(&wait(sender, T));
    assert!(
        line.contains("growing.log") && line.contains("size changed"),
        "{line}"
    );
    // Sent again once stable: the receiver gets the file as it is now.
    succeeded(&run(send(), T));
    let stderr = succeeded(&wait(receiver, T));
    assert!(stderr.contains("abandoned"), "{stderr}");
    assert_eq!(
        std::fs::read(out.join("growing.log")).unwrap(),
        noise(100_000, 4)
    );
}

#[test]
fn a_file_abandoned_after_part_of_it_went_to_stdout_ends_the_receiver_and_nothing_follows_it() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let original = noise(1 << 20, 5);
    let path = write(&source, "growing.log", &original);
    let send = || {
        spawn(
            server
                .send("cutout")
                .receivers(1)
                .chunk_size("16KiB")
                .limit("64KiB")
                .path(&source),
        )
    };
    let sender = send();
    let mut receiver = spawn(server.receive("cutout", 0).stdout());
    // Read slowly, so the sender waits for room while the file is cut.
    let mut stdout = receiver.stdout.take().unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = std::thread::spawn({
        let printed = printed.clone();
        move || {
            use std::io::Read;
            let mut block = vec![0; 16 << 10];
            while let Ok(n @ 1..) = stdout.read(&mut block) {
                printed.lock().unwrap().extend_from_slice(&block[..n]);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let deadline = Instant::now() + T;
    while printed.lock().unwrap().len() < 200 << 10 {
        assert!(Instant::now() < deadline, "nothing reached stdout");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&path, noise(100_000, 6)).unwrap();
    let line = failed_with_one_line(&wait(sender, T));
    assert!(line.contains("size changed"), "{line}");
    // Sent again as it is now: another file, which must not follow the
    // first one's part on stdout.
    let again = send();
    let output = wait(receiver, T);
    reader.join().unwrap();
    let last = last_line_of_failure(&output);
    assert!(
        last.contains("growing.log was cut short") && last.contains("abandoned"),
        "{last}"
    );
    let printed = printed.lock().unwrap();
    assert!(
        printed.len() < original.len() && original.starts_with(&printed),
        "stdout is not a part of the first version ({} bytes)",
        printed.len()
    );
    drop(again);
}

/// After a broken sink: nothing was parked or acknowledged, and a receiver
/// with a working output gets every file.
fn nothing_lost_after_a_broken_sink(
    server: &Server,
    channel: &str,
    source: &std::path::Path,
    sender: Running,
) {
    let out = tempfile::tempdir().unwrap();
    succeeded(&run(server.receive(channel, 0).out(out.path()), T));
    succeeded(&wait(sender, T));
    assert_same_tree(source, out.path());
}

#[test]
fn a_closed_stdout_stops_the_receiver_and_loses_nothing() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..4 {
        write(&source, &format!("f{i}"), &noise(300_000, i));
    }
    let sender = send_to_one(&server, "pipe", &source);
    // `receive --stdout | head -c 1000`: the reader goes away early.
    let mut receiver = spawn(server.receive("pipe", 0).stdout());
    let mut head = [0u8; 1000];
    std::io::Read::read_exact(receiver.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(receiver.stdout.take());
    let line = failed_with_one_line(&wait(receiver, T));
    assert!(
        line.contains("stdout") && line.contains("parking anything"),
        "{line}"
    );
    nothing_lost_after_a_broken_sink(&server, "pipe", &source, sender);
}

#[test]
fn a_command_that_does_not_exist_stops_the_receiver_and_loses_nothing() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..3 {
        write(&source, &format!("f{i}"), &noise(10_000, i));
    }
    let sender = send_to_one(&server, "cmd", &source);
    let output = run(server.receive("cmd", 0).exec("no-such-command-here"), T);
    // The shell says so too, on the stderr the command shares with us.
    let line = last_line_of_failure(&output);
    assert!(
        line.contains("exited with 127 (command not found)"),
        "{line}"
    );
    nothing_lost_after_a_broken_sink(&server, "cmd", &source, sender);
}

#[test]
fn an_output_directory_that_cannot_be_written_stops_the_receiver_and_loses_nothing() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "sub/a.log", &noise(10_000, 1));
    write(&source, "b.log", &noise(10_000, 2));
    // A regular file where the output directory should be.
    let out = write(work.path(), "not-a-dir", b"x");
    let sender = send_to_one(&server, "dir", &source);
    let output = run(server.receive("dir", 0).out(&out), T);
    let line = failed_with_one_line(&output);
    assert!(line.contains("not-a-dir"), "{line}");
    nothing_lost_after_a_broken_sink(&server, "dir", &source, sender);
}
