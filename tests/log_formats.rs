//! `aggregate` on the log formats people have, recognised per file:
//! fixtures written here in each format, with the expected counts computed
//! from what was written, not by parsing it back.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{ADDRESSES, Server, TABLE, run, spawn, succeeded, wait, write};

const T: Duration = Duration::from_secs(90);

/// One visit as a line of `format`, on 2026-11-`day` at `hour`.
fn line(format: &str, ip: &str, day: u32, hour: u32) -> String {
    let clf = format!("{day:02}/Nov/2026:{hour:02}:17:05 +0100");
    let iso = format!("2026-11-{day:02}T{hour:02}:17:05+01:00");
    let request = "\"GET /shop?q=a%20b HTTP/1.1\" 200 5120";
    let agent = "\"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64)\"";
    match format {
        "book" => format!("{ip} 2026-11-{day:02} GET /shop 200"),
        "common" => format!("{ip} - - [{clf}] {request}"),
        "combined" => format!("{ip} - frank [{clf}] {request} {agent}"),
        "vhost_combined" => format!("shop.example:443 {ip} - - [{clf}] {request} {agent}"),
        "json" => format!(
            r#"{{"time_iso8601":"{iso}","remote_addr":"{ip}","request":"GET /shop","status":200,"headers":{{"ua":"x"}}}}"#
        ),
        // Epoch seconds (UTC) in a field named otherwise, and a number.
        "json_epoch" => {
            let midnight = jiff::civil::date(2026, 11, day as i8)
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second();
            format!(
                r#"{{"ts":{},"client_ip":"{ip}","msg":"GET /shop"}}"#,
                midnight + i64::from(hour) * 3600
            )
        }
        "nginx" => format!("{ip}|{iso}|GET /shop|200"),
        other => panic!("no fixture for {other}"),
    }
}

/// A log of `lines` visits in `format`, with a few lines that must not
/// count: garbage, and days that are not on the calendar. Adds the
/// visits to `expected` and returns how many lines must be unparsed.
fn fixture(
    dir: &Path,
    format: &str,
    lines: usize,
    expected: &mut BTreeMap<(String, String), f64>,
) -> u64 {
    let mut rng = fastrand::Rng::with_seed(lines as u64 + format.len() as u64);
    let mut text = String::new();
    let mut unparsed = 0;
    for i in 0..lines {
        let (ip, country) = ADDRESSES[rng.usize(..ADDRESSES.len())];
        let day = 1 + (i * 3 / lines) as u32;
        if i % 37 == 5 {
            text.push_str(&format!("garbage line {i} \u{1}\u{2}\n"));
            unparsed += 1;
        } else if i % 53 == 7 {
            // 2026-11-31 does not exist.
            let bad = match format {
                "json_epoch" => {
                    format!(r#"{{"ts":"31/Nov/2026:12:00:00 +0000","client_ip":"{ip}"}}"#)
                }
                _ => line(format, ip, 31, 12),
            };
            text.push_str(&bad);
            text.push('\n');
            unparsed += 1;
        } else {
            text.push_str(&line(format, ip, day, rng.u32(0..23)));
            text.push('\n');
            *expected
                .entry((format!("2026-11-{day:02}"), country.to_owned()))
                .or_insert(0.0) += 1.0;
        }
    }
    write(dir, &format!("{format}.log"), text.as_bytes());
    unparsed
}

/// Lines not parsed, summed over the channel's workers.
fn unparsed(server: &Server, channel: &str) -> u64 {
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", channel]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    status[0]["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["lines_unparsed"].as_u64().unwrap())
        .sum()
}

#[test]
fn each_file_is_read_in_the_format_its_first_lines_show() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let logs = work.path().join("logs");
    let mut expected = BTreeMap::new();
    let mut garbage = 0;
    for format in [
        "book",
        "common",
        "combined",
        "vhost_combined",
        "json",
        "json_epoch",
    ] {
        garbage += fixture(&logs, format, 300, &mut expected);
    }
    let sender = spawn(server.send("mixed").workers().path(&logs));
    let worker = run(
        server
            .command()
            .args([
                "-v",
                "aggregate",
                "--channel",
                "mixed",
                "--id",
                "w",
                "--table",
            ])
            .arg(&table),
        T,
    );
    let said = succeeded(&worker);
    succeeded(&wait(sender, T));
    assert_eq!(server.daily_counts("country"), expected);
    assert_eq!(unparsed(&server, "mixed"), garbage);
    for (file, format) in [
        ("common.log", "read as common"),
        ("vhost_combined.log", "read as vhost_combined"),
        ("json_epoch.log", "read as json (client_ip, ts)"),
    ] {
        assert!(
            said.lines().any(|l| l.contains(file) && l.contains(format)),
            "{file} not {format}: {said}"
        );
    }
    assert!(
        said.contains("did not parse as combined, such as \"garbage line 5"),
        "{said}"
    );
}

#[test]
fn a_custom_nginx_layout_and_the_client_behind_a_proxy() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let logs = work.path().join("logs");
    let mut expected = BTreeMap::new();
    let garbage = fixture(&logs, "nginx", 300, &mut expected);
    // Behind a proxy at 10.0.0.1: the client is the last untrusted hop.
    let mut forwarded = String::new();
    for (i, (client, country)) in ADDRESSES.iter().cycle().take(200).enumerate() {
        let (remote, list) = match i % 3 {
            0 => ("10.0.0.1", client.to_string()),
            1 => ("10.0.0.1", format!("6.6.6.6, {client}, 10.9.9.9")),
            // Not through the proxy: a list it sends is not believed.
            _ => (*client, "1.0.0.1".to_owned()),
        };
        forwarded.push_str(&format!(
            "{remote} - - [02/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"ua\" \"{list}\"\n"
        ));
        *expected
            .entry(("2026-11-02".to_owned(), (*country).to_owned()))
            .or_insert(0.0) += 1.0;
    }
    let proxied = work.path().join("proxied");
    write(&proxied, "access.log", forwarded.as_bytes());

    let send = |channel: &str, dir: &Path| spawn(server.send(channel).workers().path(dir));
    let sender = send("custom", &logs);
    succeeded(&run(
        server
            .aggregate("custom", "w")
            .table(&table)
            .log_format("nginx:$remote_addr|$time_iso8601|$request|$status"),
        T,
    ));
    succeeded(&wait(sender, T));
    let sender = send("proxied", &proxied);
    succeeded(&run(
        server.aggregate("proxied", "w").table(&table).args([
            "--client-ip",
            "forwarded",
            "--trusted-proxy",
            "10.0.0.0/8",
        ]),
        T,
    ));
    succeeded(&wait(sender, T));
    assert_eq!(server.daily_counts("country"), expected);
    assert_eq!(unparsed(&server, "custom"), garbage);
    assert_eq!(unparsed(&server, "proxied"), 0);
}

#[test]
fn a_file_in_another_format_or_in_none_is_refused_not_counted() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let table = write(work.path(), "table.csv", TABLE.as_bytes());
    let logs = work.path().join("logs");
    fixture(&logs, "combined", 100, &mut BTreeMap::new());
    let mut binary = common::noise(20_000, 3);
    for (i, byte) in binary.iter_mut().enumerate() {
        if i % 97 == 0 {
            *byte = b'\n';
        }
    }
    write(&logs, "core.dump", &binary);
    let sender = spawn(server.send("wrong").workers().path(&logs));
    // Told the wrong format, and given a binary file.
    let worker = run(
        server
            .aggregate("wrong", "w")
            .table(&table)
            .log_format("book"),
        T,
    );
    // Both are parked after their tries, and the sender says so too.
    let sent = wait(sender, T);
    assert!(!sent.status.success());
    assert!(String::from_utf8_lossy(&sent.stderr).contains("2 files failed and were parked"));
    assert!(!worker.status.success());
    let said = String::from_utf8_lossy(&worker.stderr);
    assert!(
        said.contains("they look like combined, not book; pass --log-format combined"),
        "{said}"
    );
    assert!(said.contains("nor as any known log format"), "{said}");
    // Parked at once: reading the file again cannot help.
    let sender_said = String::from_utf8_lossy(&sent.stderr);
    assert_eq!(
        sender_said.matches("(failed 1 time)").count(),
        2,
        "{sender_said}"
    );
    assert!(server.daily_counts("country").is_empty());
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", "wrong"]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let parked: Vec<&str> = status[0]["parked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert_eq!(parked.len(), 2, "{status}");
}
