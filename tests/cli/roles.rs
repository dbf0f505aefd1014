//! Who may act on a channel: one process per role, held by a lease that
//! a dead or far-away holder loses; purge, which waits for every role to
//! be free and touches no other channel; `purge --stale`.

use std::time::{Duration, Instant};

use crate::common::{
    Server, assert_same_tree, failed_with_one_line, noise, run, spawn, succeeded, wait, write,
};
use crate::{T, kill, wait_for_status};

/// Waits until the lease key `key` exists.
fn wait_for_key(server: &Server, key: &str) {
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + T;
    while !redis::cmd("EXISTS")
        .arg(key)
        .query::<bool>(&mut con)
        .unwrap()
    {
        assert!(Instant::now() < deadline, "timed out waiting for {key}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_process_per_role_a_second_is_refused_naming_the_holder_and_a_dead_ones_role_is_taken_over() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..6 {
        write(&source, &format!("f{i}"), &noise(100_000, i));
    }
    let send = || {
        server
            .send("role")
            .receivers(1)
            .chunk_size("16KiB")
            .limit("256KiB")
            .path(&source)
    };
    let sender = spawn(send());
    wait_for_key(&server, "rd:{role}:lease:sender");
    let line = failed_with_one_line(&run(send(), T));
    assert!(
        line.contains("the sender of channel \"role\" is already taken by pid"),
        "{line}"
    );
    let out = work.path().join("out");
    let receive = || server.receive("role", 0).out(&out);
    // Busy on its first file until killed.
    let mut first = spawn(server.receive("role", 0).exec("sleep 30"));
    wait_for_key(&server, "rd:{role}:lease:r:0");
    let line = failed_with_one_line(&run(receive(), T));
    assert!(
        line.contains(&format!(
            "receiver 0 of channel \"role\" is already taken by pid {}",
            first.id()
        )),
        "{line}"
    );
    // Killed outright: a new process on the same host takes over at once.
    kill(&mut first);
    succeeded(&run(receive(), T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
}

#[test]
fn a_role_held_on_another_host_is_free_once_its_lease_lapses() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "a", b"one file\n");
    let sender = spawn(server.send("far").workers().path(&source));
    wait_for_key(&server, "rd:{far}:lease:sender");
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // A worker w1 on another machine that stopped renewing 13 s ago.
    let _: () = redis::cmd("SET")
        .arg("rd:{far}:lease:w:w1")
        .arg("elsewhere 4242 0 7")
        .arg("PX")
        .arg(1500)
        .query(&mut con)
        .unwrap();
    let work_on = || run(server.receive("far", "w1").stdout(), T);
    let line = failed_with_one_line(&work_on());
    assert!(line.contains("pid 4242 on host elsewhere"), "{line}");
    std::thread::sleep(Duration::from_millis(1600));
    let done = work_on();
    succeeded(&done);
    assert_eq!(done.stdout, b"one file\n");
    succeeded(&wait(sender, T));
}

#[test]
fn purge_refuses_a_channel_in_use_and_deletes_every_key_once_its_processes_are_gone() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", &noise(300_000, 9));
    let mut sender = spawn(
        server
            .send("gone")
            .receivers(1)
            .chunk_size("16KiB")
            .path(work.path().join("f")),
    );
    wait_for_status(&server, "gone", "data in Redis", |s| {
        s["files_announced"] == 1
    });
    // Not under a running sender: what it wrote next would come back
    // without the channel around it.
    let refused = failed_with_one_line(&run(
        server.command().args(["purge", "--channel", "gone"]),
        T,
    ));
    assert!(refused.contains("in use by the sender (pid"), "{refused}");
    kill(&mut sender);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(!rt.block_on(server.keys("rd:c:4:gone:*")).is_empty());
    succeeded(&run(
        server.command().args(["purge", "--channel", "gone"]),
        T,
    ));
    assert_eq!(rt.block_on(server.keys("*")), Vec::<String>::new());
}

#[test]
fn purging_one_channel_leaves_a_channel_with_a_longer_similar_name_alone() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", &noise(100_000, 4));
    let mut senders = Vec::new();
    for channel in ["a", "a:c:1"] {
        senders.push(spawn(
            server
                .send(channel)
                .receivers(1)
                .chunk_size("16KiB")
                .path(work.path().join("f")),
        ));
        wait_for_status(&server, channel, "the upload", |s| {
            s["files_announced"] == 1 && s["ended"] == true
        });
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rt.block_on(server.keys("rd:c:5:a:c:1:*"));
    assert!(!before.is_empty());
    // Only a's sender stops: the other channel's, at work, is not a's.
    kill(&mut senders[0]);
    succeeded(&run(server.command().args(["purge", "--channel", "a"]), T));
    assert_eq!(rt.block_on(server.keys("rd:c:5:a:c:1:*")), before);
    assert_eq!(rt.block_on(server.keys("rd:c:1:a:*")), Vec::<String>::new());
    kill(&mut senders[1]);
}

/// A chunk of a finished file back in Redis (as a promoted replica that
/// missed the delete keeps it): `purge --stale` deletes it and nothing
/// else, and so does the next send.
#[test]
fn chunks_of_finished_files_left_in_redis_are_deleted_by_purge_stale_and_by_the_next_send() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "f.log", &noise(50_000, 9));
    let receiver = spawn(server.receive("left", 0).out(work.path().join("out")));
    let send = || run(server.send("left").receivers(1).path(&source), T);
    succeeded(&send());
    succeeded(&wait(receiver, T));
    let keys = redistribute_transfer::native::protocol::Keys::new("rd", "left");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let control = rt.block_on(server.keys("rd:{left}:*"));
    let plant = || {
        let mut con = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(keys.chunk(1, 0))
            .arg(vec![7u8; 1000])
            .query(&mut con)
            .unwrap();
    };
    plant();
    let said = succeeded(&run(
        server
            .command()
            .args(["purge", "--channel", "left", "--stale"]),
        T,
    ));
    assert!(said.contains("deleted 1 leftover chunk"), "{said}");
    assert_eq!(rt.block_on(server.keys("rd:c:*")), Vec::<String>::new());
    assert_eq!(rt.block_on(server.keys("rd:{left}:*")), control);
    // The next send deletes them too.
    plant();
    let said = succeeded(&send());
    assert!(said.contains("deleted 1 leftover chunk"), "{said}");
    assert_eq!(rt.block_on(server.keys("rd:c:*")), Vec::<String>::new());
}
