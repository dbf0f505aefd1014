//! The built-in table, the index lookups go through, and the binary
//! form tables are kept in.

use super::*;

#[test]
fn the_built_in_table_knows_well_known_addresses() {
    let table = GeoTable::builtin().unwrap();
    // 334,373 and 216,295 rows, fewer ranges once nested ones are resolved
    // and neighbours merged (figures checked independently).
    assert_eq!(table.ipv4_range_count(), 334_306);
    assert_eq!(table.ipv6_range_count(), 216_288);
    let cases = [
        ("1.0.0.1", Some("AU")),
        ("1.0.1.1", Some("CN")),
        ("8.8.8.8", Some("US")),
        ("193.0.6.139", Some("NL")),
        ("81.2.69.160", Some("GB")),
        ("223.255.255.255", Some("AU")),
        ("::ffff:1.0.0.1", Some("AU")),
        ("2001:4860:4860::8888", Some("US")),
        ("2a00:1450:4001::1", Some("IE")),
        ("10.0.0.1", None),
        ("127.0.0.1", None),
        ("255.255.255.255", None),
        ("::1", None),
    ];
    for (ip, expected) in cases {
        assert_eq!(place_of(&table, ip).as_deref(), expected, "{ip}");
    }
}

#[test]
fn indexed_lookups_agree_with_a_plain_binary_search() {
    let table = GeoTable::builtin().unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..200_000 {
        let ip = rng.u32(..);
        let plain = table.v4.find(ip);
        assert_eq!(
            table.lookup_v4(ip),
            plain,
            "{}",
            std::net::Ipv4Addr::from(ip)
        );
    }
    // IPv6 is sparse: random addresses would nearly all miss. Try each
    // range's edges and a random address inside, over every range.
    let v6 = &table.v6;
    for i in 0..v6.starts.len() {
        let (start, end) = (v6.starts[i], v6.ends[i]);
        let inside = start + rng.u128(..=end - start);
        for ip in [
            start.wrapping_sub(1),
            start,
            inside,
            end,
            end.wrapping_add(1),
        ] {
            assert_eq!(
                table.lookup_v6(ip),
                v6.find(ip),
                "{}",
                std::net::Ipv6Addr::from(ip)
            );
        }
    }
}

#[test]
fn tables_survive_the_binary_form_unchanged() {
    let builtin = GeoTable::builtin().unwrap();
    assert_eq!(GeoTable::from_bytes(&builtin.to_bytes()).unwrap(), builtin);
    let small = geolite2_city();
    let decoded = GeoTable::from_bytes(&small.to_bytes()).unwrap();
    assert_eq!(decoded, small);
    assert_eq!(
        place_of(&decoded, "1.0.1.0").as_deref(),
        Some("CH/ZH/Zürich, City")
    );
}

#[test]
fn damaged_binary_tables_are_refused() {
    let good = table(&[("r.csv", b"1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.0.0.255,FR\n")])
        .unwrap()
        .to_bytes();
    let message = |bytes: &[u8]| GeoTable::from_bytes(bytes).unwrap_err().to_string();
    assert_eq!(message(b"GIF89a"), "not a location table: it is truncated");
    assert_eq!(
        message(b"NOTATABLEATALL"),
        "not a location table: it does not start with the table's magic bytes"
    );
    assert_eq!(
        message(&good[..good.len() - 1]),
        "not a location table: it is truncated"
    );
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        message(&longer),
        "not a location table: 1 unexpected bytes at the end"
    );
    let mut newer = good.clone();
    newer[8] = 2;
    assert!(message(&newer).contains("format version 2"));
    // Move the second range's start (2.0.0.0) below the first's end: it
    // sits before the IPv6 count, two place ids, two ends and itself.
    let second_start = good.len() - 4 - 8 - 8 - 4;
    let mut overlapping = good.clone();
    overlapping[second_start..second_start + 4]
        .copy_from_slice(&u32::from_be_bytes([1, 0, 0, 9]).to_le_bytes());
    assert_eq!(
        message(&overlapping),
        "not a location table: ranges overlap or are out of order at 1.0.0.9"
    );
}

#[test]
fn the_shipped_binary_table_is_the_one_its_csvs_make() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/geo");
    let shipped = GeoTable::builtin().unwrap();
    let made = GeoTable::builtin_from_sources(&dir).unwrap();
    assert!(
        shipped == made,
        "data/geo/country.bin.zst is not what its CSVs make: run \
         `cargo run --release --package redistribute-job --example builtin_table`"
    );
}
