//! The binary as users run it: several processes, killed and restarted,
//! against a real redis-server.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Running, Server, assert_same_tree, failed_with_one_line, last_line_of_failure, noise, run,
    spawn, succeeded, wait, write,
};
use redistribute_transfer::native::sender::raw_chunk_capacity;
use redistribute_transfer::redis::LocalRedisOptions;
use redistribute_transfer::redis::memory::KEY_COST;

const T: Duration = Duration::from_secs(60);

/// Polls `status --json` until `check` accepts the channel's state.
fn wait_for_status(
    server: &Server,
    channel: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        let output = run(
            server
                .command()
                .args(["status", "--json", "--channel", channel]),
            T,
        );
        if output.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            if check(&status[0]) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

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
            let out = work.path().join(format!("out{i}"));
            spawn(
                server
                    .command()
                    .args(["receive", "--channel", "b", "--id", &i.to_string(), "--out"])
                    .arg(out),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    succeeded(&run(
        server
            .command()
            .args([
                "send",
                "--channel",
                "b",
                "--receivers",
                "3",
                "--chunk-size",
                "16KiB",
            ])
            .arg(&source),
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
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "q", "--workers"])
            .arg(&source),
    );
    let workers: Vec<Running> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| {
            spawn(
                server
                    .command()
                    .args(["receive", "--channel", "q", "--id", id, "--exec", &exec]),
            )
        })
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
fn a_receiver_killed_mid_file_gets_that_file_again_after_a_restart() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "a-big", &noise(3 << 20, 1));
    write(&source, "b-small", b"small\n");
    let sender = spawn(
        server
            .command()
            .args([
                "send",
                "--channel",
                "k",
                "--receivers",
                "1",
                "--chunk-size",
                "64KiB",
            ])
            .arg(&source),
    );
    // Reads a little of the first file, then stalls: killed mid-file.
    let mut stalled = spawn(server.command().args([
        "receive",
        "--channel",
        "k",
        "--id",
        "0",
        "--exec",
        "head -c 1000 > /dev/null; sleep 60",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut stalled);
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", "k", "--id", "0", "--out"])
            .arg(&out),
        T,
    ));
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
    let send = |server: &Server| {
        let mut command = server.command();
        command
            .args([
                "send",
                "--channel",
                "s",
                "--receivers",
                "1",
                "--chunk-size",
                "64KiB",
                "--limit",
                "512KiB",
            ])
            .arg(&source);
        command
    };
    // No receiver yet, so the sender fills the budget and blocks mid-file.
    let mut first = spawn(&mut send(&server));
    wait_for_status(&server, "s", "a full budget", |s| {
        s["bytes_held"].as_u64() > Some(400 << 10)
    });
    kill(&mut first);
    let second = spawn(&mut send(&server));
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", "s", "--id", "0", "--out"])
            .arg(&out),
        T,
    ));
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
            .command()
            .args([
                "send",
                "--channel",
                "p",
                "--receivers",
                "1",
                "--chunk-size",
                "64KiB",
                "--limit",
                "256KiB",
            ])
            .arg(&source),
    );
    wait_for_status(server, "p", "the upload to start", |s| {
        s["bytes_held"].as_u64() > Some(0)
    });
    server.0.stop().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    server.0.start_again().unwrap();
    let receiver = spawn(
        server
            .command()
            .args(["receive", "--channel", "p", "--id", "0", "--out"])
            .arg(&out),
    );
    succeeded(&wait(receiver, T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
}

#[test]
fn hostile_names_are_refused_by_the_sender() {
    let server = Server::start();
    for name in ["../escape", "/etc/passwd", "a/../../b", "line\nbreak"] {
        let mut command = server.command();
        command
            .args([
                "send",
                "--channel",
                "h",
                "--receivers",
                "1",
                "--name",
                name,
                "-",
            ])
            .stdin(Stdio::null());
        let line = failed_with_one_line(&run(&mut command, T));
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
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "x", "--receivers", "1"])
            .arg(&source),
    );
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

    let output = run(
        server
            .command()
            .args(["receive", "--channel", "x", "--id", "0", "--out"])
            .arg(&out),
        T,
    );
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
fn passwords_stay_out_of_help_and_errors_even_with_a_raw_at_sign() {
    let server = Server::start();
    let mut help = server.command();
    help.env("REDIS_URL", "redis://:hunter2@127.0.0.1:1")
        .args(["send", "--help"]);
    let output = run(&mut help, T);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("REDIS_URL") && !text.contains("hunter2"),
        "{text}"
    );

    let mut status = server.command();
    status
        .env("REDIS_URL", "redis://:top@secret@127.0.0.1:1")
        .arg("status");
    let line = failed_with_one_line(&run(&mut status, T));
    assert!(!line.contains("top") && !line.contains("secret"), "{line}");
}

#[test]
fn a_wrong_password_and_an_unknown_receiver_are_one_line_errors() {
    let server = Server::with(LocalRedisOptions {
        password: Some("right".into()),
        ..LocalRedisOptions::default()
    });
    let port = server.0.port();
    let mut command = server.command();
    command
        .env("REDIS_URL", format!("redis://:wrong@127.0.0.1:{port}"))
        .arg("status");
    let line = failed_with_one_line(&run(&mut command, T));
    assert!(
        line.contains("refused the credentials") && !line.contains("wrong"),
        "{line}"
    );

    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", b"x");
    let mut sender = spawn(
        server
            .command()
            .args(["send", "--channel", "u", "--receivers", "a,b"])
            .arg(work.path().join("f")),
    );
    wait_for_status(&server, "u", "the channel", |s| s["files_announced"] == 1);
    let line = failed_with_one_line(&run(
        server
            .command()
            .args(["receive", "--channel", "u", "--id", "zed", "--stdout"]),
        T,
    ));
    assert!(
        line.contains("\"zed\" is not a receiver") && line.contains("a, b"),
        "{line}"
    );
    kill(&mut sender);
}

#[test]
fn a_dead_workers_file_goes_to_another_worker_after_claim_after() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "held-by-the-dead", &noise(200_000, 1));
    write(&source, "other", b"other\n");
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "dq", "--workers"])
            .arg(&source),
    );
    let mut doomed = spawn(server.command().args([
        "receive",
        "--channel",
        "dq",
        "--id",
        "doomed",
        "--claim-after",
        "1s",
        "--exec",
        "sleep 60",
    ]));
    wait_for_status(&server, "dq", "the doomed worker to register", |s| {
        s["receivers"].as_array().is_some_and(|r| !r.is_empty())
    });
    std::thread::sleep(Duration::from_millis(300));
    kill(&mut doomed);
    let started = Instant::now();
    succeeded(&run(
        server
            .command()
            .args([
                "receive",
                "--channel",
                "dq",
                "--id",
                "heir",
                "--claim-after",
                "1s",
                "--out",
            ])
            .arg(&out),
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
fn a_file_that_fails_three_times_is_parked_and_reported_not_retried_forever() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "poison", b"bad\n");
    write(&source, "fine", b"good\n");
    let tries = work.path().join("tries");
    let exec = format!(
        "echo \"$REDISTRIBUTE_NAME\" >> {}; if [ \"$REDISTRIBUTE_NAME\" = poison ]; then exit 3; fi; cat > /dev/null",
        tries.display()
    );
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "pz", "--workers"])
            .arg(&source),
    );
    let output = run(
        server
            .command()
            .args(["receive", "--channel", "pz", "--id", "w", "--exec", &exec]),
        T,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("1 file failed and was parked"),
        "{stderr}"
    );
    // The sender finishes, and says which file was parked by whom.
    let sent = wait(sender, T);
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let line = last_line_of_failure(&sent);
    assert!(line.contains("poison (by w: "), "{line}");
    let tries = std::fs::read_to_string(tries).unwrap();
    assert_eq!(
        tries.lines().filter(|l| *l == "poison").count(),
        3,
        "{tries}"
    );
    assert_eq!(tries.lines().filter(|l| *l == "fine").count(), 1, "{tries}");
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", "pz"]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["parked"][0]["file"], "poison");
    assert!(
        status[0]["parked"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with exit status: 3")
    );
}

#[test]
fn purge_refuses_a_channel_in_use_and_deletes_every_key_once_its_processes_are_gone() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", &noise(300_000, 9));
    let mut sender = spawn(
        server
            .command()
            .args([
                "send",
                "--channel",
                "gone",
                "--receivers",
                "1",
                "--chunk-size",
                "16KiB",
            ])
            .arg(work.path().join("f")),
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
fn with_follow_the_sender_picks_up_files_that_appear_later() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "early.log", b"early\n");
    let mut sender = spawn(
        server
            .command()
            .args([
                "send",
                "--channel",
                "fw",
                "--receivers",
                "1",
                "--follow",
                "--settle",
                "200ms",
            ])
            .arg(&source),
    );
    let mut receiver = spawn(
        server
            .command()
            .args([
                "receive",
                "--channel",
                "fw",
                "--id",
                "0",
                "--follow",
                "--out",
            ])
            .arg(&out),
    );
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
    let mut receiver = spawn(server.command().args([
        "receive",
        "--channel",
        "in",
        "--id",
        "0",
        "--follow",
        "--exec",
        &format!("cat >> {}", journal.display()),
    ]));
    for text in ["first\n", "second\n"] {
        let mut sender = spawn(
            server
                .command()
                .args([
                    "send",
                    "--channel",
                    "in",
                    "--receivers",
                    "1",
                    "--name",
                    "piped.log",
                    "-",
                ])
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

#[test]
fn a_resumed_upload_keeps_its_chunk_size_even_when_the_option_changed() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "big", &noise(1 << 20, 3));
    let send = |chunk: &str| {
        let mut command = server.command();
        command
            .args([
                "send",
                "--channel",
                "cs",
                "--receivers",
                "1",
                "--limit",
                "256KiB",
                "--chunk-size",
                chunk,
            ])
            .arg(&source);
        command
    };
    let mut first = spawn(&mut send("64KiB"));
    wait_for_status(&server, "cs", "a full budget", |s| {
        s["bytes_held"].as_u64() >= Some(192 << 10)
    });
    kill(&mut first);
    let second = spawn(&mut send("100KiB"));
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", "cs", "--id", "0", "--out"])
            .arg(&out),
        T,
    ));
    succeeded(&wait(second, T));
    assert_same_tree(&source, &out);
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
    let receiver = spawn(
        server
            .command()
            .args(["receive", "--channel", "left", "--id", "0", "--out"])
            .arg(work.path().join("out")),
    );
    let send = || {
        run(
            server
                .command()
                .args(["send", "--channel", "left", "--receivers", "1"])
                .arg(&source),
            T,
        )
    };
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

#[test]
fn purging_one_channel_leaves_a_channel_with_a_longer_similar_name_alone() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", &noise(100_000, 4));
    let mut senders = Vec::new();
    for channel in ["a", "a:c:1"] {
        senders.push(spawn(
            server
                .command()
                .args([
                    "send",
                    "--channel",
                    channel,
                    "--receivers",
                    "1",
                    "--chunk-size",
                    "16KiB",
                ])
                .arg(work.path().join("f")),
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

#[test]
fn a_unix_socket_url_works() {
    let server = Server::with(LocalRedisOptions {
        unix_socket: true,
        ..LocalRedisOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", b"over a socket\n");
    let url = format!("unix://{}", server.0.socket_path().display());
    let sender = spawn(
        server
            .command()
            .env("REDIS_URL", &url)
            .args(["send", "--channel", "u", "--receivers", "1"])
            .arg(work.path().join("f")),
    );
    let output = run(
        server.command().env("REDIS_URL", &url).args([
            "receive",
            "--channel",
            "u",
            "--id",
            "0",
            "--stdout",
        ]),
        T,
    );
    succeeded(&output);
    assert_eq!(output.stdout, b"over a socket\n");
    succeeded(&wait(sender, T));
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
            .command()
            .args([
                "send",
                "--channel",
                "oom",
                "--receivers",
                "1",
                "--chunk-size",
                "256KiB",
            ])
            .arg(&source),
    );
    std::thread::sleep(Duration::from_millis(1500));
    for key in 0..filler {
        let _: () = redis::cmd("DEL")
            .arg(format!("other:{key}"))
            .query(&mut con)
            .unwrap();
    }
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", "oom", "--id", "0", "--out"])
            .arg(&out),
        T,
    ));
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
    let send = || {
        let mut command = server.command();
        command
            .args(["send", "--channel", "ev", "--receivers", "1"])
            .arg(&source);
        command
    };
    let line = failed_with_one_line(&run(&mut send(), T));
    assert!(
        line.contains("maxmemory-policy allkeys-lru") && line.contains("--allow-eviction"),
        "{line}"
    );
    let out = work.path().join("out");
    let receive = run(
        server
            .command()
            .args(["receive", "--channel", "ev", "--id", "0", "--out"])
            .arg(&out),
        T,
    );
    let line = failed_with_one_line(&receive);
    assert!(line.contains("allkeys-lru"), "{line}");
    let written = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.keys("*"));
    assert!(written.is_empty(), "refused runs wrote {written:?}");

    let receiver = spawn(
        server
            .command()
            .args([
                "receive",
                "--channel",
                "ev",
                "--id",
                "0",
                "--allow-eviction",
                "--out",
            ])
            .arg(&out),
    );
    succeeded(&run(send().arg("--allow-eviction"), T));
    succeeded(&wait(receiver, T));
    assert_same_tree(&source, &out);
}

#[test]
fn a_source_cut_short_while_it_is_sent_is_abandoned_not_delivered_short() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let path = write(&source, "growing.log", &noise(1 << 20, 3));
    // No receiver yet and a small budget: the sender stalls after a few
    // chunks, and the file is cut while it waits.
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "cut", "--receivers", "1"])
            .args(["--chunk-size", "16KiB", "--limit", "64KiB"])
            .arg(&source),
    );
    // Full: no room for one more chunk (16 KiB and its key).
    wait_for_status(&server, "cut", "the sender to fill the budget", |s| {
        s["bytes_held"].as_u64().unwrap() + 16_384 + KEY_COST > 64 << 10
    });
    std::fs::write(&path, noise(100_000, 4)).unwrap();
    let out = work.path().join("out");
    let receiver = spawn(
        server
            .command()
            .args(["receive", "--channel", "cut", "--id", "0", "--out"])
            .arg(&out),
    );
    let line = failed_with_one_line(&wait(sender, T));
    assert!(
        line.contains("growing.log") && line.contains("size changed"),
        "{line}"
    );
    // Sent again once stable: the receiver gets the file as it is now.
    succeeded(&run(
        server
            .command()
            .args(["send", "--channel", "cut", "--receivers", "1"])
            .args(["--chunk-size", "16KiB", "--limit", "64KiB"])
            .arg(&source),
        T,
    ));
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
                .command()
                .args(["send", "--channel", "cutout", "--receivers", "1"])
                .args(["--chunk-size", "16KiB", "--limit", "64KiB"])
                .arg(&source),
        )
    };
    let sender = send();
    let mut receiver =
        spawn(
            server
                .command()
                .args(["receive", "--channel", "cutout", "--id", "0", "--stdout"]),
        );
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

/// Starts a broadcast of `source` to receiver `0` on channel `channel`.
/// Returns once the channel exists, so a receiver started next has no
/// wait to mention.
fn send_to_one(server: &Server, channel: &str, source: &std::path::Path) -> Running {
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", channel, "--receivers", "1"])
            .arg(source),
    );
    wait_for_status(server, channel, "the first announcement", |s| {
        s["files_announced"].as_u64() >= Some(1)
    });
    sender
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
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", channel, "--id", "0", "--out"])
            .arg(out.path()),
        T,
    ));
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
    let mut receiver =
        spawn(
            server
                .command()
                .args(["receive", "--channel", "pipe", "--id", "0", "--stdout"]),
        );
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
    let output = run(
        server.command().args([
            "receive",
            "--channel",
            "cmd",
            "--id",
            "0",
            "--exec",
            "no-such-command-here",
        ]),
        T,
    );
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
    let output = run(
        server
            .command()
            .args(["receive", "--channel", "dir", "--id", "0", "--out"])
            .arg(&out),
        T,
    );
    let line = failed_with_one_line(&output);
    assert!(line.contains("not-a-dir"), "{line}");
    nothing_lost_after_a_broken_sink(&server, "dir", &source, sender);
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
    let receive = || {
        run(
            server
                .command()
                .args(["receive", "--channel", "poison", "--id", "0", "--out"])
                .arg(&out),
            T,
        )
    };
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
    let received = run(
        server
            .command()
            .args(["receive", "--channel", "links", "--id", "0", "--out"])
            .arg(&out),
        T,
    );
    assert_eq!(received.status.code(), Some(3), "{received:?}");
    let stderr = String::from_utf8_lossy(&received.stderr);
    assert!(stderr.contains("refusing to write through it"), "{stderr}");
    // Nothing was written outside, and the victim is as it was.
    assert_eq!(
        common::tree(&elsewhere).keys().collect::<Vec<_>>(),
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
            .command()
            .args(["send", "--channel", "t", "--receivers", "1"])
            .args(["--chunk-size", "16KiB", "--compress", "none"])
            .arg(&source),
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
    let received = run(
        server
            .command()
            .args(["receive", "--channel", "t", "--id", "0", "--stdout"]),
        T,
    );
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
        let mut command = server.command();
        command
            .args(["send", "--channel", "role", "--receivers", "1"])
            .args(["--chunk-size", "16KiB", "--limit", "256KiB"])
            .arg(&source);
        command
    };
    let sender = spawn(&mut send());
    wait_for_key(&server, "rd:{role}:lease:sender");
    let line = failed_with_one_line(&run(&mut send(), T));
    assert!(
        line.contains("the sender of channel \"role\" is already taken by pid"),
        "{line}"
    );
    let out = work.path().join("out");
    let receive = || {
        let mut command = server.command();
        command
            .args(["receive", "--channel", "role", "--id", "0", "--out"])
            .arg(&out);
        command
    };
    // Busy on its first file until killed.
    let mut first = spawn(
        server
            .command()
            .args(["receive", "--channel", "role", "--id", "0"])
            .args(["--exec", "sleep 30"]),
    );
    wait_for_key(&server, "rd:{role}:lease:r:0");
    let line = failed_with_one_line(&run(&mut receive(), T));
    assert!(
        line.contains(&format!(
            "receiver 0 of channel \"role\" is already taken by pid {}",
            first.id()
        )),
        "{line}"
    );
    // Killed outright: a new process on the same host takes over at once.
    kill(&mut first);
    succeeded(&run(&mut receive(), T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
}

#[test]
fn a_role_held_on_another_host_is_free_once_its_lease_lapses() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "a", b"one file\n");
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "far", "--workers"])
            .arg(&source),
    );
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
    let work_on = || {
        run(
            server
                .command()
                .args(["receive", "--channel", "far", "--id", "w1", "--stdout"]),
            T,
        )
    };
    let line = failed_with_one_line(&work_on());
    assert!(line.contains("pid 4242 on host elsewhere"), "{line}");
    std::thread::sleep(Duration::from_millis(1600));
    let done = work_on();
    succeeded(&done);
    assert_eq!(done.stdout, b"one file\n");
    succeeded(&wait(sender, T));
}

#[test]
fn a_stream_whose_data_left_redis_before_a_restarted_receiver_read_it_is_parked_saying_why() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = noise(1 << 20, 21);
    let input = write(work.path(), "input", &data);
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "st", "--receivers", "2"])
            .args(["--chunk-size", "16KiB", "--limit", "64KiB"])
            .args(["--name", "stream.bin", "-"])
            .stdin(std::fs::File::open(&input).unwrap()),
    );
    let out = work.path().join("out");
    let steady = spawn(
        server
            .command()
            .args(["receive", "--channel", "st", "--id", "0", "--out"])
            .arg(&out),
    );
    // Receiver 1 reads part of the stream, then stalls until killed.
    let mut stalled = spawn(server.command().args([
        "receive",
        "--channel",
        "st",
        "--id",
        "1",
        "--exec",
        "head -c 300000 > /dev/null; sleep 60",
    ]));
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + T;
    while redis::cmd("HGET")
        .arg("rd:{st}:f:1")
        .arg("freed")
        .query::<Option<u64>>(&mut con)
        .unwrap()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no chunk was ever released");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(&mut stalled);
    let again = run(
        server
            .command()
            .args(["receive", "--channel", "st", "--id", "1", "--out"])
            .arg(work.path().join("out1")),
        T,
    );
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    succeeded(&wait(steady, T));
    assert_eq!(std::fs::read(out.join("stream.bin")).unwrap(), data);
    let sent = wait(sender, T);
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let line = last_line_of_failure(&sent);
    assert!(
        line.contains("stream.bin (by 1: ")
            && line.contains("it was read from a stream, which cannot be read again"),
        "{line}"
    );
}

#[test]
fn retry_offers_parked_files_again_and_the_next_sender_uploads_them_from_their_source() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "flaky", &noise(100_000, 5));
    write(&source, "fine", b"good\n");
    let send = || {
        let mut command = server.command();
        command
            .args(["send", "--channel", "rt", "--receivers", "a,b"])
            .args(["--chunk-size", "16KiB"])
            .arg(&source);
        command
    };
    let receive = |id: &str, exec: &str| {
        let mut command = server.command();
        command.args(["receive", "--channel", "rt", "--id", id, "--exec", exec]);
        command
    };
    let (out_a, out_b) = (work.path().join("a"), work.path().join("b"));
    std::fs::create_dir_all(&out_a).unwrap();
    std::fs::create_dir_all(&out_b).unwrap();
    let keep = |dir: &std::path::Path| format!("cat > '{}'/\"$REDISTRIBUTE_NAME\"", dir.display());
    // Receiver b's service is down for "flaky": parked after three tries.
    let failing = format!(
        "if [ \"$REDISTRIBUTE_NAME\" = flaky ]; then exit 1; fi; {}",
        keep(&out_b)
    );
    let sender = spawn(&mut send());
    succeeded(&run(&mut receive("a", &keep(&out_a)), T));
    assert_eq!(run(&mut receive("b", &failing), T).status.code(), Some(3));
    assert_eq!(wait(sender, T).status.code(), Some(3));
    assert!(!out_b.join("flaky").exists());

    let unknown = run(
        server
            .command()
            .args(["retry", "--channel", "rt", "nosuch"]),
        T,
    );
    assert!(
        last_line_of_failure(&unknown).contains("not parked in channel \"rt\": nosuch"),
        "{unknown:?}"
    );
    let retried = succeeded(&run(
        server.command().args(["retry", "--channel", "rt", "flaky"]),
        T,
    ));
    assert!(
        retried.contains("flaky: offered again to b") && retried.contains("no sender is running"),
        "{retried}"
    );
    // The same send again: nothing new, but "flaky" uploaded again for b only.
    let sender = spawn(&mut send());
    let received = succeeded(&run(&mut receive("b", &keep(&out_b)), T));
    assert!(received.contains("received flaky"), "{received}");
    let sent = succeeded(&wait(sender, T));
    assert!(
        sent.contains("flaky: uploading it again for receivers b"),
        "{sent}"
    );
    assert_same_tree(&source, &out_a);
    assert_same_tree(&source, &out_b);
    wait_for_status(&server, "rt", "nothing parked, held or behind", |s| {
        s["parked"].as_array().is_some_and(Vec::is_empty)
            && s["bytes_held"] == 0
            && s["receivers"]
                .as_array()
                .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["files_behind"] == 0))
    });
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
    let receive = run(
        server
            .command()
            .args(["receive", "--channel", "old", "--id", "0", "--stdout"]),
        T,
    );
    let send = run(
        server
            .command()
            .args(["send", "--channel", "old", "--receivers", "1"])
            .arg(&file),
        T,
    );
    for output in [receive, send] {
        let line = failed_with_one_line(&output);
        assert!(
            line.contains("channel old was made by another version")
                && line.contains("schema 4, this one speaks 5"),
            "{line}"
        );
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definition() {
    let server = Server::start();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = run(server.command().args(["completions", shell]), T);
        succeeded(&output);
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["redistribute", "aggregate", "channel"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let output = run(server.command().arg("man"), T);
    succeeded(&output);
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(
        page.contains(".TH redistribute 1") && page.contains("aggregate"),
        "{page}"
    );
}

/// Polls a file a process writes its stderr to until it holds `text`.
fn wait_for_text(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let written = std::fs::read_to_string(path).unwrap_or_default();
        if written.contains(text) {
            return written;
        }
        assert!(
            Instant::now() < deadline,
            "never said {text:?}; said:\n{written}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn waits_say_what_they_wait_for_and_who_is_behind() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = noise(6 << 20, 9);
    let file = write(work.path(), "big.bin", &data);
    let sender_said = work.path().join("sender.err");
    let mut sender = server
        .command()
        .args([
            "send",
            "--channel",
            "logs",
            "--receivers",
            "a,b",
            "--limit",
            "2MiB",
        ])
        .args(["--compress", "none"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&sender_said).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(
        &sender_said,
        "big.bin: the channel holds its limit (2.0 MiB); waiting for a (never connected), b (never connected)",
    );

    let lost_said = work.path().join("lost.err");
    let mut lost = server
        .command()
        .args(["receive", "--channel", "lgos", "--id", "a", "--stdout"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&lost_said).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(
        &lost_said,
        "channel lgos does not exist yet; waiting for a sender (existing channels: logs)",
    );
    kill(&mut lost);

    let receivers: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| {
            spawn(
                server
                    .command()
                    .args(["receive", "--channel", "logs", "--id", id, "--out"])
                    .arg(work.path().join(id)),
            )
        })
        .collect();
    for (receiver, id) in receivers.into_iter().zip(["a", "b"]) {
        succeeded(&wait(receiver, T));
        let got = std::fs::read(work.path().join(id).join("big.bin")).unwrap();
        assert!(got == data, "receiver {id} got other bytes");
    }
    let status = sender.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&sender_said).unwrap()
    );
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
            .command()
            .args([
                "send",
                "--channel",
                "term",
                "--receivers",
                "1",
                "--name",
                "s.log",
                "-",
            ])
            .stdin(Stdio::piped()),
    );
    let mut input = sender.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, &first).unwrap();
    let receiver = spawn(
        server
            .command()
            .args(["receive", "--channel", "term", "--id", "0", "--out"])
            .arg(&out),
    );
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
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", "term", "--id", "0", "--out"])
            .arg(&out),
        T,
    ));
    succeeded(&wait(sender, T));
    assert_eq!(
        std::fs::read(out.join("s.log")).unwrap(),
        [first, rest].concat()
    );
}

#[test]
fn color_follows_the_color_option_and_no_color() {
    let server = Server::start();
    let colored = |extra: &[&str], no_color: bool| {
        let mut command = server.command();
        command.args(["purge", "--channel", "none"]).args(extra);
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let stderr = succeeded(&run(&mut command, T));
        assert!(stderr.contains("purged channel none"), "{stderr}");
        stderr.contains('\u{1b}')
    };
    // Not a terminal: plain unless asked for.
    assert!(!colored(&[], false));
    assert!(colored(&["--color", "always"], false));
    assert!(
        colored(&["--color=always"], true),
        "an explicit choice beats NO_COLOR"
    );
    assert!(!colored(&["--color", "never"], false));
    let usage = run(server.command().args(["--color", "always", "--bogus"]), T);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains('\u{1b}'));
}

#[test]
fn status_tells_running_stopped_and_never_connected_apart_and_hides_finished_channels() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let small = write(work.path(), "small/a.log", b"done soon");
    let old = spawn(
        server
            .command()
            .args(["send", "--channel", "old", "--receivers", "1"])
            .arg(&small),
    );
    succeeded(&run(
        server
            .command()
            .args(["receive", "--channel", "old", "--id", "0", "--stdout"]),
        T,
    ));
    succeeded(&wait(old, T));

    let big = write(work.path(), "big.bin", &noise(4 << 20, 3));
    let mut sender = spawn(
        server
            .command()
            .args([
                "send",
                "--channel",
                "busy",
                "--receivers",
                "a,b",
                "--limit",
                "1MiB",
            ])
            .args(["--compress", "none"])
            .arg(&big),
    );
    let mut a =
        spawn(
            server
                .command()
                .args(["receive", "--channel", "busy", "--id", "a", "--stdout"]),
        );
    wait_for_status(&server, "busy", "receiver a reading", |s| {
        let a = &s["receivers"][0];
        a["process"].is_string()
            && s["sender"].is_string()
            && a["current_file"] == "big.bin"
            && a["bytes_into_current"].as_u64() > Some(0)
            && a["last_seen_ms"].as_u64() <= s["time_ms"].as_u64()
    });
    kill(&mut a);
    wait_for_status(&server, "busy", "receiver a stopped", |s| {
        let receivers = &s["receivers"];
        receivers[0]["id"] == "a"
            && receivers[0]["joined"] == true
            && receivers[0]["process"].is_null()
            && receivers[1]["id"] == "b"
            && receivers[1]["joined"] == false
    });
    // The budget is full of what b must read: the sender waits for room.
    wait_for_status(&server, "busy", "the sender waiting for room", |s| {
        s["sender_waiting_since_ms"].as_u64() <= s["time_ms"].as_u64()
            && s["sender_waiting_since_ms"].is_u64()
    });
    let text = run(server.command().args(["status", "--channel", "busy"]), T);
    succeeded(&text);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sender running: pid"), "{text}");
    assert!(
        text.contains("waiting for room for") && text.contains("b (never connected)"),
        "{text}"
    );
    assert!(
        text.contains("reading big.bin (") && text.contains("s ago"),
        "{text}"
    );
    for (id, state) in [("a", "stopped"), ("b", "never connected")] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(id) && l.contains(state)),
            "{id} not {state}: {text}"
        );
    }

    let all = run(server.command().args(["status", "--json"]), T);
    succeeded(&all);
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let active = run(server.command().args(["status", "--json", "--active"]), T);
    succeeded(&active);
    let active: serde_json::Value = serde_json::from_slice(&active.stdout).unwrap();
    let names: Vec<&str> = active
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["channel"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["busy"]);

    let watching = spawn(
        server
            .command()
            .args(["status", "--watch", "--channel", "busy"]),
    );
    std::thread::sleep(Duration::from_millis(2500));
    terminate(&watching);
    let watched = wait(watching, T);
    succeeded(&watched);
    let shown = String::from_utf8_lossy(&watched.stdout);
    assert!(shown.matches("channel busy:").count() >= 2, "{shown}");
    // Killed -9 while it waits: its mark stays in Redis, yet status shows
    // neither a sender nor a wait.
    kill(&mut sender);
    wait_for_status(&server, "busy", "the killed sender gone", |s| {
        s["sender"].is_null() && s["sender_waiting_since_ms"].is_null()
    });
}

#[test]
fn log_json_writes_one_json_object_a_line_with_a_timestamp_errors_included() {
    let server = Server::start();
    let events = |output: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    };
    let purged = run(
        server
            .command()
            .args(["--log-json", "purge", "--channel", "x"]),
        T,
    );
    succeeded(&purged);
    let purged = events(&purged);
    assert_eq!(purged.len(), 1, "{purged:?}");
    assert_eq!(purged[0]["level"], "INFO");
    assert!(
        purged[0]["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
    assert!(
        purged[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("purged channel x")
    );

    let missing = run(
        server
            .command()
            .args(["status", "--channel", "nope", "--log-json"]),
        T,
    );
    assert_eq!(missing.status.code(), Some(2));
    let missing = events(&missing);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0]["level"], "ERROR");
    assert!(
        missing[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("no channel named")
    );
}

/// The samples of a Prometheus text exposition, by metric name.
fn scrape(address: &str) -> BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn metrics_are_served_in_prometheus_text_format_and_count_what_was_received() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let sizes = [100_000, 1, 2_500_000];
    for (i, size) in sizes.iter().enumerate() {
        write(&source, &format!("f{i}"), &noise(*size, i as u64));
    }
    let address = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let receiver = spawn(
        server
            .command()
            .args([
                "receive",
                "--channel",
                "m",
                "--id",
                "0",
                "--follow",
                "--out",
            ])
            .arg(work.path().join("out"))
            .args(["--metrics", &address]),
    );
    succeeded(&run(
        server
            .command()
            .args(["send", "--channel", "m", "--receivers", "1"])
            .arg(&source),
        T,
    ));
    let deadline = Instant::now() + T;
    let samples = loop {
        let samples = scrape(&address);
        if samples.get("redistribute_files_received_total") == Some(&3.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "never counted 3 files: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let total: usize = sizes.iter().sum();
    assert_eq!(samples["redistribute_bytes_received_total"], total as f64);
    assert_eq!(samples.get("redistribute_files_parked_total"), None);
    terminate(&receiver);
    succeeded(&wait(receiver, T));
    assert_same_tree(&source, &work.path().join("out"));
}

#[test]
fn tls_with_a_private_ca_and_client_certificates_works_and_its_errors_say_what_to_check() {
    let work = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = common::certificates(work.path());
    let server = Server::with(LocalRedisOptions {
        tls: Some(redistribute_transfer::redis::LocalTls {
            cert: server_cert,
            key: server_key,
            ca: ca.clone(),
        }),
        ..LocalRedisOptions::default()
    });
    let source = work.path().join("in");
    for i in 0..3 {
        write(&source, &format!("f{i}"), &noise(200_000 * i + 1, i as u64));
    }
    let tls = |command: &mut Command| {
        common::with_tls(command, &ca, &client_cert, &client_key);
    };
    let mut send = server.command();
    tls(&mut send);
    let sender = spawn(
        send.args(["send", "--channel", "t", "--receivers", "1"])
            .arg(&source),
    );
    // The same files through environment variables instead of options.
    let out = work.path().join("out");
    let mut receive = server.command();
    receive
        .env("REDIS_TLS_CA_CERT", &ca)
        .env("REDIS_TLS_CERT", &client_cert)
        .env("REDIS_TLS_KEY", &client_key)
        .args(["receive", "--channel", "t", "--id", "0", "--out"])
        .arg(&out);
    succeeded(&run(&mut receive, T));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);

    // Without the CA the server is a stranger; without a client
    // certificate the server hangs up.
    let line = failed_with_one_line(&run(server.command().arg("status"), T));
    assert!(
        line.contains("TLS") && line.contains("--tls-ca-cert"),
        "{line}"
    );
    let mut anonymous = server.command();
    anonymous.arg("--tls-ca-cert").arg(&ca).arg("status");
    let line = failed_with_one_line(&run(&mut anonymous, T));
    assert!(line.contains("--tls-cert"), "{line}");
}

#[test]
fn on_a_terminal_log_lines_are_written_around_the_progress_bar() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..4 {
        write(&source, &format!("f{i}"), &noise(3 << 20, i));
    }
    let receiver = spawn(
        server
            .command()
            .args(["receive", "--channel", "tty", "--id", "0", "--out"])
            .arg(work.path().join("out")),
    );
    let typescript = work.path().join("typescript");
    let mut send = server.command();
    send.args([
        "send",
        "--channel",
        "tty",
        "--receivers",
        "1",
        "--limit",
        "2MiB",
    ])
    .args(["--compress", "none", "--chunk-size", "256KiB"])
    .arg(&source);
    succeeded(&run(&mut on_a_terminal(&send, &typescript), T));
    succeeded(&wait(receiver, T));
    let screen = std::fs::read_to_string(&typescript).unwrap();
    assert!(screen.contains("sending"), "no bar was drawn: {screen:?}");
    let lines: Vec<&str> = screen
        .match_indices("INFO")
        .map(|(at, _)| &screen[..at])
        .collect();
    assert!(lines.len() >= 5, "{screen:?}");
    for before in lines {
        // On the terminal line the log line starts on, no bar is left:
        // the bar was wiped first (a carriage return, then clearing).
        let line_start = before.rfind(['\n', '\r']).map_or(0, |at| at + 1);
        assert!(
            !before[line_start..].contains("sending"),
            "a log line drawn over the bar: {:?}",
            &before[before.len().saturating_sub(160)..]
        );
    }
}

#[test]
fn a_receivers_progress_moves_while_a_file_streams_in() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (first, rest) = (noise(300_000, 21), noise(200_000, 22));
    let mut sender = spawn(
        server
            .command()
            .args([
                "send",
                "--channel",
                "sp",
                "--receivers",
                "1",
                "--name",
                "s.log",
                "-",
            ])
            .stdin(Stdio::piped()),
    );
    let mut input = sender.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, &first).unwrap();
    let typescript = work.path().join("typescript");
    let out = work.path().join("out");
    let mut receive = server.command();
    receive
        .args(["receive", "--channel", "sp", "--id", "0", "--out"])
        .arg(&out);
    let receiver = spawn(&mut on_a_terminal(&receive, &typescript));
    // The first part arrives and shows in the bar before the file ends.
    wait_for_text(&typescript, "292.97 KiB");
    std::io::Write::write_all(&mut input, &rest).unwrap();
    drop(input);
    succeeded(&wait(sender, T));
    succeeded(&wait(receiver, T));
    let screen = std::fs::read_to_string(&typescript).unwrap();
    let done = screen
        .find("received s.log")
        .expect("the file was received");
    assert!(screen[..done].contains("292.97 KiB"), "{screen:?}");
    assert_eq!(
        std::fs::read(out.join("s.log")).unwrap(),
        [first, rest].concat()
    );
}

/// Sends SIGTERM to a process a test started.
fn terminate(process: &Running) {
    let pid = process.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
}

/// `command` run on a terminal: `script` (util-linux, on every Debian)
/// gives it one and records what it drew in `typescript`.
fn on_a_terminal(command: &Command, typescript: &std::path::Path) -> Command {
    let words: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| format!("'{}'", word.to_string_lossy()))
        .collect();
    let mut script = Command::new("script");
    script.args(["-qfec", &words.join(" ")]).arg(typescript);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    script
}

#[test]
fn report_last_counts_days_back_from_today_or_from_either_end() {
    let server = Server::start();
    let today = jiff::ZonedDateTime::now().date();
    let day = |back: i64| {
        today
            .checked_sub(jiff::Span::new().days(back))
            .unwrap()
            .to_string()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut con = server.connection().await;
        for (key, member) in [
            ("daily:country:2024-02-29", "DE"),
            ("daily:country:2024-03-01", "FR"),
            ("daily:country:2024-03-02", "JP"),
            ("daily:country:2024-03-03", "US"),
            (&*format!("daily:country:{}", day(0)), "AU"),
            (&*format!("daily:country:{}", day(6)), "NZ"),
            (&*format!("daily:country:{}", day(7)), "CA"),
        ] {
            let _: () = redis::cmd("ZADD")
                .arg(key)
                .arg(1)
                .arg(member)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    });
    let days = |args: &[&str]| -> Vec<String> {
        let output = run(server.command().args(["report", "--json"]).args(args), T);
        succeeded(&output);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|day| day["day"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        days(&["--last", "2d", "--to", "2024-03-02"]),
        ["2024-03-01", "2024-03-02"]
    );
    assert_eq!(
        days(&["--from", "2024-02-29", "--last", "2"]),
        ["2024-02-29", "2024-03-01"]
    );
    let last_week = days(&["--last", "1w"]);
    // "Today" is read by the test and by the tool: across midnight they differ.
    if jiff::ZonedDateTime::now().date() == today {
        assert_eq!(last_week, [day(6), day(0)]);
    }
}

#[test]
fn status_shows_the_channels_rates_in_and_out_and_how_long_is_left() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    // 16 MiB of 8 KiB lines through a 1 MiB budget, read by a consumer that
    // naps between lines: a steady trickle for several seconds.
    let line = [vec![b'x'; 8191], vec![b'\n']].concat();
    let logs = write(work.path(), "slow.log", &line.repeat(2048));
    let mut sender = spawn(
        server
            .command()
            .args(["send", "--channel", "slow", "--receivers", "a"])
            .args(["--limit", "1MiB", "--compress", "none"])
            .arg(&logs),
    );
    let mut receiver = spawn(server.command().args([
        "receive",
        "--channel",
        "slow",
        "--id",
        "a",
        "--exec",
        "while IFS= read -r line; do sleep 0.004; done",
    ]));
    wait_for_status(&server, "slow", "rates in and out and a time left", |s| {
        s["rate_in"].as_u64() > Some(0)
            && s["rate_out"].as_u64() > Some(0)
            && s["eta_seconds"].is_u64()
    });
    let text = run(server.command().args(["status", "--channel", "slow"]), T);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("rate in ") && text.contains(" left for what was uploaded"),
        "{text}"
    );
    // The receiver dies: nothing moves out, and no time left is promised.
    kill(&mut receiver);
    wait_for_status(&server, "slow", "no rate out once the receiver died", |s| {
        s["rate_out"] == 0 && s["eta_seconds"].is_null()
    });
    kill(&mut sender);
    wait_for_status(&server, "slow", "no rate in once the sender died", |s| {
        s["rate_in"] == 0
    });
}

#[test]
fn a_receiver_shows_a_bar_per_file_with_its_size_when_the_sender_knew_it() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let line = [vec![b'y'; 8191], vec![b'\n']].concat();
    let logs = write(
        work.path(),
        "long-name-of-a-daily-access.log",
        &line.repeat(512),
    );
    let sender = spawn(
        server
            .command()
            .args(["send", "--channel", "bars", "--receivers", "1"])
            .args(["--limit", "1MiB", "--compress", "none"])
            .arg(&logs),
    );
    let typescript = work.path().join("typescript");
    let mut receive = server.command();
    receive.args([
        "receive",
        "--channel",
        "bars",
        "--id",
        "0",
        "--exec",
        "while IFS= read -r line; do sleep 0.004; done",
    ]);
    let receiver = spawn(&mut on_a_terminal(&receive, &typescript));
    // The file's own bar, named in a shortened form, counts towards its size.
    wait_for_text(&typescript, "/4.00 MiB");
    succeeded(&wait(sender, T));
    succeeded(&wait(receiver, T));
    let screen = std::fs::read_to_string(&typescript).unwrap();
    let done = screen
        .find("received long-name")
        .expect("the file was received");
    let drawn = &screen[..done];
    assert!(drawn.contains("long-name-of…-access.log"), "{screen:?}");
    assert!(drawn.contains("eta "), "{screen:?}");
    assert!(drawn.contains("receiving"), "{screen:?}");
}
