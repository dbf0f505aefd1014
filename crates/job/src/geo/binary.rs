//! The compact form of a table kept in Redis: arrays a worker copies into
//! memory without parsing text, so loading the country table takes
//! milliseconds. All integers are little-endian:
//!
//! ```text
//! magic  "RDGEOTBL"            8 bytes
//! format version (1)           u32
//! place count                  u32
//!   per place: country, region, city, each u32 length + UTF-8 bytes
//! IPv4 range count n           u32
//!   n starts, n ends           u32 each
//!   n place ids                u32 each
//! IPv6 range count m           u32
//!   m starts, m ends           u128 each
//!   m place ids                u32 each
//! ```
//!
//! Decoding checks everything a lookup relies on (order, no overlaps, place
//! ids in bounds), so a damaged or foreign value is refused, not trusted.

use super::{Address, GeoTable, Place, Ranges};

const MAGIC: &[u8; 8] = b"RDGEOTBL";
const FORMAT_VERSION: u32 = 1;

pub(super) fn encode(table: &GeoTable) -> Vec<u8> {
    let ranges = 12 * table.v4.starts.len() + 36 * table.v6.starts.len();
    let mut out = Vec::with_capacity(64 + ranges + 32 * table.places.len());
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_u32(&mut out, table.places.len() as u32);
    for place in &table.places {
        for text in [&place.country, &place.region, &place.city] {
            put_u32(&mut out, text.len() as u32);
            out.extend_from_slice(text.as_bytes());
        }
    }
    encode_ranges(&mut out, &table.v4);
    encode_ranges(&mut out, &table.v6);
    out
}

fn encode_ranges<A: Address>(out: &mut Vec<u8>, ranges: &Ranges<A>) {
    put_u32(out, ranges.starts.len() as u32);
    for &start in &ranges.starts {
        start.write_le(out);
    }
    for &end in &ranges.ends {
        end.write_le(out);
    }
    for &place in &ranges.places {
        put_u32(out, place);
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads what [`encode`] wrote; the error says what is wrong with `bytes`.
pub(super) fn decode(bytes: &[u8]) -> Result<GeoTable, String> {
    let mut input = Cursor(bytes);
    if input.take(MAGIC.len())? != MAGIC {
        return Err("it does not start with the table's magic bytes".into());
    }
    let version = input.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this program reads {FORMAT_VERSION}; import the table again with this version"
        ));
    }
    let count = input.count(12)?;
    let mut places = Vec::with_capacity(count);
    for _ in 0..count {
        places.push(Place {
            country: input.text()?,
            region: input.text()?,
            city: input.text()?,
        });
    }
    let v4 = decode_ranges(&mut input)?;
    let v6 = decode_ranges(&mut input)?;
    if !input.0.is_empty() {
        return Err(format!("{} unexpected bytes at the end", input.0.len()));
    }
    v4.check(places.len())?;
    v6.check(places.len())?;
    Ok(GeoTable::from_parts(places, v4, v6))
}

fn decode_ranges<A: Address>(input: &mut Cursor<'_>) -> Result<Ranges<A>, String> {
    let count = input.count(2 * A::BYTES + 4)?;
    let addresses = |input: &mut Cursor<'_>| -> Result<Vec<A>, String> {
        Ok(input
            .take(count * A::BYTES)?
            .chunks_exact(A::BYTES)
            .map(A::from_le)
            .collect())
    };
    Ok(Ranges {
        starts: addresses(input)?,
        ends: addresses(input)?,
        places: input
            .take(count * 4)?
            .chunks_exact(4)
            .map(<u32 as Address>::from_le)
            .collect(),
    })
}

/// The bytes not read yet.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.0.len() {
            return Err("it is truncated".into());
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take(4).map(<u32 as Address>::from_le)
    }

    /// A count of items at least `item_bytes` long each, refused when the
    /// rest could not hold them, so a damaged count cannot make us
    /// allocate gigabytes.
    fn count(&mut self, item_bytes: usize) -> Result<usize, String> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_bytes) > self.0.len() {
            return Err("it is truncated".into());
        }
        Ok(count)
    }

    fn text(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a place name is not UTF-8".into())
    }
}
