//! The ACL users `docs/operations.md` documents, created on a real
//! redis-server from the documentation's own text, run every command:
//! the documented lists cannot fall behind the commands the tool sends.

mod common;

use std::time::Duration;

use common::{Server, binary, run, spawn, succeeded, wait, write};

const T: Duration = Duration::from_secs(90);

/// The `ACL SETUSER` block that follows `marker` in operations.md, as
/// the arguments after `ACL`.
fn documented_acl(marker: &str) -> Vec<String> {
    let docs = include_str!("../docs/operations.md");
    let after = &docs[docs
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in the docs"))..];
    let block = after.split("```").nth(1).expect("a code block follows");
    let words: Vec<String> = block.split_whitespace().map(str::to_owned).collect();
    assert_eq!(words[..2], ["ACL", "SETUSER"], "{block}");
    words[1..].to_vec()
}

/// Creates the user the docs describe after `marker` (with what the docs
/// say newer servers need), and returns a URL that logs in as it.
fn documented_user(server: &Server, marker: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut con = server.connection().await;
        let mut acl = documented_acl(marker);
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut con)
            .await
            .unwrap();
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .to_owned();
        let numbers: Vec<u32> = version.split('.').filter_map(|n| n.parse().ok()).collect();
        if numbers[..2] >= [7, 2][..] {
            acl.push("+client|setinfo".into());
        }
        let _: () = redis::cmd("ACL")
            .arg(&acl)
            .query_async(&mut con)
            .await
            .unwrap();
    });
    server
        .url()
        .replace("redis://", "redis://redistribute:s3cret@")
}

#[test]
fn the_documented_users_can_run_every_command() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    // The transfer user: send, receive (a broadcast and a work queue with
    // a failure), status, purge.
    let url = documented_user(&server, "A user that can run everything");
    let source = work.path().join("in");
    for i in 0..3 {
        write(
            &source,
            &format!("f{i}.log"),
            common::log_text(300_000, i).as_slice(),
        );
    }
    let sender = spawn(
        binary(&url)
            .args(["send", "--channel", "acl", "--receivers", "1"])
            .args(["--limit", "1MiB", "--chunk-size", "64KiB"])
            .arg(&source),
    );
    succeeded(&run(
        binary(&url)
            .args(["receive", "--channel", "acl", "--id", "0", "--out"])
            .arg(work.path().join("out")),
        T,
    ));
    succeeded(&wait(sender, T));
    common::assert_same_tree(&source, &work.path().join("out"));
    let sender = spawn(
        binary(&url)
            .args(["send", "--channel", "jobs", "--workers"])
            .arg(&source),
    );
    // The first attempt at each file fails: the requeue runs too.
    let marks = work.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let command = format!(
        "cat >/dev/null; m='{}'/\"$REDISTRIBUTE_NAME\"; [ -e \"$m\" ] || {{ touch \"$m\"; exit 1; }}",
        marks.display()
    );
    succeeded(&run(
        binary(&url).args([
            "receive",
            "--channel",
            "jobs",
            "--id",
            "w",
            "--exec",
            &command,
        ]),
        T,
    ));
    succeeded(&wait(sender, T));
    for args in [
        &["status"][..],
        &["status", "--json", "--channel", "jobs"],
        &["purge", "--channel", "acl"],
    ] {
        succeeded(&run(binary(&url).args(args), T));
    }

    // The job's user: a table imported, logs counted, reports read.
    let url = documented_user(&server, "So the user of [ACL permissions]");
    let table = write(
        work.path(),
        "table.csv",
        b"1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.255.255.255,FR\n",
    );
    succeeded(&run(binary(&url).args(["geo", "import"]).arg(&table), T));
    let logs = work.path().join("logs");
    write(
        &logs,
        "a.log",
        b"1.0.0.7 2026-11-01 x\n2.3.4.5 2026-11-02 y\n",
    );
    let sender = spawn(
        binary(&url)
            .args(["send", "--channel", "weblogs", "--workers"])
            .arg(&logs),
    );
    succeeded(&run(
        binary(&url).args(["aggregate", "--channel", "weblogs", "--id", "w"]),
        T,
    ));
    succeeded(&wait(sender, T));
    for args in [
        &[
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02",
            "--json",
        ][..],
        &["geo", "lookup", "1.0.0.7"],
    ] {
        let output = run(binary(&url).args(args), T);
        succeeded(&output);
        assert!(!output.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(server.daily_counts("country").values().sum::<f64>(), 2.0);
}
