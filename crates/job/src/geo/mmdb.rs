//! Reading MaxMind DB (`.mmdb`) location tables: MaxMind's GeoIP2 and
//! GeoLite2 City and Country, DB-IP's lite builds, and ip-location-db's
//! flat builds.
//!
//! The format is a binary search tree over address bits whose leaves point
//! to records, with metadata at the end of the file. The `maxminddb` crate
//! walks the tree (it is well kept, and tested against MaxMind's own test
//! databases); this module turns each network it yields into a range.
//! A file is recognised by the marker that starts the metadata
//! ([`is_database`]), never by its name.
//!
//! Records come in two layouts, and [`Record`] reads both:
//!
//! - **GeoIP2** (MaxMind, DB-IP): the country is `country.iso_code`, or
//!   where that is missing `registered_country.iso_code`; the region is
//!   the first of `subdivisions` by its English name, or its `iso_code`;
//!   the city is `city.names.en`. That is the place the GeoLite2 CSV gives.
//! - **ip-location-db**: flat `country_code`, `state1` (the region) and
//!   `city`.
//!
//! Records without a country are left out, so their addresses are unknown,
//! as with the CSV formats.
//!
//! An IPv6 database keeps its IPv4 networks under `::/96` and points
//! aliases (`::ffff:0:0/96`, `2001::/32`, `2002::/16`) at that same
//! subtree. The iteration skips the aliases, so an IPv4 network becomes one
//! IPv4 range and nothing else: IPv4-mapped addresses find it anyway (see
//! `mod.rs`), and the aliases must not come back as IPv6 ranges holding
//! every IPv4 network a second and third time.

use std::collections::HashMap;
use std::net::IpAddr;

use maxminddb::{MaxMindDbError, Reader, WithinOptions};
use serde::Deserialize;

use super::Place;
use super::build::TableBuilder;

/// What starts the metadata section of every MaxMind DB.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// The format's limit on the metadata section, marker included, so the
/// marker is within this many bytes of the end.
const METADATA_MAX_BYTES: usize = 128 * 1024;

/// Whether `file`, all of it, is a MaxMind DB: it has the metadata marker
/// near its end.
pub(super) fn is_database(file: &[u8]) -> bool {
    let tail = &file[file.len().saturating_sub(METADATA_MAX_BYTES)..];
    memchr::memmem::rfind(tail, METADATA_MARKER).is_some()
}

/// Adds every network of the database in `file` that names a country to
/// `builder`.
///
/// # Errors
///
/// Why the file cannot be used, for the caller to prefix with its name:
/// the database is damaged, a record cannot be read (naming its network),
/// or no record names a country (an ASN database, say), which would
/// import a table that knows nothing.
pub(super) fn read(file: Vec<u8>, builder: &mut TableBuilder) -> Result<(), String> {
    let unreadable = |e: MaxMindDbError| format!("not a readable MaxMind DB: {e}");
    let reader = Reader::from_source(file).map_err(unreadable)?;
    // Networks share records: each is decoded once, found by its offset.
    let mut places: HashMap<usize, Option<u32>> = HashMap::new();
    for network in reader
        .networks(WithinOptions::default())
        .map_err(unreadable)?
    {
        let network = network.map_err(unreadable)?;
        let cidr = network.network().map_err(unreadable)?;
        let Some(offset) = network.offset() else {
            continue;
        };
        let place = match places.get(&offset) {
            Some(&place) => place,
            None => {
                let record: Option<Record> = network
                    .decode()
                    .map_err(|e| format!("the record of {cidr} cannot be read: {e}"))?;
                let place = record
                    .and_then(|record| record.place())
                    .map(|place| builder.place_id(&place));
                places.insert(offset, place);
                place
            }
        };
        if let Some(place) = place {
            add_network(builder, cidr.network(), cidr.prefix(), place);
        }
    }
    if places.values().all(Option::is_none) {
        return Err(format!(
            "a MaxMind DB of type {:?} with no country in any record, not a location table",
            reader.metadata().database_type
        ));
    }
    Ok(())
}

/// The last address of the `::/96` subtree where IPv6 databases keep IPv4.
const IPV4_SUBTREE_END: u128 = u32::MAX as u128;

/// Adds the network `address/prefix` as a range. The reader names the
/// networks of the IPv4 subtree as IPv4 already. Other IPv6 networks that
/// meet `::/96` come from databases without such a subtree, where one
/// record covers it: `::/96` itself, or a wider network holding it. Either
/// way a lookup of any IPv4 address in the database ends there.
fn add_network(builder: &mut TableBuilder, address: IpAddr, prefix: u8, place: u32) {
    match address {
        IpAddr::V4(start) => {
            let start = u32::from(start);
            let host = u32::MAX.checked_shr(prefix.into()).unwrap_or(0);
            builder.add_v4(start, start | host, place);
        }
        IpAddr::V6(start) => {
            let start = u128::from(start);
            let end = start | u128::MAX.checked_shr(prefix.into()).unwrap_or(0);
            if end <= IPV4_SUBTREE_END {
                builder.add_v4(start as u32, end as u32, place);
                return;
            }
            if start == 0 {
                builder.add_v4(0, u32::MAX, place);
            }
            builder.add_v6(start, end, place);
        }
    }
}

/// The fields of a record that name its place, in either layout; the
/// others are skipped while decoding.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Named<'a>>,
    #[serde(borrow)]
    registered_country: Option<Named<'a>>,
    #[serde(borrow)]
    subdivisions: Vec<Named<'a>>,
    #[serde(borrow)]
    city: Option<Named<'a>>,
    country_code: &'a str,
    state1: &'a str,
}

/// Something a record names: a map with an ISO code and names by language
/// in the GeoIP2 layout, plain text in ip-location-db's (its `city`) and
/// in some others (a country's name).
#[derive(Deserialize)]
#[serde(untagged)]
enum Named<'a> {
    Text(&'a str),
    Map {
        #[serde(default)]
        iso_code: &'a str,
        #[serde(borrow, default)]
        names: Names<'a>,
    },
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Names<'a> {
    en: &'a str,
}

impl<'a> Named<'a> {
    fn iso_code(&self) -> &'a str {
        match self {
            Named::Map { iso_code, .. } => iso_code,
            Named::Text(_) => "",
        }
    }

    fn english_name(&self) -> &'a str {
        match self {
            Named::Map { names, .. } => names.en,
            Named::Text(name) => name,
        }
    }
}

impl<'a> Record<'a> {
    /// The place the module documentation describes, `None` without a
    /// country.
    fn place(&self) -> Option<Place> {
        let iso_code = |named: &Option<Named<'a>>| named.as_ref().map_or("", Named::iso_code);
        let country = [
            iso_code(&self.country),
            iso_code(&self.registered_country),
            self.country_code,
        ]
        .into_iter()
        .find(|code| !code.is_empty())?;
        let region = match self.subdivisions.first() {
            Some(first) if !first.english_name().is_empty() => first.english_name(),
            Some(first) => first.iso_code(),
            None => self.state1,
        };
        let city = self.city.as_ref().map_or("", Named::english_name);
        Some(Place {
            country: country.to_owned(),
            region: region.to_owned(),
            city: city.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(json: &str) -> Option<String> {
        let record: Record = serde_json::from_str(json).unwrap();
        record.place().map(|place| place.to_string())
    }

    #[test]
    fn geoip2_records_give_iso_code_english_region_and_city() {
        let city = r#"{
            "city": {"geoname_id": 2655045, "names": {"de": "Boxford (DE)", "en": "Boxford"}},
            "continent": {"code": "EU", "names": {"en": "Europe"}},
            "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
            "location": {"latitude": 51.75, "longitude": -1.25},
            "registered_country": {"iso_code": "FR"},
            "subdivisions": [
                {"iso_code": "ENG", "names": {"en": "England"}},
                {"iso_code": "WBK", "names": {"en": "West Berkshire"}}
            ]
        }"#;
        assert_eq!(place(city).as_deref(), Some("GB/England/Boxford"));
        assert_eq!(
            place(r#"{"country": {"iso_code": "DE", "names": {"en": "Germany"}}}"#).as_deref(),
            Some("DE")
        );
    }

    #[test]
    fn fallbacks_are_the_registered_country_and_the_subdivision_code() {
        let record = r#"{
            "registered_country": {"iso_code": "CH"},
            "subdivisions": [{"iso_code": "ZH", "names": {"de": "Zürich"}}],
            "city": {"names": {"de": "Zürich"}}
        }"#;
        assert_eq!(place(record).as_deref(), Some("CH/ZH"));
        let empty_code =
            r#"{"country": {"iso_code": ""}, "registered_country": {"iso_code": "AT"}}"#;
        assert_eq!(place(empty_code).as_deref(), Some("AT"));
    }

    #[test]
    fn records_without_a_country_are_left_out() {
        for record in [
            "{}",
            r#"{"continent": {"code": "EU", "names": {"en": "Europe"}}}"#,
            r#"{"autonomous_system_number": 1221, "autonomous_system_organization": "Telstra"}"#,
            r#"{"country": {"names": {"en": "Nowhere"}}, "city": {"names": {"en": "Atlantis"}}}"#,
        ] {
            assert_eq!(place(record), None, "{record}");
        }
    }

    #[test]
    fn ip_location_db_records_are_flat() {
        assert_eq!(place(r#"{"country_code": "AU"}"#).as_deref(), Some("AU"));
        let city = r#"{"city": "Melbourne", "country_code": "AU", "state1": "Victoria",
            "state2": "", "postcode": "3000", "timezone": "Australia/Melbourne",
            "latitude": -37.8, "longitude": 144.9}"#;
        assert_eq!(place(city).as_deref(), Some("AU/Victoria/Melbourne"));
        // A country given as its name, as some flat layouts do, is no code.
        let named = r#"{"country": "Australia", "country_code": "AU"}"#;
        assert_eq!(place(named).as_deref(), Some("AU"));
    }

    /// The ranges `add_network` makes, as (IPv4, IPv6) lists.
    fn ranges(address: &str, prefix: u8) -> (usize, usize) {
        let mut builder = TableBuilder::default();
        let place = builder.country_id("AU");
        add_network(&mut builder, address.parse().unwrap(), prefix, place);
        let table = builder.finish();
        (table.ipv4_range_count(), table.ipv6_range_count())
    }

    #[test]
    fn an_ipv6_network_holding_the_ipv4_subtree_holds_every_ipv4_address() {
        let mut builder = TableBuilder::default();
        let place = builder.country_id("AU");
        add_network(&mut builder, "::".parse().unwrap(), 64, place);
        let table = builder.finish();
        for ip in [
            "0.0.0.0",
            "8.8.8.8",
            "255.255.255.255",
            "::1",
            "::ffff:ffff:0",
        ] {
            assert!(table.lookup(ip.parse().unwrap()).is_some(), "{ip}");
        }
        assert_eq!(table.lookup("0:0:0:1::".parse().unwrap()), None);
        // A record for exactly ::/96 is all IPv4 and no IPv6 range.
        assert_eq!(ranges("::", 96), (1, 0));
        assert_eq!(ranges("2001:db8::", 32), (0, 1));
        assert_eq!(ranges("1.0.0.0", 24), (1, 0));
    }
}
