//! Hostile or damaged input: names that would escape the output
//! directory, links planted in it, records and chunks tampered with in
//! Redis. Refused, parked or supplied again; never followed.

use std::process::Stdio;

use redistribute_transfer::native::sender::raw_chunk_capacity;

use crate::common::{
    Server, assert_same_tree, failed_with_one_line, last_line_of_failure, noise, run, spawn,
    succeeded, wait, write,
};
use crate::{T, send_to_one, wait_for_status};

#[test]
fn hostile_names_are_refused_by_the_sender() {
    let server = Server::start();
    for name in ["../escape", "/etc/passwd", "a/../../b", "line\nbreak"] {
        let line = failed_with_one_line(&run(
            server
                .send("h")
                .receivers(1)
                .stdin_as(name)
                .stdin(Stdio::null()),
            T,
        ));
        assert!(line.contains("refusing file name"), "{line}");
    }
}

#[test]
fn a_hostile_name_written_into_redis_is_refused_by_the_receiver() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("deep/out"));
    write(&source, "innocent", b"payload\n");
    write(&source, "second", b"fine\n");
    let sender = spawn(server.send("x").receivers(1).path(&source));
    wait_for_status(&server, "x", "both announcements", |s| {
        s["files_announced"] == 2 && s["ended"] == true
    });
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("rd:{x}:f:1")
        .arg("name")
        .arg("../../escaped")
        .query(&mut con)
        .unwrap();

    let output = run(server.receive("x", 0).out(&out), T);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("refusing file name \"../../escaped\"")
    );
    assert!(!work.path().join("escaped").exists() && !work.path().join("deep/escaped").exists());
    assert_eq!(std::fs::read(out.join("second")).unwrap(), b"fine\n");
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", "x"]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["parked"][0]["file"], "../../escaped");
    // The sender finishes, and reports the file that was set aside.
    let sent = wait(sender, T);
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    assert!(last_line_of_failure(&sent).contains("../../escaped (by 0: "));
}

#[test]
fn malformed_records_are_parked_naming_the_key_and_the_receiver_goes_on() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    for name in ["a", "b", "c", "d"] {
        write(&source, name, name.repeat(1000).as_bytes());
    }
    let sender = send_to_one(&server, "poison", &source);
    wait_for_status(&server, "poison", "all announcements", |s| {
        s["files_announced"] == 4 && s["ended"] == true
    });
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // File 1 gets a name that is not UTF-8, file 2 loses its chunk size.
    let _: () = redis::cmd("HSET")
        .arg("rd:{poison}:f:1")
        .arg("name")
        .arg(&b"bad\xff\xfe"[..])
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HDEL")
        .arg("rd:{poison}:f:2")
        .arg("chunk")
        .query(&mut con)
        .unwrap();
    let receive = || run(server.receive("poison", 0).out(&out), T);
    let first = receive();
    assert_eq!(first.status.code(), Some(3), "{first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("rd:{poison}:f:1: its name \"bad\u{fffd}\u{fffd}\" is not UTF-8"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rd:{poison}:f:2: its record has no valid chunk size"),
        "{stderr}"
    );
    // The healthy files arrived; a restart finds nothing left to fail on.
    assert_eq!(
        std::fs::read(out.join("c")).unwrap(),
        "c".repeat(1000).as_bytes()
    );
    assert_eq!(
        std::fs::read(out.join("d")).unwrap(),
        "d".repeat(1000).as_bytes()
    );
    assert!(!out.join("a").exists() && !out.join("b").exists());
    succeeded(&receive());
    let sent = wait(sender, T);
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let line = last_line_of_failure(&sent);
    assert!(
        line.contains("2 files") && line.contains("(by 0: rd:{poison}:f:2: "),
        "{line}"
    );
}

#[test]
fn symbolic_links_planted_in_the_output_directory_are_never_followed() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out, elsewhere) = (
        work.path().join("in"),
        work.path().join("out"),
        work.path().join("elsewhere"),
    );
    write(&source, "sub/a.log", b"through a linked directory\n");
    write(&source, "b.log", b"through a linked temporary file\n");
    write(&source, "c.log", b"over a link at the final name\n");
    let victim = write(&elsewhere, "victim", b"untouched\n");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join(".b.log.rd-partial")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("c.log")).unwrap();
    let sender = send_to_one(&server, "links", &source);
    let received = run(server.receive("links", 0).out(&out), T);
    assert_eq!(received.status.code(), Some(3), "{received:?}");
    let stderr = String::from_utf8_lossy(&received.stderr);
    assert!(stderr.contains("refusing to write through it"), "{stderr}");
    // Nothing was written outside, and the victim is as it was.
    assert_eq!(
        crate::common::tree(&elsewhere).keys().collect::<Vec<_>>(),
        ["victim"]
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched\n");
    // A link where an earlier version put its temporary file is left alone.
    assert_eq!(
        std::fs::read(out.join("b.log")).unwrap(),
        b"through a linked temporary file\n"
    );
    // A link at the final name is replaced by the file, not written through.
    let c = out.join("c.log");
    assert!(!c.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read(c).unwrap(),
        b"over a link at the final name\n"
    );
    assert_eq!(wait(sender, T).status.code(), Some(3));
}

#[test]
fn a_tampered_chunk_never_reaches_stdout_is_supplied_again_and_finished_before_the_next_file() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let per_chunk = raw_chunk_capacity(16_384) as usize;
    let x = noise(5 * per_chunk, 8);
    write(&source, "x", &x);
    write(&source, "y", b"after the damaged file\n");
    let sender = spawn(
        server
            .send("t")
            .receivers(1)
            .chunk_size("16KiB")
            .compress("none")
            .path(&source),
    );
    wait_for_status(&server, "t", "both files uploaded", |s| {
        s["files_announced"] == 2 && s["ended"] == true
    });
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let chunk = redistribute_transfer::native::protocol::Keys::new("rd", "t").chunk(1, 2);
    let _: () = redis::cmd("SETRANGE")
        .arg(&chunk)
        .arg(100)
        .arg("tampered")
        .query(&mut con)
        .unwrap();
    let received = run(server.receive("t", 0).stdout(), T);
    let stderr = succeeded(&received);
    assert!(
        stderr.contains("chunk 2 does not match its digest")
            && stderr.contains("asked the sender to upload it again"),
        "{stderr}"
    );
    // The verified chunks before the damage, once; then the rest of the
    // damaged file from its upload again, before the next file starts.
    let mut expected = x.clone();
    expected.extend_from_slice(b"after the damaged file\n");
    assert!(
        received.stdout == expected,
        "{} bytes on stdout",
        received.stdout.len()
    );
    let stderr = succeeded(&wait(sender, T));
    assert!(
        stderr.contains("x: uploading it again for receivers 0"),
        "{stderr}"
    );
}

#[test]
fn a_tampered_small_file_in_its_record_is_supplied_again_and_arrives_intact() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(
        &source,
        "small.log",
        b"a small file, stored whole in its record\n",
    );
    let sender = spawn(server.send("w").receivers(1).path(&source));
    wait_for_status(&server, "w", "the file uploaded", |s| {
        s["files_announced"] == 1 && s["ended"] == true
    });
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let record = redistribute_transfer::native::protocol::Keys::new("rd", "w").file(1);
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(&record)
        .arg("data")
        .query(&mut con)
        .unwrap();
    assert!(!stored.is_empty(), "the file was not stored whole");
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg("data")
        .arg(b"\x00\x05\x00\x00\x00\x05\x00\x00\x00tampr")
        .query(&mut con)
        .unwrap();
    let stderr = succeeded(&run(server.receive("w", 0).out(&out), T));
    assert!(
        stderr.contains("damaged in Redis")
            && stderr.contains("asked the sender to upload it again"),
        "{stderr}"
    );
    assert_same_tree(&source, &out);
    let stderr = succeeded(&wait(sender, T));
    assert!(
        stderr.contains("small.log: uploading it again for receivers 0"),
        "{stderr}"
    );
}
