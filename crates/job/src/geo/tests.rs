//! Each file format from small fixtures, lookups at range edges, and
//! errors; the built-in table and the binary form in `tests/built_in.rs`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use super::parse::{Input, read};
use super::*;

mod built_in;

/// A table from in-memory files, given as (name, content).
fn table(files: &[(&str, &[u8])]) -> Result<GeoTable> {
    read(
        files
            .iter()
            .map(|&(name, content)| Input {
                name: PathBuf::from(name),
                data: Box::new(content),
            })
            .collect(),
    )
}

fn place_of(table: &GeoTable, ip: &str) -> Option<String> {
    table
        .lookup(ip.parse::<IpAddr>().unwrap())
        .map(Place::to_string)
}

fn usage_message(result: Result<GeoTable>) -> String {
    match result {
        Err(Error::Usage(message)) => message,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn range_csv_accepts_dotted_integer_and_ipv6_addresses() {
    let table = table(&[(
        "ranges.csv",
        b"1.0.0.0,1.0.0.255,AU\n\
          16777472,16778239,CN\n\
          2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n",
    )])
    .unwrap();
    assert_eq!(table.ipv4_range_count(), 2);
    assert_eq!(table.ipv6_range_count(), 1);
    assert_eq!(table.places().len(), 3);
    assert_eq!(place_of(&table, "0.255.255.255"), None);
    assert_eq!(place_of(&table, "1.0.0.0").as_deref(), Some("AU"));
    assert_eq!(place_of(&table, "1.0.0.255").as_deref(), Some("AU"));
    assert_eq!(place_of(&table, "1.0.1.0").as_deref(), Some("CN"));
    assert_eq!(place_of(&table, "1.0.3.255").as_deref(), Some("CN"));
    assert_eq!(place_of(&table, "1.0.4.0"), None);
    assert_eq!(place_of(&table, "2001:200::").as_deref(), Some("JP"));
    assert_eq!(place_of(&table, "2001:200:1:2::3").as_deref(), Some("JP"));
    assert_eq!(place_of(&table, "2001:201::"), None);
    assert_eq!(
        place_of(&table, "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"),
        None
    );
}

#[test]
fn gzip_is_recognised_by_content_whatever_the_name() {
    let compressed = gzip(b"1.0.0.0,1.0.0.255,AU\r\n\r\n1.0.1.0,1.0.1.255,CN");
    let table = table(&[("renamed.csv", &compressed)]).unwrap();
    assert_eq!(place_of(&table, "1.0.0.7").as_deref(), Some("AU"));
    assert_eq!(place_of(&table, "1.0.1.7").as_deref(), Some("CN"));
}

#[test]
fn ipv4_mapped_addresses_look_up_as_ipv4() {
    let table = table(&[
        ("v4.csv", b"1.0.0.0,1.0.0.255,AU\n"),
        // A mapped range in an IPv6 file lands where mapped lookups go.
        (
            "v6.csv",
            b"::ffff:2.0.0.0,::ffff:2.0.0.255,FR\n::,::ffff,ZZ\n",
        ),
    ])
    .unwrap();
    assert_eq!(place_of(&table, "::ffff:1.0.0.1").as_deref(), Some("AU"));
    assert_eq!(place_of(&table, "2.0.0.9").as_deref(), Some("FR"));
    assert_eq!(place_of(&table, "::ffff:2.0.0.9").as_deref(), Some("FR"));
    assert_eq!(place_of(&table, "::1").as_deref(), Some("ZZ"));
    assert_eq!((table.ipv4_range_count(), table.ipv6_range_count()), (2, 1));
}

#[test]
fn ranges_spanning_many_index_buckets_are_found_from_any_of_them() {
    let table = table(&[(
        "wide.csv",
        b"0.0.0.0,0.0.0.0,AA\n\
          6.0.0.0,8.10.5.255,US\n\
          8.10.6.0,8.10.6.0,BB\n\
          200.0.0.0,255.255.255.255,CC\n",
    )])
    .unwrap();
    assert_eq!(
        table
            .lookup_v4(0)
            .map(|id| table.place(id).country.as_str()),
        Some("AA")
    );
    assert_eq!(table.lookup_v4(1), None);
    assert_eq!(place_of(&table, "7.200.1.1").as_deref(), Some("US"));
    assert_eq!(place_of(&table, "8.10.5.255").as_deref(), Some("US"));
    assert_eq!(place_of(&table, "8.10.6.0").as_deref(), Some("BB"));
    assert_eq!(place_of(&table, "8.10.6.1"), None);
    assert_eq!(place_of(&table, "255.255.255.255").as_deref(), Some("CC"));
    assert_eq!(place_of(&table, "199.255.255.255"), None);
}

const GEOLITE2_CITY_LOCATIONS: &str = "\
geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,subdivision_1_iso_code,subdivision_1_name,subdivision_2_iso_code,subdivision_2_name,city_name,metro_code,time_zone,is_in_european_union
2077456,en,OC,Oceania,AU,Australia,,,,,,,Australia/Sydney,0
2158177,en,OC,Oceania,AU,Australia,VIC,Victoria,,,Melbourne,,Australia/Melbourne,0
2657896,en,EU,Europe,CH,Switzerland,ZH,,,,\"Zürich, City\",,Europe/Zurich,0
1861060,en,AS,Asia,JP,Japan,,,,,,,Asia/Tokyo,0
";

const GEOLITE2_CITY_BLOCKS_V4: &str = "\
network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,postal_code,latitude,longitude,accuracy_radius,is_anycast
1.0.0.0/24,2158177,2077456,,0,0,3000,-37.8,144.9,1000,
1.0.1.0/32,,2657896,,0,0,,,,,
1.0.2.0/23,,,,1,0,,,,,
";

const GEOLITE2_CITY_BLOCKS_V6: &str = "\
network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,postal_code,latitude,longitude,accuracy_radius,is_anycast
2001:200::/32,1861060,1861060,,0,0,,,,,
2001:db8::1/128,2657896,2657896,,0,0,,,,,
";

/// The table the sample GeoLite2 City files make.
fn geolite2_city() -> GeoTable {
    table(&[
        (
            "GeoLite2-City-Blocks-IPv4.csv",
            GEOLITE2_CITY_BLOCKS_V4.as_bytes(),
        ),
        (
            "GeoLite2-City-Blocks-IPv6.csv",
            GEOLITE2_CITY_BLOCKS_V6.as_bytes(),
        ),
        (
            "GeoLite2-City-Locations-en.csv",
            GEOLITE2_CITY_LOCATIONS.as_bytes(),
        ),
    ])
    .unwrap()
}

#[test]
fn geolite2_city_blocks_resolve_through_locations_given_in_any_order() {
    let table = geolite2_city();
    let melbourne = table.lookup("1.0.0.200".parse().unwrap()).unwrap();
    assert_eq!(
        melbourne,
        &Place {
            country: "AU".into(),
            region: "Victoria".into(),
            city: "Melbourne".into()
        }
    );
    // No geoname_id: the registered country's location; a region name
    // missing falls back to its ISO code.
    assert_eq!(
        place_of(&table, "1.0.1.0").as_deref(),
        Some("CH/ZH/Zürich, City")
    );
    assert_eq!(place_of(&table, "1.0.1.1"), None, "a /32 is one address");
    assert_eq!(
        place_of(&table, "1.0.2.1"),
        None,
        "no location at all: unknown"
    );
    assert_eq!(place_of(&table, "2001:200:ffff::1").as_deref(), Some("JP"));
    assert_eq!(
        place_of(&table, "2001:db8::1").as_deref(),
        Some("CH/ZH/Zürich, City")
    );
    assert_eq!(
        place_of(&table, "2001:db8::2"),
        None,
        "a /128 is one address"
    );
    assert_eq!(table.places().len(), 3, "only places some block uses");
}

#[test]
fn geolite2_country_files_and_whole_space_networks() {
    let locations = "\
geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union
2921044,en,EU,Europe,DE,Germany,1
";
    let blocks_v4 = "network,geoname_id,registered_country_geoname_id\n0.0.0.0/0,2921044,\n";
    let blocks_v6 = "network,geoname_id,registered_country_geoname_id\n::/0,2921044,\n";
    let table = table(&[
        ("GeoLite2-Country-Locations-en.csv", locations.as_bytes()),
        ("v4", blocks_v4.as_bytes()),
        ("v6", blocks_v6.as_bytes()),
    ])
    .unwrap();
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert_eq!(place_of(&table, ip).as_deref(), Some("DE"), "{ip}");
    }
}

#[test]
fn the_books_geolitecity_files_with_copyright_lines_and_latin1() {
    let blocks = b"Copyright (c) 2011 MaxMind Inc.  All Rights Reserved.\n\
        startIpNum,endIpNum,locId\n\
        \"16777216\",\"16777471\",\"17\"\n\
        \"16777472\",\"16778239\",\"49\"\n";
    let mut locations = b"Copyright (c) 2011 MaxMind Inc.  All Rights Reserved.\n\
        locId,country,region,city,postalCode,latitude,longitude,metroCode,areaCode\n\
        17,\"AU\",\"07\",\"Melbourne\",\"\",-37.8139,144.9634,,\n"
        .to_vec();
    locations.extend(b"49,\"CH\",\"25\",\"Z\xfcrich\",\"\",47.3667,8.55,,\n");
    let table = table(&[
        ("GeoLiteCity-Blocks.csv", blocks),
        ("GeoLiteCity-Location.csv", &locations),
    ])
    .unwrap();
    assert_eq!(
        place_of(&table, "1.0.0.1").as_deref(),
        Some("AU/07/Melbourne")
    );
    assert_eq!(
        place_of(&table, "1.0.3.255").as_deref(),
        Some("CH/25/Zürich")
    );
    assert_eq!(place_of(&table, "1.0.4.0"), None);
}

#[test]
fn narrower_and_later_ranges_win_where_ranges_overlap() {
    let table = table(&[
        (
            "base.csv",
            b"1.0.0.0,1.0.0.255,DE
1.0.0.15,1.0.0.15,BE
1.0.1.0,1.0.1.9,US
",
        ),
        (
            "corrections.csv",
            b"1.0.1.0,1.0.1.9,FR
1.0.0.16,1.0.0.255,DE
2.0.0.0,2.0.0.255,AU
2.0.0.200,2.0.1.255,CN
",
        ),
    ])
    .unwrap();
    let cases = [
        ("1.0.0.14", "DE"),
        ("1.0.0.15", "BE"),
        ("1.0.0.16", "DE"),
        ("1.0.1.5", "FR"),
        ("2.0.0.199", "AU"),
        ("2.0.0.200", "AU"),
        ("2.0.1.0", "CN"),
    ];
    for (ip, expected) in cases {
        assert_eq!(place_of(&table, ip).as_deref(), Some(expected), "{ip}");
    }
    // DE, BE, DE again (merged with its correction), FR, AU, CN.
    assert_eq!(table.ipv4_range_count(), 6);
}

#[test]
fn a_file_given_twice_is_counted_once() {
    let ranges: &[u8] = b"1.0.0.0,1.0.0.255,AU\n2001::,2001::ff,JP\n";
    let table = table(&[("a.csv", ranges), ("again.csv", ranges)]).unwrap();
    assert_eq!((table.ipv4_range_count(), table.ipv6_range_count()), (1, 1));
}

#[test]
fn bad_rows_are_reported_with_file_and_line() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "garbage.txt",
            b"1.0.0.0,1.0.0.255,AU\nhello world\n",
            "garbage.txt:2: expected start,end,country",
        ),
        (
            "r.csv",
            b"1.0.0.0,1.0.0.x,AU\n",
            "r.csv:1: \"1.0.0.x\" is not an IP address",
        ),
        (
            "r.csv",
            b"\n\n1.0.0.9,1.0.0.1,AU\n",
            "r.csv:3: range ends before it starts",
        ),
        (
            "r.csv",
            b"1.0.0.0,2001::,AU\n",
            "r.csv:1: range starts and ends in different address families",
        ),
        (
            "r.csv",
            b"4294967296,4294967297,AU\n",
            "r.csv:1: \"4294967296\" is not an IP address",
        ),
        (
            "empty.csv",
            b"",
            "empty.csv: an empty file, not a location table",
        ),
        (
            "blocks.csv",
            b"network,geoname_id,registered_country_geoname_id\n1.0.0.1/24,1,\n",
            "blocks.csv:2: \"1.0.0.1/24\" has bits set after its /24 prefix",
        ),
        (
            "blocks.csv",
            b"network,geoname_id,registered_country_geoname_id\n1.0.0.0/33,1,\n",
            "blocks.csv:2: \"1.0.0.0/33\" is not a CIDR network",
        ),
        (
            "blocks.csv",
            b"network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,7,\n",
            "blocks.csv:2: geoname_id 7 is in no *-Locations-*.csv given with this file",
        ),
        (
            "blocks.csv",
            b"network,geoname_id\n",
            "blocks.csv:1: header has no registered_country_geoname_id column",
        ),
        (
            "GeoLiteCity-Blocks.csv",
            b"Copyright\nstartIpNum,endIpNum,locId\n\"1\",\"2\",\"x\"\n",
            "GeoLiteCity-Blocks.csv:3: \"x\" is not a location id",
        ),
    ];
    for &(name, content, expected) in cases {
        let message = usage_message(table(&[(name, content)]));
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
        assert!(!message.contains('\n'), "{message:?} is one line");
    }
}

#[test]
fn files_in_no_known_format_are_refused_in_one_line_naming_the_formats() {
    const ACCEPTED: &str = "expected range CSV, GeoLite2 CSV, GeoLiteCity CSV or MaxMind .mmdb";
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let utf16: Vec<u8> = "start,end\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut marker_too_early = b"\0\0\x01\xAB\xCD\xEFMaxMind.com".to_vec();
    marker_too_early.resize(200 * 1024, b'x');
    let cases: &[(&[u8], String)] = &[
        (&garbage, format!("binary data; {ACCEPTED}")),
        (&gzip(&garbage), format!("binary data; {ACCEPTED}")),
        (
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            format!("binary data; {ACCEPTED}"),
        ),
        (&utf16, format!("binary data; {ACCEPTED}")),
        (&marker_too_early, format!("binary data; {ACCEPTED}")),
        (b"name,age\nbob,3\n", ACCEPTED.to_owned()),
        (b"Copyright 2026\nstart,end,country\n", ACCEPTED.to_owned()),
        (b"\xff\xfe\xfd,1.0.0.0,AU\n", ACCEPTED.to_owned()),
    ];
    for (content, expected) in cases {
        let message = usage_message(table(&[("f", content)]));
        assert_eq!(message, format!("f: not a location table: {expected}"));
    }
}

#[test]
fn a_maxmind_db_cut_short_says_so() {
    let start: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let message = usage_message(table(&[("GeoLite2-City.mmdb", &start)]));
    assert_eq!(
        message,
        "GeoLite2-City.mmdb: not a location table: a .mmdb without the metadata a MaxMind DB \
         ends with (cut short? download it again); expected range CSV, GeoLite2 CSV, \
         GeoLiteCity CSV or MaxMind .mmdb"
    );
}

#[test]
fn a_damaged_maxmind_db_is_one_line_without_its_bytes() {
    let mut damaged = vec![0, 0, 1, 0, 0, 2];
    damaged.extend(b"\xAB\xCD\xEFMaxMind.com\x01\x02garbage");
    let message = usage_message(table(&[("GeoLite2-City.mmdb", &damaged)]));
    assert!(
        message.starts_with("GeoLite2-City.mmdb: not a readable MaxMind DB: "),
        "{message}"
    );
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

#[test]
fn missing_files_are_io_errors_naming_the_file() {
    let error = GeoTable::from_files(&[PathBuf::from("/nonexistent/table.csv")]).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("/nonexistent/table.csv: "),
        "{error}"
    );
}
