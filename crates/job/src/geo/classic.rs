//! `geo import --classic`: the book's location tables (section 5.3), filled
//! exactly as its Python does, so code that looks cities up the book's way
//! works on what we load.
//!
//! `ip2cityid:` is a sorted set with member `<locId>_<row>` (row = 0-based
//! CSV row of GeoLiteCity-Blocks.csv, copyright and header lines included)
//! and score = the range's first IPv4 address as an integer; `cityid2city:`
//! maps a location id to the JSON `[city, region, country]` that Python's
//! `json.dumps` writes, from GeoLiteCity-Location.csv read as latin-1.

use std::io::Read;
use std::path::Path;

use redistribute_transfer::classic::python_string;
use redistribute_transfer::error::{Error, Result};
use redistribute_transfer::redis::Redis;

/// The book's key names.
pub const IP_TO_CITY: &str = "ip2cityid:";
/// The book's hash from city id to `["city", "region", "country"]` JSON.
pub const CITY_TO_PLACE: &str = "cityid2city:";

/// Entries sent per `ZADD`/`HSET`.
const BATCH: usize = 1000;

/// What an import loaded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Address ranges written to `ip2cityid:`.
    pub ranges: u64,
    /// Locations written to `cityid2city:`.
    pub cities: u64,
}

/// Loads both files into Redis.
pub async fn import(redis: &Redis, blocks: &Path, locations: &Path) -> Result<Imported> {
    redistribute_transfer::classic::refuse_cluster(redis)?;
    let ranges = read_blocks(blocks)?;
    let cities = read_locations(locations)?;
    let imported = Imported {
        ranges: ranges.len() as u64,
        cities: cities.len() as u64,
    };
    for batch in ranges.chunks(BATCH) {
        let mut command = redis::cmd("ZADD");
        command.arg(IP_TO_CITY);
        for (score, member) in batch {
            command.arg(*score).arg(member);
        }
        redis.query::<()>("loading ip2cityid:", &command).await?;
    }
    for batch in cities.chunks(BATCH) {
        let mut command = redis::cmd("HSET");
        command.arg(CITY_TO_PLACE);
        for (id, place) in batch {
            command.arg(id).arg(place);
        }
        redis.query::<()>("loading cityid2city:", &command).await?;
    }
    Ok(imported)
}

/// `(score, member)` for each usable row of GeoLiteCity-Blocks.csv.
pub fn read_blocks(path: &Path) -> Result<Vec<(u64, String)>> {
    let mut ranges = Vec::new();
    for (row, record) in records(path)? {
        let start = record.first().map(Vec::as_slice).unwrap_or_default();
        let start = String::from_utf8_lossy(start);
        let score = if start.to_lowercase().contains('i') {
            None // the header, or the copyright line
        } else if start.contains('.') {
            dotted_to_score(&start)
        } else if !start.is_empty() && start.bytes().all(|b| b.is_ascii_digit()) {
            start.parse().ok()
        } else {
            None
        };
        let (Some(score), Some(city)) = (score, record.get(2)) else {
            continue;
        };
        ranges.push((score, format!("{}_{row}", latin1(city))));
    }
    Ok(ranges)
}

/// `(location id, JSON)` for each usable row of GeoLiteCity-Location.csv.
pub fn read_locations(path: &Path) -> Result<Vec<(String, String)>> {
    let mut cities = Vec::new();
    for (_, record) in records(path)? {
        if record.len() < 4 || record[0].is_empty() || !record[0].iter().all(u8::is_ascii_digit) {
            continue;
        }
        let field = |i: usize| python_string(&latin1(&record[i]));
        let place = format!("[{}, {}, {}]", field(3), field(2), field(1));
        cities.push((latin1(&record[0]), place));
    }
    Ok(cities)
}

/// The book's `ip_to_score`: each dotted part times 256, accumulated.
fn dotted_to_score(address: &str) -> Option<u64> {
    address.split('.').try_fold(0u64, |score, part| {
        Some(score * 256 + part.trim().parse::<u64>().ok()?)
    })
}

/// Bytes read as latin-1: each byte is the code point of the same value.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Every CSV record of a (possibly gzip'd) file, as raw fields, with its
/// 0-based line number: Python's `csv` counts a blank line as a row (an
/// empty one) while the `csv` crate skips it, so rows are numbered by the
/// newlines before each record's first byte.
fn records(path: &Path) -> Result<Vec<(usize, Vec<Vec<u8>>)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut input: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut data = Vec::new();
    input
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data.as_slice());
    let (mut line, mut counted_to) = (0, 0);
    let mut records = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        let mut start = record.position().map_or(counted_to, |p| p.byte() as usize);
        // The position may point at the blank lines the reader skipped.
        while matches!(data.get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        line += memchr::memchr_iter(b'\n', &data[counted_to..start]).count();
        counted_to = start;
        records.push((line, record.iter().map(<[u8]>::to_vec).collect()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_addresses_score_as_the_book_computes_them() {
        assert_eq!(dotted_to_score("1.0.0.0"), Some(16_777_216));
        assert_eq!(dotted_to_score("255.255.255.255"), Some(4_294_967_295));
        assert_eq!(dotted_to_score("1.x.0.0"), None);
    }
}
