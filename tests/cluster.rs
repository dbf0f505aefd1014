//! The same commands on a real Redis Cluster (three masters started by the
//! harness on free ports): chunks spread over the masters, control keys on
//! the channel's own slot, scans over every master.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use redistribute_transfer::native::sender::raw_chunk_capacity;

use common::{
    AggregateCommand, Cluster, ReceiveCommand, Running, SendCommand, assert_same_tree,
    failed_with_one_line, noise, run, spawn, succeeded, wait, write,
};

const T: Duration = Duration::from_secs(90);

/// Broadcast receivers `0` and `1` of `channel`, writing to `dir/out0` and
/// `dir/out1`.
fn broadcast_receivers(cluster: &Cluster, channel: &str, dir: &std::path::Path) -> Vec<Running> {
    (0..2)
        .map(|i| spawn(cluster.receive(channel, i).out(dir.join(format!("out{i}")))))
        .collect()
}

/// `count` files `fNN.bin` of `smallest` bytes and more (up to `spread` more).
fn write_files(dir: &std::path::Path, count: u64, smallest: usize, spread: usize) {
    for i in 0..count {
        let size = smallest + (i as usize * 7919) % spread;
        write(dir, &format!("f{i:02}.bin"), &noise(size, i));
    }
}

/// Broadcasts `source` to receivers `0` and `1` of `channel` in 16 KiB
/// chunks under `limit`.
fn send_broadcast(
    cluster: &Cluster,
    channel: &str,
    source: &std::path::Path,
    limit: &str,
) -> Running {
    spawn(
        cluster
            .send(channel)
            .receivers(2)
            .chunk_size("16KiB")
            .limit(limit)
            .path(source),
    )
}
/// `status --json` of one channel (`null` while it does not exist).
fn channel_status(cluster: &Cluster, channel: &str) -> serde_json::Value {
    let output = run(
        cluster
            .command()
            .args(["status", "--json", "--channel", channel]),
        T,
    );
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

#[test]
fn a_broadcast_and_a_work_queue_on_a_cluster_deliver_every_file_with_chunks_on_every_master() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "big.bin", &noise(3 << 20, 1));
    for i in 0..10u64 {
        write(
            &source,
            &format!("small{i}.bin"),
            &noise(50_000 + i as usize * 1000, i),
        );
    }
    // A broadcast to two receivers, under a budget of a third of the data.
    let receivers = broadcast_receivers(&cluster, "logs", work.path());
    let sender = spawn(
        cluster
            .send("logs")
            .receivers(2)
            .chunk_size("64KiB")
            .limit("1MiB")
            .path(&source),
    );
    // While it runs, chunks live on every master.
    let deadline = std::time::Instant::now() + T;
    let masters: BTreeSet<u16> = loop {
        let holding: BTreeSet<u16> = cluster
            .keys("rd:c:4:logs:*")
            .into_iter()
            .map(|(port, _)| port)
            .collect();
        if holding.len() == 3 || std::time::Instant::now() > deadline {
            break holding;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    succeeded(&wait(sender, T));
    for receiver in receivers {
        succeeded(&wait(receiver, T));
    }
    for i in 0..2 {
        assert_same_tree(&source, &work.path().join(format!("out{i}")));
    }
    assert_eq!(masters.len(), 3, "chunks were seen on {masters:?} only");
    assert!(
        cluster.keys("rd:c:4:logs:*").is_empty(),
        "chunks left behind"
    );

    // A work queue of two workers on another channel.
    let out = work.path().join("queue");
    let workers: Vec<_> = (0..2)
        .map(|i| spawn(cluster.receive("jobs", format!("w{i}")).out(&out)))
        .collect();
    succeeded(&run(
        cluster
            .send("jobs")
            .workers()
            .chunk_size("64KiB")
            .path(&source),
        T,
    ));
    let mut received = 0;
    for worker in workers {
        received += succeeded(&wait(worker, T)).matches("received ").count();
    }
    assert_eq!(received, 11, "each file once");
    assert_same_tree(&source, &out);
}

#[test]
fn status_and_purge_cover_every_master_and_classic_is_refused_in_one_line() {
    let mut cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "a.bin", &noise(2 << 20, 2));
    // No receiver: the data stays, spread over the masters.
    let mut sender = spawn(
        cluster
            .send("parked")
            .receivers(1)
            .chunk_size("64KiB")
            .path(&source),
    );
    let deadline = std::time::Instant::now() + T;
    loop {
        let status = run(cluster.command().args(["status", "--json"]), T);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        if status[0]["channel"] == "parked" && status[0]["bytes_sent"] == 2 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never showed the upload: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sender.kill().unwrap();
    sender.wait().unwrap();
    // status tells how the data spreads over the masters.
    let status = channel_status(&cluster, "parked");
    let masters = status[0]["bytes_per_master"].as_array().unwrap();
    let bytes: Vec<u64> = masters
        .iter()
        .map(|m| m["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(bytes.len(), 3, "{status}");
    assert!(bytes.iter().all(|&b| b > 0), "{status}");
    // Chunks hold the data and their block headers.
    assert_eq!(
        bytes.iter().sum::<u64>(),
        status[0]["bytes_stored"].as_u64().unwrap(),
        "{status}"
    );
    let text = succeeded_stdout(&run(
        cluster.command().args(["status", "--channel", "parked"]),
        T,
    ));
    assert!(text.contains("held per master: 127.0.0.1:"), "{text}");
    let keys = cluster.keys("rd:*");
    let nodes: BTreeSet<u16> = keys.iter().map(|(port, _)| *port).collect();
    assert_eq!(nodes.len(), 3, "keys on {nodes:?}");
    succeeded(&run(
        cluster.command().args(["purge", "--channel", "parked"]),
        T,
    ));
    assert_eq!(cluster.keys("rd:*"), vec![], "purge left keys behind");

    let line = failed_with_one_line(&run(
        cluster
            .command()
            .args([
                "send",
                "--protocol",
                "classic",
                "--channel",
                "logs:",
                "--receivers",
                "1",
            ])
            .arg(&source),
        T,
    ));
    assert!(line.contains("Redis Cluster"), "{line}");
    assert!(
        cluster.keys("*").is_empty(),
        "the classic sender wrote something"
    );

    // A database number, which a cluster does not have, is the URL's fault.
    let line = failed_with_one_line(&run(
        common::binary(&format!("{}/1", cluster.url())).arg("status"),
        T,
    ));
    assert!(line.contains("only database 0"), "{line}");

    // A master down without a replica: status says so at once.
    cluster.0.nodes_mut()[2].crash().unwrap();
    std::thread::sleep(Duration::from_secs(3)); // the cluster notices
    let started = std::time::Instant::now();
    let line = failed_with_one_line(&run(
        cluster.command().args(["status", "--channel", "parked"]),
        T,
    ));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}: {line}",
        started.elapsed()
    );
    assert!(
        line.contains("CLUSTERDOWN") || line.contains("ClusterDown"),
        "{line}"
    );
}

/// Book-format logs over a few days and addresses of the small table;
/// returns the visits per (day, country), counted here independently.
fn book_logs(dir: &std::path::Path) -> std::collections::BTreeMap<(String, String), u64> {
    let addresses = ["1.0.0.7", "2.3.4.5", "9.9.9.9", "2001:db8::42"];
    let countries = ["AU", "FR", "unknown", "JP"];
    let mut expected = std::collections::BTreeMap::new();
    for f in 0..8 {
        let mut text = String::new();
        for i in 0..400 {
            let day = format!("2026-11-{:02}", 1 + (f + i) % 5);
            let pick = (f * 3 + i) % 4;
            text.push_str(&format!("{} {day} GET /{i}\n", addresses[pick]));
            *expected
                .entry((day, countries[pick].to_owned()))
                .or_default() += 1;
        }
        write(dir, &format!("log{f}.txt"), text.as_bytes());
    }
    expected
}

#[test]
fn the_job_on_a_cluster_counts_every_visit_once_and_reports_what_one_server_reports() {
    let work = tempfile::tempdir().unwrap();
    let table = write(
        work.path(),
        "table.csv",
        b"1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.255.255.255,FR\n2001:db8::,2001:db8::ffff,JP\n",
    );
    let logs = work.path().join("logs");
    let expected = book_logs(&logs);
    let report = |command: &dyn Fn() -> std::process::Command| {
        succeeded(&run(command().args(["geo", "import"]).arg(&table), T));
        let workers: Vec<_> = ["a", "b"]
            .iter()
            .map(|id| spawn(AggregateCommand::new(command(), "logs", id)))
            .collect();
        succeeded(&run(
            SendCommand::new(command(), "logs").workers().path(&logs),
            T,
        ));
        for worker in workers {
            succeeded(&wait(worker, T));
        }
        let output = run(command().args(["report", "--by", "country", "--json"]), T);
        succeeded(&output);
        output.stdout
    };
    let server = common::Server::start();
    let single = report(&|| server.command());
    let cluster = Cluster::start();
    let clustered = report(&|| cluster.command());
    // Exact: every visit of the input, counted once.
    let report: serde_json::Value = serde_json::from_slice(&clustered).unwrap();
    let mut counted = std::collections::BTreeMap::new();
    for day in report.as_array().unwrap() {
        for row in day["rows"].as_array().unwrap() {
            counted.insert(
                (
                    day["day"].as_str().unwrap().to_owned(),
                    row["member"].as_str().unwrap().to_owned(),
                ),
                row["visits"].as_u64().unwrap(),
            );
        }
    }
    assert_eq!(counted, expected);
    assert_eq!(
        String::from_utf8_lossy(&clustered),
        String::from_utf8_lossy(&single)
    );
    // The days' keys really are spread over the masters.
    let nodes: BTreeSet<u16> = cluster
        .keys("daily:*")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(nodes.len() >= 2, "daily keys on {nodes:?} only");
}

#[test]
fn a_master_killed_mid_transfer_is_replaced_by_its_replica_and_every_file_arrives_once() {
    let mut cluster = Cluster::with(redistribute_transfer::redis::LocalClusterOptions {
        replicas_per_master: 1,
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write_files(&source, 40, 20_000, 200_000);
    let receivers = broadcast_receivers(&cluster, "fo", work.path());
    let mut sender = send_broadcast(&cluster, "fo", &source, "1MiB");
    let deadline = std::time::Instant::now() + T;
    loop {
        let status = channel_status(&cluster, "fo");
        if status[0]["files_finished"].as_u64().is_some_and(|n| n >= 8) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer never started"
        );
        if sender.try_wait().unwrap().is_some() {
            panic!("the sender stopped early: {:?}", wait(sender, T));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The master that holds the channel's control keys: the hardest case.
    let (port, _) = cluster.keys("rd:{fo}:meta")[0];
    let victim = cluster
        .0
        .nodes()
        .iter()
        .position(|n| n.port() == port)
        .unwrap();
    cluster.0.nodes_mut()[victim].crash().unwrap(); // SIGKILL
    for receiver in receivers {
        let stderr = succeeded(&wait(receiver, T));
        assert_eq!(stderr.matches("received f").count(), 40, "{stderr}");
    }
    succeeded(&wait(sender, T));
    for i in 0..2 {
        assert_same_tree(&source, &work.path().join(format!("out{i}")));
    }
}

#[test]
fn the_demo_runs_on_a_private_cluster_of_its_own() {
    let output = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_redistribute"))
            .env_remove("REDIS_URL")
            .args(["demo", "--cluster", "--size", "2MiB"]),
        T,
    );
    let stderr = succeeded(&output);
    let said = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    assert!(
        said.contains("started a private Redis Cluster of three masters")
            && said.contains("copies verified (BLAKE3)")
            && said.contains("visits counted per day and country"),
        "{said}"
    );
    assert!(
        !said.contains("does not exist yet"),
        "the demo's receivers waited for a channel its sender had not made yet: {said}"
    );
}

#[test]
fn slots_moved_to_another_master_while_files_stream_lose_nothing() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write_files(&source, 30, 30_000, 150_000);
    let receivers = broadcast_receivers(&cluster, "rs", work.path());
    let sender = send_broadcast(&cluster, "rs", &source, "512KiB");
    // The channel's own slot and the 300 around it, control keys and
    // chunks both, go to the next master while the transfer runs.
    let mut con = redis::Client::open(cluster.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("rd:{rs}:meta")
        .query(&mut con)
        .unwrap();
    let (port, _) = loop {
        if let Some(found) = cluster.keys("rd:{rs}:meta").into_iter().next() {
            break found;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let from = cluster
        .0
        .nodes()
        .iter()
        .position(|n| n.port() == port)
        .unwrap();
    let first = slot.saturating_sub(150).max(from as u16 * 5461);
    let last = (first + 300).min(from as u16 * 5461 + 5460);
    let finished = || {
        channel_status(&cluster, "rs")[0]["files_finished"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = finished();
    cluster
        .0
        .move_slots(first..last, from, (from + 1) % 3)
        .unwrap();
    let after = finished();
    eprintln!(
        "{} slots moved while files {before} to {after} of 30 finished",
        last - first
    );
    assert!(
        before < 30,
        "the transfer ended before the slots began to move"
    );
    for receiver in receivers {
        let stderr = succeeded(&wait(receiver, T));
        assert_eq!(stderr.matches("received f").count(), 30, "{stderr}");
    }
    succeeded(&wait(sender, T));
    for i in 0..2 {
        assert_same_tree(&source, &work.path().join(format!("out{i}")));
    }
    let (port, _) = cluster.keys("rd:{rs}:meta")[0];
    let owner = cluster
        .0
        .nodes()
        .iter()
        .position(|n| n.port() == port)
        .unwrap();
    assert_eq!(owner, (from + 1) % 3, "the channel's slot did not move");
}

#[test]
fn a_cluster_whose_client_connections_keep_dropping_still_delivers_every_file_once() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write_files(&source, 60, 10_000, 200_000);
    let killer = common::killer::ConnectionKiller::on(cluster.urls(), 31);
    let receivers = broadcast_receivers(&cluster, "drops", work.path());
    let sent = run(
        cluster
            .send("drops")
            .receivers(2)
            .chunk_size("16KiB")
            .limit("1MiB")
            .path(&source),
        T,
    );
    let outcomes: Vec<_> = receivers.into_iter().map(|r| wait(r, T)).collect();
    let drops = killer.stop();
    succeeded(&sent);
    for outcome in &outcomes {
        assert_eq!(succeeded(outcome).matches("received f").count(), 60);
    }
    for i in 0..2 {
        assert_same_tree(&source, &work.path().join(format!("out{i}")));
    }
    assert!(drops >= 3, "only {drops} rounds cut connections");
    eprintln!("{drops} rounds of dropped connections on every node");
}

fn succeeded_stdout(output: &std::process::Output) -> String {
    succeeded(output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_master_past_half_its_maxmemory_gets_no_chunks_until_it_has_room_again() {
    let cluster = Cluster::with(redistribute_transfer::redis::LocalClusterOptions {
        maxmemory: Some(32 << 20),
        ..Default::default()
    });
    // Fill the first master past half its maxmemory with other data.
    let full = &cluster.0.nodes()[0];
    let mut con = redis::Client::open(full.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let tag = (0..)
        .map(|n| format!("junk{n}"))
        .find(|tag| {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(tag)
                .query::<u16>(&mut con)
                .unwrap()
                < 5461
        })
        .unwrap();
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("{{{tag}}}:{i}"))
            .arg(vec![7u8; 1 << 20])
            .query(&mut con)
            .unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..6u64 {
        write(&source, &format!("f{i}.bin"), &noise(400_000, i));
    }
    let out = work.path().join("out");
    let receiver = spawn(cluster.receive("room", 0).out(&out));
    let sender = spawn(
        cluster
            .send("room")
            .receivers(1)
            .chunk_size("16KiB")
            .path(&source),
    );
    // The other masters get chunks; the full one none.
    let deadline = std::time::Instant::now() + T;
    loop {
        let on: BTreeSet<u16> = cluster
            .keys("rd:c:4:room:*")
            .into_iter()
            .map(|(port, _)| port)
            .collect();
        assert!(
            !on.contains(&full.port()),
            "a chunk went to the full master"
        );
        if on.len() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no chunks arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !cluster
            .keys("rd:c:4:room:*")
            .iter()
            .any(|(port, _)| *port == full.port()),
        "a chunk went to the full master"
    );
    // Room again: everything goes through.
    for i in 0..20 {
        let _: () = redis::cmd("DEL")
            .arg(format!("{{{tag}}}:{i}"))
            .query(&mut con)
            .unwrap();
    }
    succeeded(&wait(receiver, T));
    let said = succeeded(&wait(sender, T));
    assert!(
        said.contains(&format!("Redis master 127.0.0.1:{} holds", full.port()))
            && said.contains("waiting for receivers to free room there"),
        "{said}"
    );
    assert_same_tree(&source, &out);
}

#[test]
fn a_backlog_of_96_chunks_spreads_a_third_per_master_within_twelve_points() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let size = 96 * raw_chunk_capacity(16_384);
    write(&source, "spread.bin", &noise(size as usize, 9));
    // No receiver: the whole backlog stays while we look.
    let mut sender = spawn(
        cluster
            .send("spread")
            .receivers(1)
            .chunk_size("16KiB")
            .compress("none")
            .path(&source),
    );
    let deadline = std::time::Instant::now() + T;
    let status = loop {
        let status = channel_status(&cluster, "spread");
        if status[0]["bytes_sent"] == size {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    sender.kill().unwrap();
    sender.wait().unwrap();
    let masters = status[0]["bytes_per_master"].as_array().unwrap();
    let stored: f64 = masters.iter().map(|m| m["bytes"].as_f64().unwrap()).sum();
    assert_eq!(stored, 96.0 * 16_372.0, "96 full chunks: {status}");
    for master in masters {
        let share = master["bytes"].as_f64().unwrap() / stored;
        assert!((0.21..=0.45).contains(&share), "{status}");
    }
}

#[test]
fn follow_retry_and_geo_lookup_work_on_a_cluster_too() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", b"1.0.0.0,1.0.0.255,AU\n");
    succeeded(&run(
        cluster.command().args(["geo", "import"]).arg(&table),
        T,
    ));
    let looked = run(cluster.command().args(["geo", "lookup", "1.0.0.7"]), T);
    assert!(succeeded_stdout(&looked).starts_with("1.0.0.7\tAU"));

    let (watched, out) = (work.path().join("watched"), work.path().join("out"));
    std::fs::create_dir_all(&watched).unwrap();
    let mut sender = spawn(
        cluster
            .send("live")
            .receivers(1)
            .follow()
            .settle("200ms")
            .path(&watched),
    );
    let mut receiver = spawn(cluster.receive("live", 0).follow().out(&out));
    write(&watched, "late.log", &noise(300_000, 4));
    let deadline = std::time::Instant::now() + T;
    while std::fs::read(out.join("late.log")).ok() != Some(noise(300_000, 4)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the followed file never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for process in [&mut sender, &mut receiver] {
        assert!(process.try_wait().unwrap().is_none(), "a follower stopped");
        process.kill().unwrap();
        process.wait().unwrap();
    }
    let retried = succeeded(&run(
        cluster.command().args(["retry", "--channel", "live"]),
        T,
    ));
    assert!(retried.contains("has no parked files"), "{retried}");
}

#[test]
fn a_tls_cluster_with_client_certificates_delivers_every_file() {
    let work = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = common::certificates(work.path());
    let cluster = Cluster::with(redistribute_transfer::redis::LocalClusterOptions {
        tls: Some(redistribute_transfer::redis::LocalTls {
            cert: server_cert,
            key: server_key,
            ca: ca.clone(),
        }),
        ..Default::default()
    });
    assert!(cluster.url().starts_with("rediss://"), "{}", cluster.url());
    let source = work.path().join("in");
    write_files(&source, 6, 100_000, 2_000_000);
    let tls = |command: &mut std::process::Command| {
        common::with_tls(command, &ca, &client_cert, &client_key);
    };
    let mut send = cluster.command();
    tls(&mut send);
    let sender = spawn(
        SendCommand::new(send, "tls")
            .workers()
            .limit("4MiB")
            .chunk_size("256KiB")
            .path(&source),
    );
    let out = work.path().join("out");
    let workers: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| {
            let mut receive = cluster.command();
            tls(&mut receive);
            spawn(ReceiveCommand::new(receive, "tls", id).out(&out))
        })
        .collect();
    for worker in workers {
        succeeded(&wait(worker, T));
    }
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);
    // Without a client certificate the nodes hang up, in one line.
    let mut anonymous = cluster.command();
    anonymous.arg("--tls-ca-cert").arg(&ca).arg("status");
    let line = failed_with_one_line(&run(&mut anonymous, T));
    assert!(line.contains("--tls-cert"), "{line}");
}

/// Every key matching `pattern` on every node that answers, replicas
/// included, with the node's port.
fn keys_on_every_node(cluster: &Cluster, pattern: &str) -> Vec<(u16, String)> {
    let mut found = Vec::new();
    for node in cluster.0.nodes() {
        let Ok(mut con) = node
            .client()
            .map_err(redis::RedisError::from)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            continue; // the node we killed
        };
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut con).unwrap();
        found.extend(keys.into_iter().map(|k| (node.port(), k)));
    }
    found
}

/// Asserts that no node, master or replica, holds a key matching
/// `pattern`, allowing replicas a moment to apply the last deletes.
fn assert_nothing_left(cluster: &Cluster, pattern: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = keys_on_every_node(cluster, pattern);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left in Redis: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(role, port of its master)` of a node, from `ROLE`; `None` when it
/// does not answer.
fn role(node: &redistribute_transfer::redis::LocalRedis) -> Option<(String, Option<u16>)> {
    let mut con = node
        .client()
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con).ok()?;
    let role: String = redis::from_redis_value(reply.first()?.clone()).ok()?;
    let master = (role == "slave")
        .then(|| redis::from_redis_value::<u16>(reply.get(2)?.clone()).ok())
        .flatten();
    Some((role, master))
}

/// Index of the node holding `key` now.
fn holder(cluster: &Cluster, key: &str) -> usize {
    let (port, _) = cluster.keys(key)[0];
    cluster
        .0
        .nodes()
        .iter()
        .position(|n| n.port() == port)
        .unwrap()
}

/// Waits until node `index` answers `ROLE` with `wanted`.
fn wait_for_role(cluster: &Cluster, index: usize, wanted: &str) {
    let deadline = std::time::Instant::now() + T;
    while role(&cluster.0.nodes()[index]).is_none_or(|(role, _)| role != wanted) {
        assert!(
            std::time::Instant::now() < deadline,
            "node {index} never became {wanted}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends 12 files to receivers `0` and `1` of `channel` under `limit` with
/// no receiver running, and returns once the sender waits for room
/// (`waits_for_room`) or for receivers after its upload ended.
fn sender_waiting(
    cluster: &Cluster,
    channel: &str,
    source: &std::path::Path,
    limit: &str,
    waits_for_room: bool,
) -> Running {
    write_files(source, 12, 20_000, 150_000);
    let total: u64 = std::fs::read_dir(source)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let mut sender = send_broadcast(cluster, channel, source, limit);
    let deadline = std::time::Instant::now() + T;
    loop {
        let status = channel_status(cluster, channel);
        let waiting = if waits_for_room {
            !status[0]["sender_waiting_since_ms"].is_null()
        } else {
            status[0]["bytes_sent"] == total
        };
        if waiting {
            return sender;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sender never waited: {status}"
        );
        if sender.try_wait().unwrap().is_some() {
            panic!("the sender stopped early: {:?}", wait(sender, T));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Receives `channel` through node `via` (any node that is up), then
/// checks that every process ended by itself with exit 0, that the copies
/// are whole, and that no chunk of the channel is left on any node.
fn deliver_and_check(
    cluster: &Cluster,
    via: usize,
    channel: &str,
    dir: &std::path::Path,
    sender: Running,
) {
    let url = cluster.0.nodes()[via].url();
    let receivers: Vec<Running> = (0..2)
        .map(|i| {
            spawn(
                ReceiveCommand::new(common::binary(&url), channel, i)
                    .out(dir.join(format!("out{i}"))),
            )
        })
        .collect();
    for receiver in receivers {
        succeeded(&wait(receiver, T));
    }
    let said = succeeded(&wait(sender, T));
    for i in 0..2 {
        assert_same_tree(&dir.join("in"), &dir.join(format!("out{i}")));
    }
    assert_nothing_left(cluster, &format!("rd:c:{}:{channel}:*", channel.len()));
    eprintln!("sender said:\n{said}");
}

/// A master killed once the upload ended, while the sender waits for
/// receivers: the one holding the channel's control keys (`control`), or
/// one holding only chunks.
fn master_killed_while_the_sender_waits_for_receivers(control: bool) {
    let mut cluster = Cluster::with(redistribute_transfer::redis::LocalClusterOptions {
        replicas_per_master: 1,
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let sender = sender_waiting(&cluster, "kill", &work.path().join("in"), "8MiB", false);
    let meta = holder(&cluster, "rd:{kill}:meta");
    let victim = if control {
        meta
    } else {
        (0..3).find(|&i| i != meta).unwrap()
    };
    // Killed within the sender's first second of waiting, before its first
    // notice, which reads the chunks on every master.
    cluster.0.nodes_mut()[victim].crash().unwrap(); // SIGKILL
    let replica = victim + 3;
    wait_for_role(&cluster, replica, "master");
    deliver_and_check(&cluster, replica, "kill", work.path(), sender);
}

#[test]
fn the_control_master_killed_while_the_sender_waits_for_receivers_costs_nothing() {
    master_killed_while_the_sender_waits_for_receivers(true);
}

#[test]
fn a_chunk_master_killed_while_the_sender_waits_for_receivers_costs_nothing() {
    master_killed_while_the_sender_waits_for_receivers(false);
}

/// `CLUSTER FAILOVER` on the replica of the channel's control master while
/// the sender blocks there, waiting for room or for receivers.
fn failover_while_the_sender_waits(for_room: bool) {
    let cluster = Cluster::with(redistribute_transfer::redis::LocalClusterOptions {
        replicas_per_master: 1,
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let limit = if for_room { "256KiB" } else { "8MiB" };
    let sender = sender_waiting(&cluster, "fo", &work.path().join("in"), limit, for_room);
    let meta = holder(&cluster, "rd:{fo}:meta");
    let replica = meta + 3;
    assert_eq!(
        role(&cluster.0.nodes()[replica]).unwrap().1,
        Some(cluster.0.nodes()[meta].port())
    );
    let mut con = cluster.0.nodes()[replica]
        .client()
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut con)
        .unwrap();
    wait_for_role(&cluster, replica, "master");
    // Let the sender meet the new topology before receivers join.
    std::thread::sleep(Duration::from_millis(500));
    deliver_and_check(&cluster, meta, "fo", work.path(), sender);
}

#[test]
fn a_cluster_failover_while_the_sender_waits_for_room_costs_nothing() {
    failover_while_the_sender_waits(true);
}

#[test]
fn a_cluster_failover_while_the_sender_waits_for_receivers_costs_nothing() {
    failover_while_the_sender_waits(false);
}
