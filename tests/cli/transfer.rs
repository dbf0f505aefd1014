//! Files getting through: a broadcast to every receiver, a work queue
//! that gives each file to one worker, a followed directory, stdin.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Running, Server, assert_same_tree, noise, run, spawn, succeeded, wait, write};
use crate::{T, kill};

#[test]
fn receivers_started_first_wait_and_each_of_three_gets_every_file() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..5 {
        write(
            &source,
            &format!("day{i}/access.log"),
            &noise(50_000 * i + 1, i as u64),
        );
    }
    let receivers: Vec<Running> = (0..3)
        .map(|i| {
            spawn(
                server
                    .receive("b", i)
                    .out(work.path().join(format!("out{i}"))),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    succeeded(&run(
        server
            .send("b")
            .receivers(3)
            .chunk_size("16KiB")
            .path(&source),
        T,
    ));
    for receiver in receivers {
        succeeded(&wait(receiver, T));
    }
    for i in 0..3 {
        assert_same_tree(&source, &work.path().join(format!("out{i}")));
    }
}

#[test]
fn a_work_queue_gives_each_file_to_exactly_one_of_three_workers() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..30 {
        write(
            &source,
            &format!("f{i:02}"),
            format!("file {i}\n").as_bytes(),
        );
    }
    let journal = work.path().join("journal");
    let exec = format!(
        "cat > /dev/null; echo \"$REDISTRIBUTE_NAME\" >> {}",
        journal.display()
    );
    let sender = spawn(server.send("q").workers().path(&source));
    let workers: Vec<Running> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| spawn(server.receive("q", id).exec(&exec)))
        .collect();
    for worker in workers {
        succeeded(&wait(worker, T));
    }
    succeeded(&wait(sender, T));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&journal).unwrap().lines() {
        *seen.entry(line.to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len(), 30, "{seen:?}");
    assert!(
        seen.values().all(|&n| n == 1),
        "some file was processed twice: {seen:?}"
    );
}

#[test]
fn with_follow_the_sender_picks_up_files_that_appear_later() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "early.log", b"early\n");
    let mut sender = spawn(
        server
            .send("fw")
            .receivers(1)
            .follow()
            .settle("200ms")
            .path(&source),
    );
    let mut receiver = spawn(server.receive("fw", 0).follow().out(&out));
    write(&source, "rotated/late.log", b"late\n");
    let deadline = Instant::now() + T;
    while !out.join("rotated/late.log").exists() {
        assert!(Instant::now() < deadline, "the late file never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(&mut sender);
    kill(&mut receiver);
    assert_same_tree(&source, &out);
}

#[test]
fn stdin_sent_twice_under_one_name_is_delivered_twice() {
    use std::io::Write;
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let journal = work.path().join("journal");
    let mut receiver = spawn(
        server
            .receive("in", 0)
            .follow()
            .exec(&format!("cat >> {}", journal.display())),
    );
    for text in ["first\n", "second\n"] {
        let mut sender = spawn(
            server
                .send("in")
                .receivers(1)
                .stdin_as("piped.log")
                .stdin(Stdio::piped()),
        );
        sender
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        succeeded(&wait(sender, T));
    }
    kill(&mut receiver);
    assert_eq!(std::fs::read_to_string(journal).unwrap(), "first\nsecond\n");
}
