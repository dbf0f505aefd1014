//! Fault injection: the binary under dropped connections, with every byte
//! and every exit checked at the end. Each test is bounded in time and in
//! the number of faults it injects.

mod common;

use std::time::Duration;

use common::killer::ConnectionKiller;
use common::{
    Running, Server, all_succeeded, assert_same_tree, last_line_of_failure, log_text, noise, run,
    spawn, succeeded, wait, write,
};

const T: Duration = Duration::from_secs(120);

/// Receivers `0` and `1` of `channel`, writing to `dir/out0` and `dir/out1`.
fn broadcast_receivers(server: &Server, channel: &str, dir: &std::path::Path) -> Vec<Running> {
    (0..2)
        .map(|i| spawn(server.receive(channel, i).out(dir.join(format!("out{i}")))))
        .collect()
}

/// An `--exec` command that copies each file into `dir` 16 KiB at a time,
/// sleeping `pause` seconds between blocks: slow enough for a kill or a
/// pause to land in the middle of a file.
fn slow_copy(dir: &std::path::Path, pause: &str) -> String {
    format!(
        "f='{}'/\"$REDISTRIBUTE_NAME\"; : > \"$f\"; \
         while dd bs=16384 count=1 iflag=fullblock status=none of=\"$f.part\" && [ -s \"$f.part\" ]; \
         do cat \"$f.part\" >> \"$f\"; sleep {pause}; done; rm -f \"$f.part\"",
        dir.display()
    )
}

/// `count` files of varied sizes, several chunks each at 16 KiB chunks;
/// every other one compresses.
fn write_files(dir: &std::path::Path, count: u64) {
    for i in 0..count {
        write(
            dir,
            &format!("f{i:03}.bin"),
            &varied(1 + (i * 37_000) % 300_000, i),
        );
    }
}

/// `len` bytes of log text for even seeds, of noise for odd ones.
fn varied(len: u64, seed: u64) -> Vec<u8> {
    if seed.is_multiple_of(2) {
        log_text(len as usize, seed)
    } else {
        noise(len as usize, seed)
    }
}

#[test]
fn broadcast_receivers_get_every_file_intact_while_connections_keep_dropping() {
    for round in 0..3 {
        broadcast_round(round);
    }
}

fn broadcast_round(round: u64) {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write_files(&source, 60);
    let killer = ConnectionKiller::start(&server, 7 + round);
    let receivers = broadcast_receivers(&server, "flaky", work.path());
    let sent = run(
        server
            .send("flaky")
            .receivers(2)
            .chunk_size("16KiB")
            .limit("1MiB")
            .path(&source),
        T,
    );
    let outcomes: Vec<_> = receivers.into_iter().map(|r| wait(r, T)).collect();
    let kills = killer.stop();
    succeeded(&sent);
    for outcome in &outcomes {
        succeeded(outcome);
    }
    for i in 0..2 {
        assert_same_tree(&source, &work.path().join(format!("out{i}")));
    }
    assert!(kills >= 3, "only {kills} connection kills happened");
    eprintln!("round {round}: {kills} connection kills");
}

#[test]
fn workers_process_every_file_exactly_once_while_connections_keep_dropping() {
    for round in 0..3 {
        workers_round(round);
    }
}

fn workers_round(round: u64) {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write_files(&source, 60);
    let out = work.path().join("out");
    let killer = ConnectionKiller::start(&server, 11 + round);
    let workers: Vec<Running> = (0..2)
        .map(|i| spawn(server.receive("q", format!("w{i}")).out(&out)))
        .collect();
    let sent = run(
        server
            .send("q")
            .workers()
            .chunk_size("16KiB")
            .limit("1MiB")
            .path(&source),
        T,
    );
    let outcomes: Vec<_> = workers.into_iter().map(|w| wait(w, T)).collect();
    let kills = killer.stop();
    succeeded(&sent);
    let mut done = 0;
    for outcome in &outcomes {
        let stderr = succeeded(outcome);
        done += stderr.matches("received f").count();
    }
    assert_same_tree(&source, &out);
    assert_eq!(done, 60, "files processed in all (none twice)");
    assert!(kills >= 3, "only {kills} connection kills happened");
    eprintln!("round {round}: {kills} connection kills");
}

#[test]
fn workers_killed_mid_file_with_a_backlog_many_times_the_budget_lose_nothing() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    // 40 files of 200 KiB against a 512 KiB budget: a backlog 15 times it.
    for i in 0..40u64 {
        write(&source, &format!("f{i:03}.bin"), &varied(200 << 10, i));
    }
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Slow enough that a kill lands mid-file, with chunks already read.
    let exec = format!(
        "sleep 0.05; exec cat > '{}'/\"$REDISTRIBUTE_NAME\"",
        out.display()
    );
    let worker = |id: &str| spawn(server.receive("kq", id).claim_after("1s").exec(&exec));
    let steady = worker("steady");
    let sender = spawn(
        server
            .send("kq")
            .workers()
            .chunk_size("16KiB")
            .limit("512KiB")
            .path(&source),
    );
    let mut rng = fastrand::Rng::with_seed(5);
    let mut kills = 0;
    for _ in 0..6 {
        let mut victim = worker("victim");
        std::thread::sleep(Duration::from_millis(rng.u64(150..500)));
        if victim.try_wait().unwrap().is_none() {
            victim.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        victim.wait().unwrap();
    }
    let last = worker("victim");
    succeeded(&wait(sender, T));
    succeeded(&wait(steady, T));
    succeeded(&wait(last, T));
    assert_same_tree(&source, &out);
    assert!(kills >= 3, "only {kills} kills landed");
    eprintln!("{kills} workers killed, 40 files, none lost or parked");
}

#[test]
fn files_larger_than_the_budget_survive_kills_of_receivers_and_sender_under_dropped_connections() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    // Two large files and a few small ones against a 256 KiB budget:
    // the large ones can only stream through, their chunks released as
    // soon as both receivers read them.
    // One of each size compresses (its chunks hold several times more),
    // the other does not.
    write(&source, "big-a.log", &log_text(3 << 20, 1));
    write(&source, "big-b.bin", &noise(3 << 19, 2));
    for i in 0..6u64 {
        write(&source, &format!("small{i}.bin"), &varied(40_000, 10 + i));
    }
    let send = || {
        spawn(
            server
                .send("big")
                .receivers("steady,victim")
                .chunk_size("16KiB")
                .limit("256KiB")
                .path(&source),
        )
    };
    let out = |id: &str| work.path().join(format!("out-{id}"));
    let receive = |id: &str| {
        // Reads 16 KiB every 20 ms: kills land mid-file.
        let exec = slow_copy(&out(id), "0.02");
        std::fs::create_dir_all(out(id)).unwrap();
        spawn(server.receive("big", id).exec(&exec))
    };
    let killer = ConnectionKiller::start(&server, 23);
    let steady = receive("steady");
    let mut sender = send();
    let mut rng = fastrand::Rng::with_seed(3);
    let (mut receiver_kills, mut sender_kills) = (0, 0);
    for round in 0..6 {
        let mut victim = receive("victim");
        std::thread::sleep(Duration::from_millis(rng.u64(200..700)));
        if victim.try_wait().unwrap().is_none() {
            victim.kill().unwrap(); // SIGKILL
            receiver_kills += 1;
        }
        victim.wait().unwrap();
        if round % 3 == 1 && sender.try_wait().unwrap().is_none() {
            sender.kill().unwrap();
            sender.wait().unwrap();
            sender_kills += 1;
            sender = send();
        }
    }
    let victim = receive("victim");
    let sent = succeeded(&wait(sender, T));
    succeeded(&wait(steady, T));
    succeeded(&wait(victim, T));
    let drops = killer.stop();
    assert_same_tree(&source, &out("steady"));
    assert_same_tree(&source, &out("victim"));
    assert!(
        receiver_kills >= 3 && drops >= 3,
        "only {receiver_kills} receiver kills and {drops} drops"
    );
    eprintln!(
        "{receiver_kills} receivers and {sender_kills} senders killed, {drops} connection drops, \
         8 files, none lost or parked; {} uploads again by the last sender",
        sent.matches("uploading it again").count()
    );
}

/// Brings Redis back as of a snapshot taken 150 ms earlier, as a replica
/// promoted without the latest writes would (or AOF everysec after a
/// power cut).
fn lose_the_latest_writes(server: &mut Server) {
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    server.0.crash().unwrap();
    server.0.start_again().unwrap();
}

#[test]
fn a_redis_that_comes_back_without_its_latest_writes_is_repaired_and_the_broadcast_completes() {
    transfer_through_a_redis_failure(Server::start(), Mode::Broadcast, lose_the_latest_writes);
}

#[test]
fn a_redis_that_comes_back_without_its_latest_writes_is_repaired_and_the_work_queue_completes() {
    transfer_through_a_redis_failure(Server::start(), Mode::Workers, lose_the_latest_writes);
}

#[test]
fn a_redis_killed_mid_transfer_comes_back_from_its_append_only_file_and_the_transfer_completes() {
    let server = Server::with(redistribute_transfer::redis::LocalRedisOptions {
        persistent: true,
        ..Default::default()
    });
    transfer_through_a_redis_failure(server, Mode::Broadcast, |server| {
        server.0.crash().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        server.0.start_again().unwrap();
    });
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Broadcast,
    Workers,
}

/// Sends 60 files (to two broadcast receivers, or to a work queue of two
/// workers), applies `failure` to the server three times (once 5, 15 and
/// 25 files are done), and checks that everyone finishes by itself with
/// every byte. A broadcast receiver gets each file once; in a work queue
/// a file whose acknowledgement Redis lost may be processed again by the
/// other worker (at least once, see docs/operations.md).
fn transfer_through_a_redis_failure(mut server: Server, mode: Mode, failure: impl Fn(&mut Server)) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write_files(&source, 60);
    let (receivers, send) = match mode {
        Mode::Broadcast => (
            broadcast_receivers(&server, "fail", work.path()),
            server.send("fail").receivers(2),
        ),
        Mode::Workers => (
            (0..2)
                .map(|i| {
                    spawn(
                        server
                            .receive("fail", format!("w{i}"))
                            .out(work.path().join("out")),
                    )
                })
                .collect(),
            server.send("fail").workers(),
        ),
    };
    let sender = spawn(send.chunk_size("16KiB").limit("1MiB").path(&source));
    let deadline = std::time::Instant::now() + T;
    // Early enough that receivers still have work after the last failure:
    // writes lost after everyone finished and left would leave a sender
    // waiting for receivers that are gone, which is right, but ends no test.
    for threshold in [5, 15, 25] {
        let mut con = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        loop {
            let finished: Option<u64> = redis::cmd("HGET")
                .arg("rd:{fail}:meta")
                .arg("finished")
                .query(&mut con)
                .unwrap_or(None);
            if finished.is_some_and(|n| n >= threshold) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the transfer never reached {threshold} files"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        failure(&mut server);
    }
    let mut received = 0;
    for stderr in all_succeeded(receivers, sender, T) {
        let count = stderr.matches("received f").count();
        if mode == Mode::Broadcast {
            // Each file once, even when Redis forgot an acknowledgement.
            assert_eq!(count, 60, "{stderr}");
        }
        received += count;
    }
    match mode {
        Mode::Broadcast => {
            for i in 0..2 {
                assert_same_tree(&source, &work.path().join(format!("out{i}")));
            }
        }
        Mode::Workers => {
            assert_same_tree(&source, &work.path().join("out"));
            assert!(received >= 60, "{received} files received");
            eprintln!("work queue: {received} deliveries for 60 files");
        }
    }
}

/// A worker stopped in the middle of a file larger than the budget finds
/// its first chunks released when it starts again and asks for the file
/// again, while the sender waits for room that only that worker's reading
/// would free: the sender must abandon the upload nobody reads and serve
/// the request (before, both waited on each other for good, every time).
#[test]
fn a_worker_restarted_in_the_middle_of_a_file_larger_than_the_budget_gets_it_whole() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "big.bin", &noise(3 << 20, 41));
    write(&source, "small.log", &log_text(100_000, 42));
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Reads 16 KiB every 10 ms: the kill lands mid-file.
    let exec = slow_copy(&out, "0.01");
    let worker = || spawn(server.receive("wq", "only").exec(&exec));
    let sender = spawn(
        server
            .send("wq")
            .workers()
            .chunk_size("16KiB")
            .limit("256KiB")
            .path(&source),
    );
    let mut first = worker();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the worker finished before it could be stopped"
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let again = worker();
    let worked = succeeded(&wait(again, T));
    let sent = succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
    assert!(
        sent.contains("asked for it again from the start"),
        "the sender never abandoned the upload nobody read:\n{sent}\nthe worker said:\n{worked}"
    );
}

/// A sender stopped in the middle of a file (its record still
/// `uploading`) while a receiver waits for the rest of it and has asked
/// for an older file, larger than the budget, again: the next run must
/// finish the stopped upload, which the receiver reads first, before the
/// older file takes the room (before, it served the request first and
/// both sides waited on each other for good).
#[test]
fn a_sender_stopped_mid_file_while_an_older_file_is_wanted_again_is_resumed_first() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "a.bin", &noise(400_000, 51));
    write(&source, "b.bin", &noise(2 << 20, 52));
    let send = || {
        spawn(
            server
                .send("rs")
                .receivers(1)
                .chunk_size("16KiB")
                .limit("256KiB")
                .path(&source),
        )
    };
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Reads 16 KiB every 10 ms: the sender is stopped in the middle of b.
    let exec = slow_copy(&out, "0.01");
    let receiver = spawn(server.receive("rs", 0).exec(&exec));
    let mut first = send();
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys = redistribute_transfer::native::protocol::Keys::new("rd", "rs");
    let deadline = std::time::Instant::now() + T;
    loop {
        let (state, published): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(keys.file(2))
            .arg("state")
            .arg("published")
            .query(&mut con)
            .unwrap();
        if state.as_deref() == Some("uploading") && published > Some(4) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b.bin never got under way"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap(); // SIGKILL, mid-file
    first.wait().unwrap();
    // What a receiver that found a.bin's chunks gone writes (REQUEST):
    // receiver 0 wants a.bin uploaded again.
    let sent: String = redis::cmd("HGET")
        .arg(keys.sent())
        .arg("a.bin")
        .query(&mut con)
        .unwrap();
    let identity = sent.split(' ').nth(1).unwrap().to_owned();
    let _: () = redis::cmd("HSET")
        .arg(keys.wanted())
        .arg("a.bin")
        .arg(format!("1 {identity} 1 1 0"))
        .query(&mut con)
        .unwrap();
    let second = send();
    let sent = succeeded(&wait(second, T));
    succeeded(&wait(receiver, T));
    assert_same_tree(&source, &out);
    assert!(
        sent.contains("a.bin: uploading it again"),
        "the older file was not uploaded again:\n{sent}"
    );
}

/// A sender and a receiver paused (SIGSTOP) past their leases while
/// another of each takes over: the new ones finish the transfer; the old
/// ones, woken, stop with one line saying they lost their role, and a
/// non-zero exit, instead of blaming Redis or the file for what their
/// successors did.
#[test]
fn a_sender_and_a_receiver_paused_past_their_leases_say_they_lost_their_role() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "big.bin", &noise(2 << 20, 61));
    write(&source, "small.log", &log_text(50_000, 62));
    let out = work.path().join("out");
    let receive = || spawn(server.receive("paused", 0).out(&out));
    let send = || {
        spawn(
            server
                .send("paused")
                .receivers(1)
                .chunk_size("16KiB")
                .limit("256KiB")
                .path(&source),
        )
    };
    let old_receiver = receive();
    let old_sender = send();
    // Both paused once both hold their roles and the first file is
    // announced: the sender then waits for room the receiver would free.
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys = redistribute_transfer::native::protocol::Keys::new("rd", "paused");
    let deadline = std::time::Instant::now() + T;
    let roles = [
        keys.file(1),
        format!("{}lease:sender", keys.base()),
        format!("{}lease:r:0", keys.base()),
    ];
    while redis::cmd("EXISTS")
        .arg(&roles)
        .query::<usize>(&mut con)
        .unwrap()
        < roles.len()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was announced"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let signal = |sig: &str, pid: u32| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP", old_receiver.id());
    signal("-STOP", old_sender.id());
    // Past the leases' 15 s: others may take the roles.
    std::thread::sleep(redistribute_transfer::native::lease::TTL + Duration::from_secs(1));
    let new_receiver = receive();
    let new_sender = send();
    succeeded(&wait(new_sender, T));
    succeeded(&wait(new_receiver, T));
    signal("-CONT", old_receiver.id());
    signal("-CONT", old_sender.id());
    for (old, role) in [(old_receiver, "receiver 0"), (old_sender, "the sender")] {
        let line = last_line_of_failure(&wait(old, T));
        assert!(
            line.contains(role) && line.contains("taken over by another process"),
            "{line}"
        );
    }
    assert_same_tree(&source, &out);
}
