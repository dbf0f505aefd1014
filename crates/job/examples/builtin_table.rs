//! Makes `data/geo/country.bin.zst`, the built-in table the binary
//! embeds, from the CSVs next to it: run it after replacing them
//! (`cargo run --release --package redistribute-job --example builtin_table`). A test fails while the
//! two disagree.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/geo");
    let table = redistribute_job::geo::GeoTable::builtin_from_sources(&dir)?;
    let compressed = zstd::encode_all(&table.to_bytes()[..], 19)?;
    std::fs::write(dir.join("country.bin.zst"), &compressed)?;
    println!(
        "wrote data/geo/country.bin.zst: {} IPv4 and {} IPv6 ranges, {} bytes",
        table.ipv4_range_count(),
        table.ipv6_range_count(),
        compressed.len()
    );
    Ok(())
}
