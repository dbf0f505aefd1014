//! The ACL users `docs/operations.md` documents, created on a real
//! redis-server from the documentation's own text, run every command:
//! the documented lists cannot fall behind the commands the tool sends.

mod common;

use std::time::Duration;

use common::{
    AggregateCommand, Cluster, ReceiveCommand, SendCommand, Server, binary, failed_with_one_line,
    run, spawn, succeeded, wait, write,
};

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

/// Creates the user the docs describe after each of `markers` on every
/// node of `nodes` (an ACL is per node, also in a cluster), with what the
/// docs say newer servers need, and returns `url` logging in as it.
fn documented_user(nodes: &[String], url: &str, markers: &[&str]) -> String {
    for node in nodes {
        let mut con = redis::Client::open(node.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .to_owned();
        let numbers: Vec<u32> = version.split('.').filter_map(|n| n.parse().ok()).collect();
        for marker in markers {
            let mut acl = documented_acl(marker);
            if numbers[..2] >= [7, 2][..] {
                acl.push("+client|setinfo".into());
            }
            let _: () = redis::cmd("ACL").arg(&acl).query(&mut con).unwrap();
        }
    }
    url.replace("redis://", "redis://redistribute:s3cret@")
}

/// The documented transfer user: send, receive (a broadcast and a work
/// queue with a failure), status, purge.
fn the_transfer_user_runs_everything(url: &str, work: &std::path::Path) {
    let source = work.join("in");
    for i in 0..3 {
        write(
            &source,
            &format!("f{i}.log"),
            common::log_text(300_000, i).as_slice(),
        );
    }
    let sender = spawn(
        SendCommand::new(binary(url), "acl")
            .receivers(1)
            .limit("1MiB")
            .chunk_size("64KiB")
            .path(&source),
    );
    succeeded(&run(
        ReceiveCommand::new(binary(url), "acl", 0).out(work.join("out")),
        T,
    ));
    succeeded(&wait(sender, T));
    common::assert_same_tree(&source, &work.join("out"));
    let sender = spawn(
        SendCommand::new(binary(url), "jobs")
            .workers()
            .path(&source),
    );
    // The first attempt at each file fails: the requeue runs too.
    let marks = work.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let command = format!(
        "cat >/dev/null; m='{}'/\"$REDISTRIBUTE_NAME\"; [ -e \"$m\" ] || {{ touch \"$m\"; exit 1; }}",
        marks.display()
    );
    succeeded(&run(
        ReceiveCommand::new(binary(url), "jobs", "w").exec(&command),
        T,
    ));
    succeeded(&wait(sender, T));
    for args in [
        &["status"][..],
        &["status", "--json", "--channel", "jobs"],
        &["purge", "--channel", "acl"],
    ] {
        succeeded(&run(binary(url).args(args), T));
    }
}

/// The job's documented user: a table imported, logs counted, reports read.
fn the_job_user_runs_everything(url: &str, work: &std::path::Path) {
    let table = write(
        work,
        "table.csv",
        b"1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.255.255.255,FR\n",
    );
    succeeded(&run(binary(url).args(["geo", "import"]).arg(&table), T));
    let logs = work.join("logs");
    write(
        &logs,
        "a.log",
        b"1.0.0.7 2026-11-01 x\n2.3.4.5 2026-11-02 y\n",
    );
    let sender = spawn(
        SendCommand::new(binary(url), "weblogs")
            .workers()
            .path(&logs),
    );
    succeeded(&run(
        AggregateCommand::new(binary(url), "weblogs", "w").args(["--keep", "400d"]),
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
        let output = run(binary(url).args(args), T);
        succeeded(&output);
        assert!(!output.stdout.is_empty(), "{args:?}");
    }
}

const TRANSFER_USER: &str = "A user that can run everything";
const JOB_USER: &str = "So the user of [ACL permissions]";
const CLUSTER_COMMANDS: &str = "the cluster's commands too";

#[test]
fn the_documented_users_can_run_every_command() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let nodes = [server.url()];
    let url = documented_user(&nodes, &server.url(), &[TRANSFER_USER]);
    the_transfer_user_runs_everything(&url, work.path());
    let url = documented_user(&nodes, &server.url(), &[JOB_USER]);
    the_job_user_runs_everything(&url, work.path());
    assert_eq!(server.daily_counts("country").values().sum::<f64>(), 2.0);
}

#[test]
fn the_documented_users_can_run_every_command_on_a_cluster() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let nodes = cluster.urls();
    let url = documented_user(&nodes, &cluster.url(), &[TRANSFER_USER, CLUSTER_COMMANDS]);
    the_transfer_user_runs_everything(&url, work.path());
    let url = documented_user(&nodes, &cluster.url(), &[JOB_USER, CLUSTER_COMMANDS]);
    the_job_user_runs_everything(&url, work.path());
}

#[test]
fn a_cluster_user_without_the_cluster_commands_is_told_which_command_it_lacks() {
    let cluster = Cluster::start();
    let url = documented_user(&cluster.urls(), &cluster.url(), &[TRANSFER_USER]);
    let line = failed_with_one_line(&run(binary(&url).arg("status"), T));
    eprintln!("{line}");
    assert!(
        line.contains("does not let this user run a command it needs")
            && line.contains("cluster|")
            && !line.contains("credentials"),
        "{line}"
    );
}
