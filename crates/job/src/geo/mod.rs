//! The IP location table: which place (country, region, city) an address is
//! in, held in memory by every worker that counts visits.
//!
//! A table is two lists of inclusive address ranges, one for IPv4 (`u32`)
//! and one for IPv6 (`u128`), each sorted by start and free of overlaps, so
//! the range holding an address is the last one starting at or before it.
//! Each range names its place by a `u32` id into a list of distinct places,
//! so a worker can count per id and turn ids into names once per file.
//! Lookups go through a radix index over the address bits (`index.rs`;
//! `benches/lookup.rs` measures it); IPv4-mapped IPv6 addresses are looked
//! up as the IPv4 they carry.
//!
//! Tables come from files ([`GeoTable::from_files`], formats in `parse.rs`),
//! from the built-in country table ([`GeoTable::builtin`], `data/geo/`), or
//! from Redis ([`load`]), where [`store`] keeps them in the compact binary
//! form of `binary.rs`.

mod binary;
mod build;
pub mod classic;
mod index;
mod mmdb;
mod names;
mod parse;
mod storage;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use index::RangeIndex;
use redistribute_transfer::error::{Error, Result};

pub use names::country_name;
pub use storage::{current_version, load, store};

/// Where an address is, as precisely as the table that said so knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Place {
    /// ISO 3166-1 alpha-2 code such as `AU`; empty when the source knows
    /// only a continent.
    pub country: String,
    /// First-level subdivision (state, province); empty in country tables.
    pub region: String,
    /// Empty in country tables, and where the source knows no city.
    pub city: String,
}

impl fmt::Display for Place {
    /// `CC/region/city`, without trailing empty parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.country)?;
        if !self.region.is_empty() || !self.city.is_empty() {
            write!(f, "/{}", self.region)?;
        }
        if !self.city.is_empty() {
            write!(f, "/{}", self.city)?;
        }
        Ok(())
    }
}

/// An in-memory IP location table. See the module documentation.
#[derive(PartialEq, Eq)]
pub struct GeoTable {
    places: Vec<Place>,
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    /// What lookups search, built from `v4` and `v6` (see `index.rs`).
    v4_index: RangeIndex<u32>,
    v6_index: RangeIndex<u128>,
}

/// The built-in country table in the binary form of `binary.rs`,
/// zstd-compressed: made from the CSVs of `data/geo/` by `cargo run -p
/// redistribute-job --example builtin_table`, and checked against them by a test. Loading
/// it takes a fifth of the time parsing the CSVs did (50 against 240 ms),
/// which every worker paid at start.
const BUILTIN: &[u8] = include_bytes!("../../data/geo/country.bin.zst");

impl GeoTable {
    /// Reads a table from files in any of the formats `parse.rs` describes,
    /// gzip'd or not, detected by content. Files that refer to each other
    /// (blocks and locations) may come in any order; where ranges overlap,
    /// the narrowest wins, then the one read last (see `build.rs`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a file cannot be read; [`Error::Usage`] naming the
    /// file and line of the first row that cannot be understood, or a file
    /// in none of the formats.
    pub fn from_files(paths: &[PathBuf]) -> Result<GeoTable> {
        if paths.is_empty() {
            return Err(Error::Usage("no location table files given".into()));
        }
        let mut inputs = Vec::with_capacity(paths.len());
        for path in paths {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            inputs.push(parse::Input {
                name: path.clone(),
                data: Box::new(std::io::BufReader::new(file)),
            });
        }
        parse::read(inputs)
    }

    /// The IP-to-country table built into the binary (ip-location-db
    /// `geo-whois-asn-country`, CC BY 4.0; see `data/geo/README.md`), for
    /// when nothing was imported.
    ///
    /// # Errors
    ///
    /// Only if the embedded data is damaged, which the tests rule out.
    pub fn builtin() -> Result<GeoTable> {
        let damaged = |reason: String| Error::Protocol {
            key: "the built-in table (data/geo/country.bin.zst)".into(),
            reason,
        };
        let bytes = zstd::decode_all(BUILTIN).map_err(|e| damaged(e.to_string()))?;
        GeoTable::from_bytes(&bytes)
    }

    /// The built-in table made from its sources, the CSVs of `data/geo/`:
    /// what `data/geo/country.bin.zst` must hold.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::Usage`] as for [`GeoTable::from_files`].
    pub fn builtin_from_sources(data_dir: &std::path::Path) -> Result<GeoTable> {
        GeoTable::from_files(&[
            data_dir.join("country-ipv4.csv.gz"),
            data_dir.join("country-ipv6.csv.gz"),
        ])
    }

    /// Puts checked parts together and builds the lookup indexes.
    fn from_parts(places: Vec<Place>, v4: Ranges<u32>, v6: Ranges<u128>) -> GeoTable {
        GeoTable {
            places,
            v4_index: RangeIndex::new(&v4),
            v6_index: RangeIndex::new(&v6),
            v4,
            v6,
        }
    }

    /// The id of the place of the IPv4 address `ip` (as a big-endian
    /// integer, `u32::from(Ipv4Addr)`), or `None` if no range holds it.
    pub fn lookup_v4(&self, ip: u32) -> Option<u32> {
        self.v4_index.find(ip)
    }

    /// The id of the place of the IPv6 address `ip` (`u128::from(Ipv6Addr)`),
    /// or `None`. IPv4-mapped addresses are not translated here; see
    /// [`GeoTable::lookup`].
    pub fn lookup_v6(&self, ip: u128) -> Option<u32> {
        self.v6_index.find(ip)
    }

    /// The place of any address, IPv4-mapped IPv6 (`::ffff:1.2.3.4`) looked
    /// up as IPv4, or `None` if no range holds it.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Place> {
        let id = match ip {
            IpAddr::V4(v4) => self.lookup_v4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(v4.into()),
                None => self.lookup_v6(v6.into()),
            },
        };
        id.map(|id| self.place(id))
    }

    /// The place with this id.
    ///
    /// # Panics
    ///
    /// If `id` did not come from this table.
    pub fn place(&self, id: u32) -> &Place {
        &self.places[id as usize]
    }

    /// Every distinct place, indexed by id.
    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// How many IPv4 ranges the table holds.
    pub fn ipv4_range_count(&self) -> usize {
        self.v4.starts.len()
    }

    /// How many IPv6 ranges the table holds.
    pub fn ipv6_range_count(&self) -> usize {
        self.v6.starts.len()
    }

    /// The compact binary form stored in Redis (layout in `binary.rs`).
    pub fn to_bytes(&self) -> Vec<u8> {
        binary::encode(self)
    }

    /// Reads what [`GeoTable::to_bytes`] wrote, checking every invariant a
    /// lookup relies on.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] when the bytes are not such a table.
    pub fn from_bytes(bytes: &[u8]) -> Result<GeoTable> {
        binary::decode(bytes)
            .map_err(|reason| Error::Usage(format!("not a location table: {reason}")))
    }
}

impl fmt::Debug for GeoTable {
    /// Counts only: a full table is hundreds of thousands of ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoTable")
            .field("places", &self.places.len())
            .field("ipv4_ranges", &self.ipv4_range_count())
            .field("ipv6_ranges", &self.ipv6_range_count())
            .finish()
    }
}

/// An IPv4 (`u32`) or IPv6 (`u128`) address as an integer: what range
/// handling needs of both.
trait Address:
    Copy
    + Ord
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Shl<u32, Output = Self>
    + From<u8>
{
    /// Its size in the binary form.
    const BYTES: usize;
    /// Its width.
    const BITS: u32;
    /// A small number (an index radix slot) as an address.
    fn from_index(index: usize) -> Self;
    /// The `width` bits of it above the lowest `shift`, as an index.
    fn bits(self, shift: u32, width: u32) -> usize;
    /// The address after this one, `None` after the last.
    fn checked_next(self) -> Option<Self>;
    /// Reads exactly [`Address::BYTES`] little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut Vec<u8>);
    /// As people write it, for messages.
    fn show(self) -> String;
}

impl Address for u32 {
    const BYTES: usize = 4;
    const BITS: u32 = 32;
    fn from_index(index: usize) -> Self {
        index as u32
    }
    fn bits(self, shift: u32, width: u32) -> usize {
        (self >> shift & ((1 << width) - 1)) as usize
    }
    fn checked_next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn from_le(bytes: &[u8]) -> Self {
        u32::from_le_bytes(bytes.try_into().expect("callers pass exactly BYTES"))
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn show(self) -> String {
        std::net::Ipv4Addr::from(self).to_string()
    }
}

impl Address for u128 {
    const BYTES: usize = 16;
    const BITS: u32 = 128;
    fn from_index(index: usize) -> Self {
        index as u128
    }
    fn bits(self, shift: u32, width: u32) -> usize {
        (self >> shift & ((1 << width) - 1)) as usize
    }
    fn checked_next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn from_le(bytes: &[u8]) -> Self {
        u128::from_le_bytes(bytes.try_into().expect("callers pass exactly BYTES"))
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn show(self) -> String {
        std::net::Ipv6Addr::from(self).to_string()
    }
}

/// Inclusive ranges sorted by start, not overlapping, as parallel arrays:
/// the search reads only `starts`, which keeps more of it in cache.
#[derive(PartialEq, Eq)]
struct Ranges<A> {
    starts: Vec<A>,
    ends: Vec<A>,
    places: Vec<u32>,
}

impl<A: Address> Ranges<A> {
    /// The place of the range holding `ip` by a plain binary search: what
    /// the index must agree with.
    #[cfg(test)]
    fn find(&self, ip: A) -> Option<u32> {
        let candidate = self
            .starts
            .partition_point(|&start| start <= ip)
            .checked_sub(1)?;
        (ip <= self.ends[candidate]).then(|| self.places[candidate])
    }

    /// Whether the ranges keep the invariants lookups rely on
    /// and name only places `0..places`.
    fn check(&self, places: usize) -> Result<(), String> {
        let len = self.starts.len();
        if self.ends.len() != len || self.places.len() != len {
            return Err("range arrays of different lengths".into());
        }
        for i in 0..len {
            let (start, end) = (self.starts[i], self.ends[i]);
            if start > end {
                return Err(format!(
                    "range {}-{} ends before it starts",
                    start.show(),
                    end.show()
                ));
            }
            if i > 0 && self.ends[i - 1] >= start {
                return Err(format!(
                    "ranges overlap or are out of order at {}",
                    start.show()
                ));
            }
            if self.places[i] as usize >= places {
                return Err(format!(
                    "range {} names place {} of {places}",
                    start.show(),
                    self.places[i]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
