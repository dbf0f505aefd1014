//! `--protocol classic` against an independent Python peer written from the
//! book's wire format (tests/peer/book_peer.py), and against ourselves.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Running, Server, assert_same_tree, noise, run, spawn, succeeded, wait, write};

const T: Duration = Duration::from_secs(60);
const CHANNEL: &str = "logs:";

fn python(server: &Server, args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peer/book_peer.py"
        ))
        .arg(args[0])
        .arg(server.url())
        .arg(CHANNEL)
        .arg(args[1])
        .arg(dir);
    command
}

fn rust_send(server: &Server, receivers: &str, dir: &Path) -> Command {
    let mut command = server.command();
    command
        .args([
            "send",
            "--protocol",
            "classic",
            "--channel",
            CHANNEL,
            "--receivers",
            receivers,
        ])
        .arg(dir);
    command
}

fn rust_receive(server: &Server, id: &str, out: &Path) -> Command {
    let mut command = server.command();
    command
        .args([
            "receive",
            "--protocol",
            "classic",
            "--channel",
            CHANNEL,
            "--id",
            id,
            "--out",
        ])
        .arg(out);
    command
}

/// Files of a few shapes: empty, several 128 KiB blocks, exact block, gzip.
fn sample(dir: &Path) -> Vec<u8> {
    use std::io::Write;
    let text: String = (0..20_000)
        .map(|i| format!("10.0.{}.{} 2026-11-24 GET /\n", i % 256, i / 256 % 256))
        .collect();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(text.as_bytes()).unwrap();
    write(dir, "a.log", text.as_bytes());
    write(dir, "b.bin", &noise(3 * 131_072 + 5, 1));
    write(dir, "c-exact.bin", &noise(131_072, 2));
    write(dir, "d-empty", b"");
    write(dir, "e.log.gz", &gzip.finish().unwrap());
    text.into_bytes()
}

/// Redis holds no file keys of the channel any more.
fn assert_no_file_keys(server: &Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(server.keys(&format!("{CHANNEL}*"))),
        Vec::<String>::new()
    );
}

/// The copies under `out` (ignoring the peer's `.text` files) equal `source`.
fn assert_copies(source: &Path, out: &Path) {
    let only = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if !name.ends_with(".text") {
            std::fs::copy(entry.path(), only.path().join(name)).unwrap();
        }
    }
    assert_same_tree(source, only.path());
}

#[test]
fn our_sender_feeds_two_book_receivers_including_a_gzipped_file() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let text = sample(&source);
    let peers: Vec<Running> = ["0", "1"]
        .iter()
        .map(|id| {
            spawn(&mut python(
                &server,
                &["receive", id],
                &work.path().join(format!("py{id}")),
            ))
        })
        .collect();
    succeeded(&run(&mut rust_send(&server, "2", &source), T));
    for (i, peer) in peers.into_iter().enumerate() {
        succeeded(&wait(peer, T));
        let out = work.path().join(format!("py{i}"));
        assert_eq!(std::fs::read(out.join("e.log.gz.text")).unwrap(), text);
        assert_copies(&source, &out);
    }
    assert_no_file_keys(&server);
}

#[test]
fn a_book_sender_feeds_two_of_our_receivers() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    sample(&source);
    let ours: Vec<Running> = ["0", "1"]
        .iter()
        .map(|id| {
            spawn(&mut rust_receive(
                &server,
                id,
                &work.path().join(format!("rs{id}")),
            ))
        })
        .collect();
    succeeded(&run(&mut python(&server, &["send", "2"], &source), T));
    for (i, receiver) in ours.into_iter().enumerate() {
        succeeded(&wait(receiver, T));
        assert_same_tree(&source, &work.path().join(format!("rs{i}")));
    }
    assert_no_file_keys(&server);
}

#[test]
fn one_of_ours_and_one_book_receiver_share_a_channel() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    sample(&source);
    let (py, rs) = (work.path().join("py"), work.path().join("rs"));
    let peer = spawn(&mut python(&server, &["receive", "0"], &py));
    let ours = spawn(&mut rust_receive(&server, "1", &rs));
    succeeded(&run(&mut rust_send(&server, "2", &source), T));
    succeeded(&wait(peer, T));
    succeeded(&wait(ours, T));
    assert_copies(&source, &py);
    assert_same_tree(&source, &rs);
    assert_no_file_keys(&server);
}

#[test]
fn our_receiver_decodes_gzip_for_commands_and_stdout() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let text = sample(&source);
    std::fs::remove_file(source.join("b.bin")).unwrap();
    std::fs::remove_file(source.join("c-exact.bin")).unwrap();
    let sender = spawn(&mut rust_send(&server, "1", &source));
    let output = run(
        server.command().args([
            "receive",
            "--protocol",
            "classic",
            "--channel",
            CHANNEL,
            "--id",
            "0",
            "--stdout",
        ]),
        T,
    );
    succeeded(&output);
    succeeded(&wait(sender, T));
    assert_eq!(
        output.stdout,
        [text.clone(), text].concat(),
        "a.log then e.log.gz decoded"
    );
}

#[test]
fn a_receiver_killed_mid_file_gets_it_again_and_counts_it_once() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "big", &noise(2 << 20, 3));
    write(&source, "small", b"small\n");
    let sender = spawn(&mut rust_send(&server, "2", &source));
    let mut stalled = spawn(server.command().args([
        "receive",
        "--protocol",
        "classic",
        "--channel",
        CHANNEL,
        "--id",
        "0",
        "--exec",
        "head -c 1000 >/dev/null; sleep 60",
    ]));
    std::thread::sleep(Duration::from_millis(700));
    stalled.kill().unwrap();
    stalled.wait().unwrap();
    succeeded(&run(
        &mut rust_receive(&server, "0", &work.path().join("r0")),
        T,
    ));
    // Had receiver 0 counted a file twice, the sender would already have
    // deleted it, and receiver 1 would get nothing.
    succeeded(&run(
        &mut rust_receive(&server, "1", &work.path().join("r1")),
        T,
    ));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &work.path().join("r0"));
    assert_same_tree(&source, &work.path().join("r1"));
    assert_no_file_keys(&server);
}

#[test]
fn a_restarted_sender_never_appends_twice_or_announces_again() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "1-first", &noise(300_000, 4));
    write(&source, "2-second", &noise(300_000, 5));
    // The limit holds one file: the sender waits for receivers before the second.
    let limited = |server: &Server| {
        let mut command = rust_send(server, "1", &source);
        command.args(["--limit", "400KiB"]);
        command
    };
    let mut first = spawn(&mut limited(&server));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + T;
    while rt
        .block_on(server.keys(&format!("{CHANNEL}1-first")))
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    first.kill().unwrap();
    first.wait().unwrap();
    // As if it had died after appending the first block of the second file.
    let second_file = std::fs::read(source.join("2-second")).unwrap();
    rt.block_on(async {
        let mut con = server.connection().await;
        let _: () = redis::cmd("APPEND")
            .arg(format!("{CHANNEL}2-second"))
            .arg(&second_file[..131_072])
            .query_async(&mut con)
            .await
            .unwrap();
    });
    let second = spawn(&mut limited(&server));
    succeeded(&run(
        &mut rust_receive(&server, "0", &work.path().join("out")),
        T,
    ));
    succeeded(&wait(second, T));
    assert_same_tree(&source, &work.path().join("out"));
    let messages: Vec<String> = rt.block_on(async {
        let mut con = server.connection().await;
        redis::cmd("ZRANGE")
            .arg(format!("msgs:{CHANNEL}"))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .unwrap()
    });
    let texts: Vec<String> = messages
        .iter()
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(m).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts, ["", "1-first", "2-second", ":done"]);
}

#[test]
fn files_over_512_mb_are_refused_and_files_over_the_limit_go_alone() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let huge = work.path().join("huge");
    std::fs::create_dir_all(&huge).unwrap();
    std::fs::File::create(huge.join("sparse"))
        .unwrap()
        .set_len(513 << 20)
        .unwrap();
    let output = run(&mut rust_send(&server, "1", &huge), T);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("over the 512 MB a Redis string can hold")
    );

    let source = work.path().join("in");
    write(&source, "bigger-than-limit", &noise(200_000, 6));
    let mut command = rust_send(&server, "1", &source);
    command.args(["--limit", "100KiB"]);
    let sender = spawn(&mut command);
    succeeded(&run(
        &mut rust_receive(&server, "0", &work.path().join("out")),
        T,
    ));
    let stderr = succeeded(&wait(sender, T));
    assert!(stderr.contains("larger than --limit"), "{stderr}");
    assert_same_tree(&source, &work.path().join("out"));
}

#[test]
fn geo_import_classic_fills_the_same_keys_as_the_books_python() {
    let (ours, theirs) = (Server::start(), Server::start());
    let work = tempfile::tempdir().unwrap();
    let blocks = write(
        work.path(),
        "GeoLiteCity-Blocks.csv",
        b"Copyright (c) 2011 MaxMind Inc.  All Rights Reserved.\n\
          startIpNum,endIpNum,locId\n\
          \"16777216\",\"16777471\",\"17\"\n\
          \"1.0.1.0\",\"1.0.3.255\",\"49\"\n\
          \"not-an-address\",\"x\",\"5\"\n\
          \n\
          \"16778240\",\"16779263\",\"17\"\n",
    );
    let mut locations = b"Copyright (c) 2011 MaxMind Inc.  All Rights Reserved.\n\
        locId,country,region,city,postalCode,latitude,longitude,metroCode,areaCode\n\
        17,\"AU\",\"07\",\"Melbourne\",\"\",-37.8139,144.9634,,\n"
        .to_vec();
    locations.extend(b"49,\"CH\",\"25\",\"Z\xfcrich \\\"Quote\\\"\",\"\",47.3667,8.55,,\n");
    locations.extend(b"short,row\n");
    let locations = write(work.path(), "GeoLiteCity-Location.csv", &locations);

    succeeded(&run(
        ours.command()
            .args(["geo", "import", "--classic"])
            .arg(&blocks)
            .arg(&locations),
        T,
    ));
    let mut book = Command::new("python3");
    book.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peer/book_peer.py"
    ))
    .args(["import-geo", &theirs.url()])
    .arg(&blocks)
    .arg(&locations);
    succeeded(&run(&mut book, T));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dump = |server: &Server| {
        rt.block_on(async {
            let mut con = server.connection().await;
            let ranges: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
                .arg("ip2cityid:")
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await
                .unwrap();
            let mut cities: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
                .arg("cityid2city:")
                .query_async(&mut con)
                .await
                .unwrap();
            cities.sort();
            (ranges, cities)
        })
    };
    let (ours, theirs) = (dump(&ours), dump(&theirs));
    assert_eq!(ours.0.len(), 3, "{ours:?}");
    assert_eq!(ours.1.len(), 2, "{ours:?}");
    assert_eq!(ours, theirs);
}

#[test]
fn a_book_sender_feeds_our_aggregation_job() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    write(
        &logs,
        "a.log",
        b"1.0.0.1 2026-11-24 GET /\n1.0.0.2 2026-11-24 GET /\n2.0.0.1 2026-11-25 GET /\n",
    );
    let table = write(
        work.path(),
        "table.csv",
        b"1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.255.255.255,FR\n",
    );
    let worker = spawn(
        server
            .command()
            .args([
                "aggregate",
                "--protocol",
                "classic",
                "--channel",
                CHANNEL,
                "--id",
                "0",
                "--table",
            ])
            .arg(&table),
    );
    succeeded(&run(&mut python(&server, &["send", "1"], &logs), T));
    succeeded(&wait(worker, T));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scores: Vec<(String, f64)> = rt.block_on(async {
        let mut con = server.connection().await;
        let mut all = Vec::new();
        for day in ["2026-11-24", "2026-11-25"] {
            let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(format!("daily:country:{day}"))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await
                .unwrap();
            all.extend(members.into_iter().map(|(m, s)| (format!("{day} {m}"), s)));
        }
        all
    });
    assert_eq!(
        scores,
        [
            ("2026-11-24 AU".to_owned(), 2.0),
            ("2026-11-25 FR".to_owned(), 1.0)
        ]
    );
    assert_no_file_keys(&server);
}

/// A name the book's Python sends but a receiver must not write (a
/// backslash reads as a path on other systems): skipped with a line naming
/// it, the others delivered, and exit 3 (done, not all delivered), as the
/// exit codes in docs/operations.md say.
#[test]
fn a_name_our_receiver_refuses_is_skipped_and_the_run_exits_3() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "good.log", &noise(300_000, 1));
    write(&source, "bad\\name.log", &noise(1_000, 2));
    let out = work.path().join("out");
    let receiver = spawn(&mut rust_receive(&server, "0", &out));
    // The book's sender waits for every file's done counter, which the
    // refused file never gets: it is stopped once our receiver is done.
    let mut book = spawn(&mut python(&server, &["send", "1"], &source));
    let output = wait(receiver, T);
    book.kill().unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"refusing file name "bad\\name.log""#),
        "{stderr}"
    );
    assert!(
        common::last_line_of_failure(&output)
            .contains("1 file was refused for its name and not counted as done"),
        "{stderr}"
    );
    assert_eq!(
        common::tree(&out).keys().collect::<Vec<_>>(),
        ["good.log"],
        "only the good file was written"
    );
    assert_eq!(
        std::fs::read(out.join("good.log")).unwrap(),
        noise(300_000, 1)
    );
}
