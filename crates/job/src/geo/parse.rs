//! Reading location tables from files, gzip'd or not, in four formats told
//! apart by content (gzip by its magic bytes, MaxMind DB by its metadata
//! marker, CSV formats by their first rows), because downloaded files are
//! often renamed:
//!
//! - **Range CSV**, no header: `start,end,country`, addresses dotted IPv4,
//!   plain integers (IPv4) or IPv6, as ip-location-db publishes them.
//! - **MaxMind GeoLite2 CSV**, City or Country: `*-Blocks-IPv4.csv` and
//!   `*-Blocks-IPv6.csv` (header `network,geoname_id,...`, CIDR networks)
//!   plus `*-Locations-<locale>.csv` (header `geoname_id,locale_code,...`).
//!   A block's place is its `geoname_id`, or where that is empty its
//!   `registered_country_geoname_id`; blocks with neither are left out, so
//!   their addresses are unknown. The region is `subdivision_1_name`, or its
//!   ISO code when the name is empty.
//! - **The book's GeoLiteCity CSV**: `GeoLiteCity-Blocks.csv` (a copyright
//!   line, header `startIpNum,endIpNum,locId`, quoted integers) plus
//!   `GeoLiteCity-Location.csv` (copyright line, header
//!   `locId,country,region,city,...`, latin-1).
//! - **MaxMind DB** (`.mmdb`): GeoIP2 and GeoLite2 City and Country, DB-IP
//!   and ip-location-db builds, read whole; see `mmdb.rs`.
//!
//! A file that starts with control bytes is binary: it must be a MaxMind
//! DB. A text file must have a header above, or a first field that looks
//! like an address (range CSV). Anything else is refused in one line that
//! names the formats accepted, never quoting what it holds.
//!
//! Location files are read before block files, whatever order they come in,
//! so a block can be resolved as soon as it is read. Any row that cannot be
//! understood stops the import with its file and line: a table with holes
//! would quietly count visitors as unknown.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use flate2::bufread::MultiGzDecoder;

use super::GeoTable;
use super::Place;
use super::build::TableBuilder;
use super::mmdb;

mod fields;
use fields::{Ip, Row, add_range, address, latin1, location_id, looks_like_address, network, text};
use redistribute_transfer::error::{Error, Result};

/// One file to read, by name (for messages) and content.
pub(super) struct Input<'a> {
    pub name: PathBuf,
    pub data: Box<dyn BufRead + 'a>,
}

/// Reads every input into one table.
pub(super) fn read(inputs: Vec<Input<'_>>) -> Result<GeoTable> {
    let mut builder = TableBuilder::default();
    let mut opened = Vec::with_capacity(inputs.len());
    for input in inputs {
        opened.push(detect(input)?);
    }
    opened.sort_by_key(|file| !file.is_locations());
    let mut locations = Locations::default();
    for file in opened {
        match file {
            Detected::Csv(file) => file.read_rows(&mut builder, &mut locations)?,
            Detected::MaxMindDb { name, data } => mmdb::read(data, &mut builder)
                .map_err(|reason| Error::Usage(format!("{}: {reason}", name.display())))?,
        }
    }
    Ok(builder.finish())
}

/// The formats [`detect`] knows, for the message refusing anything else.
const ACCEPTED: &str = "range CSV, GeoLite2 CSV, GeoLiteCity CSV or MaxMind .mmdb";

/// An input whose format is known.
enum Detected<'a> {
    /// Read row by row.
    Csv(Opened<'a>),
    /// Read whole: the tree and its records are spread over the file.
    MaxMindDb { name: PathBuf, data: Vec<u8> },
}

impl Detected<'_> {
    fn is_locations(&self) -> bool {
        matches!(self, Detected::Csv(file) if file.format.is_locations())
    }
}

/// Decompresses gzip and tells a MaxMind DB from the CSV formats.
fn detect(input: Input<'_>) -> Result<Detected<'_>> {
    let Input { name, mut data } = input;
    let gzip = data
        .fill_buf()
        .map_err(|e| Error::io(&name, e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead + '_> = if gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(data)))
    } else {
        data
    };
    let start = reader.fill_buf().map_err(|e| Error::io(&name, e))?;
    if !is_binary(start) {
        return Opened::detect(name, reader).map(Detected::Csv);
    }
    let mut whole = Vec::new();
    reader
        .read_to_end(&mut whole)
        .map_err(|e| Error::io(&name, e))?;
    if mmdb::is_database(&whole) {
        return Ok(Detected::MaxMindDb { name, data: whole });
    }
    let hint = if whole.get(257..262) == Some(b"ustar") {
        "a tar archive (extract the .mmdb from it)"
    } else if name
        .extension()
        .is_some_and(|extension| extension == "mmdb")
    {
        // The metadata a MaxMind DB ends with is missing: a download or
        // copy cut short, most likely.
        "a .mmdb without the metadata a MaxMind DB ends with (cut short? download it again)"
    } else {
        "binary data"
    };
    Err(Error::Usage(format!(
        "{}: not a location table: {hint}; expected {ACCEPTED}",
        name.display()
    )))
}

/// Whether a file starting with `start` is binary: the CSV formats hold no
/// control bytes but tab, CR and LF, while a MaxMind DB starts with its
/// search tree, whose first records are small numbers with zero bytes.
fn is_binary(start: &[u8]) -> bool {
    start
        .iter()
        .any(|&byte| byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r'))
}

/// What each kind of file says about a location id, by id.
#[derive(Default)]
struct Locations {
    geonames: HashMap<u32, Place>,
    legacy: HashMap<u32, Place>,
}

/// A file's format, with the columns its header put where.
enum Format {
    Ranges,
    GeoLite2Blocks {
        network: usize,
        geoname_id: usize,
        registered_country: usize,
    },
    GeoLite2Locations {
        geoname_id: usize,
        country: usize,
        region_code: Option<usize>,
        region_name: Option<usize>,
        city: Option<usize>,
    },
    LegacyBlocks,
    LegacyLocations,
}

impl Format {
    fn is_locations(&self) -> bool {
        matches!(
            self,
            Format::GeoLite2Locations { .. } | Format::LegacyLocations
        )
    }
}

/// A file whose format is known, positioned after its header.
struct Opened<'a> {
    name: PathBuf,
    format: Format,
    reader: Box<dyn BufRead + 'a>,
    /// The last line read, reused for every line.
    line: Vec<u8>,
    /// The row read last.
    row: Row,
    /// Whether `row` is data not handled yet, read while detecting a
    /// headerless format.
    row_pending: bool,
}

impl<'a> Opened<'a> {
    /// Reads the header of a text file, or its first row when that looks
    /// like a range CSV's.
    fn detect(name: PathBuf, reader: Box<dyn BufRead + 'a>) -> Result<Self> {
        let mut file = Opened {
            name,
            format: Format::Ranges,
            reader,
            line: Vec::new(),
            row: Row::default(),
            row_pending: false,
        };
        if !file.next_row()? {
            return Err(file.not_a_table("an empty file"));
        }
        if file.row.get(0).starts_with(b"Copyright") && !file.next_row()? {
            return Err(file.not_a_table("a copyright line and nothing else"));
        }
        let header = &file.row;
        file.format = match header.get(0) {
            b"network" => Format::GeoLite2Blocks {
                network: file.column("network")?,
                geoname_id: file.column("geoname_id")?,
                registered_country: file.column("registered_country_geoname_id")?,
            },
            b"geoname_id" => Format::GeoLite2Locations {
                geoname_id: file.column("geoname_id")?,
                country: file.column("country_iso_code")?,
                region_code: header.column("subdivision_1_iso_code"),
                region_name: header.column("subdivision_1_name"),
                city: header.column("city_name"),
            },
            b"startIpNum" => Format::LegacyBlocks,
            b"locId" => Format::LegacyLocations,
            first if looks_like_address(first) => {
                file.row_pending = true;
                Format::Ranges
            }
            _ => {
                return Err(Error::Usage(format!(
                    "{}: not a location table: expected {ACCEPTED}",
                    file.name.display()
                )));
            }
        };
        Ok(file)
    }

    /// Reads the next line that is not blank into `row`; false at the end.
    fn next_row(&mut self) -> Result<bool> {
        loop {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(&self.name, e))?;
            if read == 0 {
                return Ok(false);
            }
            self.row.line += 1;
            let mut line = self.line.trim_ascii_end();
            if self.row.line == 1 {
                // Spreadsheet programs start UTF-8 files with a byte order mark.
                line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
            }
            if !line.is_empty() {
                self.row.split(line);
                return Ok(true);
            }
        }
    }

    /// Where the header in `row` has a column this format cannot do without.
    fn column(&self, name: &str) -> Result<usize> {
        self.row
            .column(name)
            .ok_or_else(|| self.error(format!("header has no {name} column")))
    }

    /// An error about the row read last.
    fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Usage(format!(
            "{}:{}: {reason}",
            self.name.display(),
            self.row.line
        ))
    }

    fn not_a_table(&self, what: &str) -> Error {
        Error::Usage(format!(
            "{}: {what}, not a location table",
            self.name.display()
        ))
    }

    fn read_rows(mut self, builder: &mut TableBuilder, locations: &mut Locations) -> Result<()> {
        let mut more = self.row_pending || self.next_row()?;
        while more {
            self.understand_row(builder, locations)
                .map_err(|reason| self.error(reason))?;
            more = self.next_row()?;
        }
        Ok(())
    }

    /// Adds what one row says to `builder` or `locations`.
    fn understand_row(
        &self,
        builder: &mut TableBuilder,
        locations: &mut Locations,
    ) -> Result<(), String> {
        match self.format {
            Format::Ranges => self.range_row(builder),
            Format::GeoLite2Blocks {
                network,
                geoname_id,
                registered_country,
            } => {
                let columns = [network, geoname_id, registered_country];
                self.geolite2_block_row(builder, locations, columns)
            }
            Format::GeoLite2Locations {
                geoname_id,
                country,
                region_code,
                region_name,
                city,
            } => {
                let optional = |column: Option<usize>| match column {
                    Some(i) => text(self.row.get(i)),
                    None => Ok(""),
                };
                let region = match optional(region_name)? {
                    "" => optional(region_code)?,
                    name => name,
                };
                let place = Place {
                    country: text(self.row.get(country))?.to_owned(),
                    region: region.to_owned(),
                    city: optional(city)?.to_owned(),
                };
                let id = location_id(self.row.get(geoname_id))?;
                locations.geonames.insert(id, place);
                Ok(())
            }
            Format::LegacyBlocks => self.legacy_block_row(builder, locations),
            Format::LegacyLocations => {
                let row = &self.row;
                if row.len() < 4 {
                    return Err("expected locId,country,region,city,...".into());
                }
                let place = Place {
                    country: latin1(row.get(1)),
                    region: latin1(row.get(2)),
                    city: latin1(row.get(3)),
                };
                locations.legacy.insert(location_id(row.get(0))?, place);
                Ok(())
            }
        }
    }

    /// `start,end,country`: a range of the book's CSV.
    fn range_row(&self, builder: &mut TableBuilder) -> Result<(), String> {
        let row = &self.row;
        if row.len() < 3 {
            let line = self.line.trim_ascii_end();
            return Err(format!(
                "expected start,end,country (or a GeoLite2 or GeoLiteCity header), got {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ));
        }
        let place = builder.country_id(text(row.get(2))?.trim());
        add_range(builder, address(row.get(0))?, address(row.get(1))?, place)
    }

    /// A GeoLite2 block: a network and the location it is in, or else the
    /// country it is registered to; `columns` are where the network, the
    /// geoname id and the registered country's id are.
    fn geolite2_block_row(
        &self,
        builder: &mut TableBuilder,
        locations: &Locations,
        [network_column, geoname_id, registered_country]: [usize; 3],
    ) -> Result<(), String> {
        let row = &self.row;
        let (start, end) = network(text(row.get(network_column))?)?;
        let id = match (row.get(geoname_id), row.get(registered_country)) {
            (b"", b"") => return Ok(()),
            (b"", id) | (id, _) => location_id(id)?,
        };
        let place = locations.geonames.get(&id).ok_or_else(|| {
            format!("geoname_id {id} is in no *-Locations-*.csv given with this file")
        })?;
        let place = builder.place_id(place);
        add_range(builder, start, end, place)
    }

    /// A GeoLiteCity block: `start,end,locId`, IPv4 only.
    fn legacy_block_row(
        &self,
        builder: &mut TableBuilder,
        locations: &Locations,
    ) -> Result<(), String> {
        let row = &self.row;
        let start = address(row.get(0))?;
        if let Ip::V6(_) = start {
            return Err("GeoLiteCity blocks hold IPv4 addresses only".into());
        }
        let id = location_id(row.get(2))?;
        let place = locations.legacy.get(&id).ok_or_else(|| {
            format!("locId {id} is in no GeoLiteCity-Location.csv given with this file")
        })?;
        let place = builder.place_id(place);
        add_range(builder, start, address(row.get(1))?, place)
    }
}
