//! Mistakes and unfit Redis servers: bad input and usage errors, a
//! channel of another version, a Redis that may evict keys or is out of
//! memory. Each gets one clear line, or a wait that says why.

use std::time::Duration;

use redistribute_transfer::redis::LocalRedisOptions;

use crate::T;
use crate::common::{
    Server, assert_same_tree, failed_with_one_line, noise, run, spawn, succeeded, wait, write,
};

#[test]
fn bad_input_gets_one_clear_line_and_a_failing_exit_code() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, Option<String>, &str)> = vec![
        (
            vec![
                "send".into(),
                "--channel".into(),
                "c".into(),
                "--receivers".into(),
                "1".into(),
                work.path().join("missing").display().to_string(),
            ],
            None,
            "No such file",
        ),
        (
            vec!["status".into()],
            Some("redis://127.0.0.1:1".into()),
            "cannot connect to Redis",
        ),
        (
            vec!["status".into()],
            Some("http://nope".into()),
            "invalid Redis URL",
        ),
        (
            vec![
                "send".into(),
                "--channel".into(),
                "c".into(),
                "--receivers".into(),
                "1".into(),
                "--limit".into(),
                "lots".into(),
                ".".into(),
            ],
            None,
            "is not a size",
        ),
    ];
    for (args, url, expected) in cases {
        let mut command = server.command();
        command.args(&args);
        if let Some(url) = url {
            command.env("REDIS_URL", url);
        }
        let output = run(&mut command, T);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            stderr.trim().lines().count() <= 4,
            "{args:?}: too chatty: {stderr}"
        );
    }
}

#[test]
fn usage_errors_exit_with_2_and_say_what_was_meant() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "logs/a.log", b"x");
    let cases: [(&[&str], &str); 6] = [
        (
            &["send", "--channel", "c", "--workers", "3", "logs"],
            "--workers takes no number",
        ),
        (
            &["report", "--from", "2024-01-01"],
            "--from needs --to or --last",
        ),
        (&["report", "--last", "0d"], "such as 7d or 2w"),
        (
            &[
                "report",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-09",
                "--last",
                "3d",
            ],
            "give two of them",
        ),
        (
            &[
                "receive",
                "--channel",
                "c",
                "--id",
                "0",
                "--protocol",
                "classic",
                "--follow",
                "--stdout",
            ],
            "does not support --follow",
        ),
        (
            &["send", "--channel", "c", "--workerz", "logs"],
            "unexpected argument",
        ),
    ];
    for (args, expected) in cases {
        let output = run(server.command().current_dir(work.path()).args(args), T);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_channel_made_by_another_version_is_refused_in_one_line_by_every_side() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let file = write(work.path(), "a.log", b"one line\n");
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("rd:{old}:meta")
        .arg(&["version", "4", "mode", "broadcast", "receivers", "0"])
        .query(&mut con)
        .unwrap();
    let receive = run(server.receive("old", 0).stdout(), T);
    let send = run(server.send("old").receivers(1).path(&file), T);
    for output in [receive, send] {
        let line = failed_with_one_line(&output);
        assert!(
            line.contains("channel old was made by another version")
                && line.contains("schema 4, this one speaks 6"),
            "{line}"
        );
    }
}

#[test]
fn a_sender_facing_an_out_of_memory_redis_waits_says_why_and_finishes_once_there_is_room() {
    let server = Server::with(LocalRedisOptions {
        maxmemory: Some(16 << 20),
        ..LocalRedisOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "f", &noise(6 << 20, 8));
    // Someone else's data fills Redis, below the channel's own budget.
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut filler = 0;
    while redis::cmd("SET")
        .arg(format!("other:{filler}"))
        .arg(vec![0u8; 256 << 10])
        .query::<()>(&mut con)
        .is_ok()
    {
        filler += 1;
    }
    let sender = spawn(
        server
            .send("oom")
            .receivers(1)
            .chunk_size("256KiB")
            .path(&source),
    );
    std::thread::sleep(Duration::from_millis(1500));
    for key in 0..filler {
        let _: () = redis::cmd("DEL")
            .arg(format!("other:{key}"))
            .query(&mut con)
            .unwrap();
    }
    succeeded(&run(server.receive("oom", 0).out(&out), T));
    let stderr = succeeded(&wait(sender, T));
    assert!(stderr.contains("Redis is out of memory"), "{stderr}");
    assert_same_tree(&source, &out);
}

#[test]
fn a_redis_that_may_evict_our_keys_is_refused_up_front_unless_allowed() {
    let server = Server::with(LocalRedisOptions {
        maxmemory: Some(64 << 20),
        maxmemory_policy: Some("allkeys-lru".into()),
        ..LocalRedisOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "a.log", &noise(100_000, 1));
    let send = || server.send("ev").receivers(1).path(&source);
    let line = failed_with_one_line(&run(send(), T));
    assert!(
        line.contains("maxmemory-policy allkeys-lru") && line.contains("--allow-eviction"),
        "{line}"
    );
    let out = work.path().join("out");
    let receive = run(server.receive("ev", 0).out(&out), T);
    let line = failed_with_one_line(&receive);
    assert!(line.contains("allkeys-lru"), "{line}");
    let written = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.keys("*"));
    assert!(written.is_empty(), "refused runs wrote {written:?}");

    let receiver = spawn(server.receive("ev", 0).allow_eviction().out(&out));
    succeeded(&run(send().allow_eviction(), T));
    succeeded(&wait(receiver, T));
    assert_same_tree(&source, &out);
}
