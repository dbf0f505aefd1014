//! MaxMind DB (`.mmdb`) tables written by an independent writer, imported
//! with `geo import`, answer as MaxMind's own reader does.
//! tests/peer/mmdb_oracle.py writes each database with Python's
//! mmdb-writer and prints what the maxminddb package says of a few
//! thousand addresses, in `geo lookup`'s format; `geo lookup` must print
//! the same lines. Files that are no table at all get one readable line.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, failed_with_one_line, run, succeeded, write};

const T: Duration = Duration::from_secs(120);

/// Addresses asked about per database.
const ADDRESSES: usize = 3000;

/// Writes a database of `layout` (see the oracle's documentation) into
/// `dir`, and returns its path and the oracle's answers.
fn oracle(dir: &Path, layout: &str, seed: u64) -> (PathBuf, Vec<String>) {
    let path = dir.join(format!("{layout}.mmdb"));
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peer/mmdb_oracle.py"
        ))
        .arg(layout)
        .arg(&path)
        .arg(seed.to_string())
        .arg(ADDRESSES.to_string());
    let output = run(&mut command, T);
    succeeded(&output);
    (path, lines(&output.stdout))
}

fn lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Imports `files` into the server, then asks `geo lookup` about
/// `addresses`.
fn import_and_look_up<'a>(
    server: &Server,
    files: &[PathBuf],
    addresses: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    succeeded(&run(
        server.command().args(["geo", "import"]).args(files),
        T,
    ));
    let output = run(server.command().args(["geo", "lookup"]).args(addresses), T);
    succeeded(&output);
    lines(&output.stdout)
}

/// The address a lookup line is about.
fn address(line: &str) -> &str {
    line.split('\t').next().unwrap()
}

/// Asserts that every answer is the oracle's, listing the first that are
/// not, and that the oracle's answers are varied enough to mean something.
fn assert_same_answers(expected: &[String], answers: &[String]) {
    assert_eq!(expected.len(), answers.len(), "one answer per address");
    let wrong: Vec<String> = expected
        .iter()
        .zip(answers)
        .filter(|(expected, answer)| expected != answer)
        .map(|(expected, answer)| format!("expected {expected:?}, got {answer:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} answers differ from MaxMind's reader, first ones:\n{}",
        wrong.len(),
        expected.len(),
        wrong[..wrong.len().min(12)].join("\n")
    );
    let known = expected
        .iter()
        .filter(|l| !l.ends_with("\tunknown"))
        .count();
    assert!(
        known > expected.len() / 4 && known < expected.len(),
        "{known} of {} addresses known: too few or no unknown ones to tell anything",
        expected.len()
    );
}

#[test]
fn a_geoip2_city_database_answers_as_maxminds_reader_does() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (database, expected) = oracle(work.path(), "city", 11);
    let answers = import_and_look_up(&server, &[database], expected.iter().map(|l| address(l)));
    assert_same_answers(&expected, &answers);
    for part in ["\tGB\tEngland\tBoxford", "\tCH\tZH\t-", "\tJP\t-\tTokyo"] {
        assert!(
            expected.iter().any(|l| l.ends_with(part)),
            "no address answered {part:?}"
        );
    }
    assert!(expected.iter().any(|l| l.starts_with("::ffff:")));
    assert!(
        expected
            .iter()
            .any(|l| address(l).contains("::") && !l.starts_with("::ffff:"))
    );
}

#[test]
fn the_aliases_of_an_ipv6_databases_ipv4_subtree_are_not_imported_as_ipv6_ranges() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (database, expected) = oracle(work.path(), "city", 12);
    // IPv4 addresses with a place, as the alias blocks and ::/96 hold them,
    // where MaxMind's reader finds the same record (the oracle checks that).
    let known_ipv4: Vec<std::net::Ipv4Addr> = expected
        .iter()
        .filter(|l| !l.ends_with("\tunknown"))
        .filter_map(|l| address(l).parse().ok())
        .take(20)
        .collect();
    assert_eq!(known_ipv4.len(), 20);
    let aliased: Vec<String> = known_ipv4
        .iter()
        .flat_map(|ip| {
            let ip = u128::from(u32::from(*ip));
            [
                0x2001_0000 << 96 | ip << 64, // Teredo
                0x2002 << 112 | ip << 80,     // 6to4
                ip,                           // IPv4-compatible, ::/96
            ]
        })
        .map(|ip| std::net::Ipv6Addr::from(ip).to_string())
        .collect();
    let answers = import_and_look_up(&server, &[database], aliased.iter().map(String::as_str));
    let expected: Vec<String> = aliased.iter().map(|a| format!("{a}\tunknown")).collect();
    assert_eq!(answers, expected);
}

#[test]
fn ip_location_db_flat_databases_gzipped_or_not_answer_as_maxminds_reader_does() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (country_v4, mut expected) = oracle(work.path(), "flat-country", 21);
    let (city_v6, expected_v6) = oracle(work.path(), "flat-city", 22);
    expected.extend(expected_v6);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&std::fs::read(&country_v4).unwrap())
        .unwrap();
    let country_v4_gz = write(work.path(), "country.gz", &gzip.finish().unwrap());
    let answers = import_and_look_up(
        &server,
        &[country_v4_gz, city_v6],
        expected.iter().map(|l| address(l)),
    );
    assert_same_answers(&expected, &answers);
    assert!(
        expected
            .iter()
            .any(|l| l.ends_with("\tPL\tLesser Poland\tKraków"))
    );
    assert!(expected.iter().any(|l| l.ends_with("\tUS\t-\tSpringfield")));
}

#[test]
fn an_ipv6_record_holding_the_ipv4_subtree_answers_for_every_ipv4_address() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (database, expected) = oracle(work.path(), "ipv4-in-one-record", 31);
    let answers = import_and_look_up(&server, &[database], expected.iter().map(|l| address(l)));
    assert_same_answers(&expected, &answers);
    assert!(
        expected
            .iter()
            .any(|l| address(l).parse::<std::net::Ipv4Addr>().is_ok() && l.ends_with("\tAQ\t-\t-"))
    );
}

#[test]
fn files_that_are_no_location_table_get_one_readable_line_naming_the_formats() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (asn, _) = oracle(work.path(), "asn", 41);
    let mut tar = vec![0; 1024];
    tar[..21].copy_from_slice(b"GeoLite2-City.mmdb\0\0\0");
    tar[257..263].copy_from_slice(b"ustar\0");
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write(work.path(), "garbage.bin", &common::noise(100_000, 5)),
            "not a location table: binary data; expected range CSV, GeoLite2 CSV, GeoLiteCity CSV or MaxMind .mmdb",
        ),
        (
            write(
                work.path(),
                "picture.csv",
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89",
            ),
            "not a location table: binary data; expected range CSV",
        ),
        (
            write(work.path(), "people.csv", b"name,age\nbob,3\n"),
            "not a location table: expected range CSV, GeoLite2 CSV, GeoLiteCity CSV or MaxMind .mmdb",
        ),
        (
            write(work.path(), "GeoLite2-City.tar", &tar),
            "not a location table: a tar archive (extract the .mmdb from it)",
        ),
        (
            asn,
            "a MaxMind DB of type \"GeoLite2-ASN\" with no country in any record, not a location table",
        ),
    ];
    for (file, expected) in cases {
        let output = run(server.command().args(["geo", "import"]).arg(&file), T);
        let line = failed_with_one_line(&output);
        let name = file.display().to_string();
        assert!(
            line.contains(&format!("{name}: {expected}")),
            "{line:?} should name {name} and say {expected:?}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()),
            "{line:?} has control characters"
        );
        assert!(
            line.len() < 400,
            "{line:?} is too long to be a readable line"
        );
    }
}
