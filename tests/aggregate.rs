//! The aggregation job end to end: logs sent, counted by `aggregate`
//! workers, totals compared with an independent count of the input.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::killer::ConnectionKiller;
use common::{Running, Server, TABLE, book_logs, run, spawn, succeeded, wait, write};
use redistribute_job::aggregate::{self, AggregateOptions};
use redistribute_job::logline::LineOptions;
use redistribute_job::report::Dimension;
use redistribute_transfer::redis::Redis;
use redistribute_transfer::{
    Error, Failure, FileSource, IncomingFile, ReceiveOptions, Receiver, Result,
};

const T: Duration = Duration::from_secs(90);

/// Every (day, member) → score in `daily:country:*`.
fn counted(server: &Server) -> BTreeMap<(String, String), f64> {
    server.daily_counts("country")
}

#[test]
fn a_work_queue_of_aggregators_counts_every_visit_once_with_unknowns_and_garbage() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let expected = book_logs(&work.path().join("logs"), 6, 500);
    let sender = spawn(server.send("logs").workers().path(work.path().join("logs")));
    let workers: Vec<Running> = ["w1", "w2"]
        .iter()
        .map(|id| spawn(server.aggregate("logs", id).table(&table)))
        .collect();
    for worker in workers {
        succeeded(&wait(worker, T));
    }
    succeeded(&wait(sender, T));
    assert_eq!(counted(&server), expected);
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", "logs"]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let unparsed: u64 = status[0]["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["lines_unparsed"].as_u64().unwrap())
        .sum();
    assert_eq!(
        unparsed, 12,
        "two garbage lines (one blank) in each of 6 files"
    );
}

/// A worker that counts its first file and dies before acknowledging it:
/// its `ack` gives up instead, so the counts are in Redis while the file
/// is not acknowledged; the receiver, with the claim it kept fresh, ends
/// with it.
struct DiesBeforeAck(Receiver);

/// What [`DiesBeforeAck`] says instead of acknowledging.
const DIED: &str = "died after counting, before acknowledging";

impl FileSource for DiesBeforeAck {
    async fn next_file(&mut self) -> Result<Option<IncomingFile>> {
        self.0.next_file().await
    }

    async fn ack(&mut self, file: IncomingFile) -> Result<()> {
        file.close().await;
        Err(Error::Usage(DIED.into()))
    }

    async fn fail(&mut self, file: IncomingFile, error: Error) -> Result<Failure> {
        self.0.fail(file, error).await
    }

    fn parked(&self) -> u64 {
        self.0.parked()
    }
}

/// Runs the job as worker `dying` of channel `logs` until it dies.
fn count_and_die(server: &Server, table: &Path) -> Result<u64> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let redis = Redis::connect(&server.url()).await?;
        let mut options = ReceiveOptions::new("logs", "dying");
        options.claim_after = Duration::from_secs(1);
        let mut worker = DiesBeforeAck(Receiver::connect(&server.url(), options).await?);
        let job = AggregateOptions {
            prefix: "rd".into(),
            dimensions: vec![Dimension::Country],
            lines: LineOptions::default(),
            table_files: vec![table.to_owned()],
            namespace: String::new(),
            keep: None,
        };
        aggregate::run(&redis, &mut worker, &job).await
    })
}

#[test]
fn a_worker_that_dies_after_counting_but_before_acknowledging_adds_nothing_twice() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let expected = book_logs(&work.path().join("logs"), 3, 200);
    let sender = spawn(server.send("logs").workers().path(work.path().join("logs")));
    match count_and_die(&server, &table) {
        Err(Error::Usage(said)) if said == DIED => {}
        other => panic!("the failure point was not reached: {other:?}"),
    }
    assert!(
        !counted(&server).is_empty(),
        "the dying worker wrote nothing"
    );
    succeeded(&run(
        server
            .aggregate("logs", "heir")
            .table(&table)
            .claim_after("1s"),
        T,
    ));
    succeeded(&wait(sender, T));
    assert_eq!(counted(&server), expected);
}

#[test]
fn broadcast_aggregators_and_combined_logs_count_each_file_once() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let logs = work.path().join("logs");
    write(
        &logs,
        "access.log",
        b"1.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 2326 \"-\" \"-\"\n\
          2001:db8::1 - frank [10/Oct/2000:23:59:59 -0700] \"GET /a HTTP/1.0\" 200 1 \"-\" \"-\"\n\
          2.2.2.2 - - [11/Oct/2000:00:00:01 -0700] \"GET /b HTTP/1.0\" 404 1 \"-\" \"-\"\n\
          not a log line\n",
    );
    let sender = spawn(server.send("logs").receivers("a,b").path(&logs));
    let receivers: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| {
            spawn(
                server
                    .aggregate("logs", id)
                    .table(&table)
                    .log_format("combined")
                    .by("country,region,city"),
            )
        })
        .collect();
    for receiver in receivers {
        succeeded(&wait(receiver, T));
    }
    succeeded(&wait(sender, T));
    let expected: BTreeMap<(String, String), f64> = [
        (("2000-10-10".to_owned(), "AU".to_owned()), 1.0),
        (("2000-10-10".to_owned(), "JP".to_owned()), 1.0),
        (("2000-10-11".to_owned(), "FR".to_owned()), 1.0),
    ]
    .into();
    assert_eq!(counted(&server), expected);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(server.keys("daily:city:2000-10-10")),
        ["daily:city:2000-10-10"]
    );
    let report = run(
        server
            .command()
            .args(["report", "--by", "city", "--day", "2000-10-10", "--csv"]),
        T,
    );
    let csv = String::from_utf8(succeeded_stdout(&report)).unwrap();
    assert!(csv.contains("AU/unknown/unknown"), "{csv}");
}

fn succeeded_stdout(output: &std::process::Output) -> Vec<u8> {
    succeeded(output);
    output.stdout.clone()
}

#[test]
fn the_built_in_table_and_geo_lookup_know_real_addresses() {
    let server = Server::start();
    let output = run(
        server
            .command()
            .args(["geo", "lookup", "1.0.0.1", "2001:200::1", "10.0.0.1"]),
        T,
    );
    let text = String::from_utf8(succeeded_stdout(&output)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("1.0.0.1\tAU"), "{text}");
    assert!(lines[1].starts_with("2001:200::1\tAU"), "{text}");
    assert_eq!(lines[2], "10.0.0.1\tunknown");
}

#[test]
fn workers_and_the_sender_killed_at_random_while_connections_drop_still_count_every_visit_once() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let expected = book_logs(&work.path().join("logs"), 40, 3000);
    // A budget of a sixth of the backlog (40 files of ~70 KiB).
    let send = || {
        spawn(
            server
                .send("logs")
                .workers()
                .chunk_size("16KiB")
                .limit("512KiB")
                .path(work.path().join("logs")),
        )
    };
    let killer = ConnectionKiller::start(&server, 17);
    let mut sender = send();
    let ids = ["r1", "r2", "r3"];
    let start = |id: &str| spawn(server.aggregate("logs", id).table(&table).claim_after("1s"));
    let mut workers: Vec<Running> = ids.iter().map(|id| start(id)).collect();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kills = 0;
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(rng.u64(30..150)));
        let victim = rng.usize(..ids.len());
        if workers[victim].try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = workers[victim].kill(); // SIGKILL
        let _ = workers[victim].wait();
        workers[victim] = start(ids[victim]);
        if round == 3 && sender.try_wait().unwrap().is_none() {
            let _ = sender.kill();
            let _ = sender.wait();
            kills += 1;
            sender = send();
        }
    }
    for worker in workers {
        succeeded(&wait(worker, T));
    }
    succeeded(&wait(sender, T));
    let drops = killer.stop();
    assert_eq!(counted(&server), expected);
    assert!(kills >= 3 && drops >= 3, "{kills} kills, {drops} drops");
    eprintln!(
        "{kills} processes killed, {drops} connection drops, 40 files, every visit counted once"
    );
}

#[test]
fn a_channel_purged_and_used_again_still_counts_its_new_files() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    for round in 0..2 {
        let logs = work.path().join(format!("round{round}"));
        write(&logs, "day.log", b"1.0.0.1 2026-11-24 GET /\n");
        let sender = spawn(server.send("logs").workers().path(&logs));
        succeeded(&run(server.aggregate("logs", "w").table(&table), T));
        succeeded(&wait(sender, T));
        succeeded(&run(
            server.command().args(["purge", "--channel", "logs"]),
            T,
        ));
    }
    let expected: BTreeMap<(String, String), f64> =
        [(("2026-11-24".to_owned(), "AU".to_owned()), 2.0)].into();
    assert_eq!(counted(&server), expected);
}

#[test]
fn a_geolite2_city_table_imported_into_redis_gives_regions_and_cities() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let blocks = write(
        work.path(),
        "GeoLite2-City-Blocks-IPv4.csv",
        b"network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,postal_code,latitude,longitude,accuracy_radius\n\
          1.0.0.0/24,2158177,2077456,,0,0,3000,-37.8,144.9,100\n\
          2.0.0.0/8,,2077456,,0,0,,,,1000\n",
    );
    let locations = write(
        work.path(),
        "GeoLite2-City-Locations-en.csv",
        b"geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,subdivision_1_iso_code,subdivision_1_name,subdivision_2_iso_code,subdivision_2_name,city_name,metro_code,time_zone,is_in_european_union\n\
          2077456,en,OC,Oceania,AU,Australia,,,,,,,Australia/Sydney,0\n\
          2158177,en,OC,Oceania,AU,Australia,VIC,Victoria,,,Melbourne,,Australia/Melbourne,0\n",
    );
    succeeded(&run(
        server
            .command()
            .args(["geo", "import"])
            .arg(&blocks)
            .arg(&locations),
        T,
    ));
    let lookup = run(
        server
            .command()
            .args(["geo", "lookup", "1.0.0.9", "2.1.1.1"]),
        T,
    );
    assert_eq!(
        String::from_utf8(succeeded_stdout(&lookup)).unwrap(),
        "1.0.0.9\tAU\tVictoria\tMelbourne\n2.1.1.1\tAU\t-\t-\n"
    );

    let logs = work.path().join("logs");
    write(
        &logs,
        "a.log",
        b"1.0.0.9 2026-11-24 x\n2.1.1.1 2026-11-24 x\n1.0.0.10 2026-11-24 x\n",
    );
    let sender = spawn(server.send("logs").workers().path(&logs));
    succeeded(&run(
        server.aggregate("logs", "w").by("country,region,city"),
        T,
    ));
    succeeded(&wait(sender, T));
    let report = run(
        server
            .command()
            .args(["report", "--by", "city", "--day", "2026-11-24", "--json"]),
        T,
    );
    let report: serde_json::Value = serde_json::from_slice(&succeeded_stdout(&report)).unwrap();
    let rows: Vec<(String, u64)> = report[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["member"].as_str().unwrap().to_owned(),
                r["visits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("AU/Victoria/Melbourne".to_owned(), 2),
            ("AU/unknown/unknown".to_owned(), 1)
        ]
    );
    let chart = work.path().join("chart.svg");
    succeeded(&run(
        server
            .command()
            .args(["report", "--by", "city", "--chart"])
            .arg(&chart),
        T,
    ));
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..svg.len().min(80)]
    );
    assert!(svg.contains("AU/Victoria/Melbourne"));
}

#[test]
fn with_a_prefix_the_counts_go_under_it_and_report_reads_them_there() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let expected = book_logs(&work.path().join("logs"), 2, 50);
    let sender = spawn(
        server
            .command()
            .args(["--prefix", "team", "send", "--channel", "logs", "--workers"])
            .arg(work.path().join("logs")),
    );
    let worker = spawn(
        server
            .aggregate("logs", "w1")
            .table(&table)
            .args(["--prefix", "team"]),
    );
    succeeded(&wait(worker, T));
    succeeded(&wait(sender, T));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ours, books) = rt.block_on(async {
        (
            server.keys("team:daily:country:*").await,
            server.keys("daily:*").await,
        )
    });
    assert!(!ours.is_empty() && books.is_empty(), "{ours:?} {books:?}");

    let report = |extra: &[&str]| -> f64 {
        let output = run(
            server
                .command()
                .args(["report", "--by", "country", "--top", "0", "--json"])
                .args(extra),
            T,
        );
        succeeded(&output);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report
            .as_array()
            .unwrap()
            .iter()
            .map(|day| day["total"].as_f64().unwrap())
            .sum()
    };
    assert_eq!(
        report(&["--prefix", "team"]),
        expected.values().sum::<f64>()
    );
    assert_eq!(report(&[]), 0.0, "the book's keys hold nothing");
}

/// `--keep`: each day's counts and their marker set expire that long after
/// the day ends (UTC); days already past it are not kept at all.
#[test]
fn keep_sets_each_days_counts_to_expire_that_long_after_the_day() {
    let day_end = |day: &str| {
        let date: jiff::civil::Date = day.parse().unwrap();
        date.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
            + 86_400
    };
    for (keep, kept) in [("400d", true), ("1d", false)] {
        let server = Server::start();
        let work = tempfile::tempdir().unwrap();
        let table = write(work.path(), "table.csv", TABLE.as_bytes());
        let expected = book_logs(&work.path().join("logs"), 3, 100);
        let sender = spawn(server.send("logs").workers().path(work.path().join("logs")));
        let worker = spawn(
            server
                .aggregate("logs", "w")
                .table(&table)
                .args(["--keep", keep]),
        );
        succeeded(&wait(worker, T));
        succeeded(&wait(sender, T));
        let mut con = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let days: std::collections::BTreeSet<&String> =
            expected.keys().map(|(day, _)| day).collect();
        for day in days {
            let key = format!("daily:country:{day}");
            for key in [key.clone(), format!("{{{key}}}:applied")] {
                let at: i64 = redis::cmd("EXPIRETIME").arg(&key).query(&mut con).unwrap();
                if kept {
                    assert_eq!(at, day_end(day) + 400 * 86_400, "{key}");
                } else {
                    assert_eq!(at, -2, "{key} should be gone: its day is past --keep 1d");
                }
            }
        }
        if kept {
            assert_eq!(counted(&server), expected);
        }
    }
}
