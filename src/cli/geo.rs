//! `redistribute geo import` and `geo lookup`: location tables.

use redistribute_job::aggregate::UNKNOWN;
use redistribute_job::geo::{self, GeoTable};
use redistribute_transfer::redis::Redis;
use redistribute_transfer::{Error, Result};

use super::args::{GeoImportArgs, GeoLookupArgs};

pub async fn import(url: &str, prefix: &str, args: GeoImportArgs) -> Result<()> {
    let redis = Redis::connect(url).await?;
    if args.classic {
        let [blocks, locations] = args.files.as_slice() else {
            return Err(Error::Usage(
                "geo import --classic takes GeoLiteCity-Blocks.csv and GeoLiteCity-Location.csv"
                    .into(),
            ));
        };
        let imported = geo::classic::import(&redis, blocks, locations).await?;
        tracing::info!(
            "loaded {} address ranges into ip2cityid: and {} locations into cityid2city:",
            imported.ranges,
            imported.cities
        );
        return Ok(());
    }
    let table = GeoTable::from_files(&args.files)?;
    let version = geo::store(&redis, prefix, &table).await?;
    tracing::info!(
        "stored location table version {version}: {} IPv4 and {} IPv6 ranges, {} places; running jobs switch to it between files",
        table.ipv4_range_count(),
        table.ipv6_range_count(),
        table.places().len()
    );
    Ok(())
}

pub async fn lookup(url: &str, prefix: &str, args: GeoLookupArgs) -> Result<()> {
    let table = if !args.table.is_empty() {
        GeoTable::from_files(&args.table)?
    } else {
        let redis = Redis::connect(url).await?;
        match geo::load(&redis, prefix).await? {
            Some((_, table)) => table,
            None => GeoTable::builtin()?,
        }
    };
    for text in &args.addresses {
        let address: std::net::IpAddr = text
            .trim()
            .parse()
            .map_err(|_| Error::Usage(format!("{text:?} is not an IPv4 or IPv6 address")))?;
        match table.lookup(address) {
            Some(place) => println!(
                "{text}\t{}\t{}\t{}",
                or_dash(&place.country),
                or_dash(&place.region),
                or_dash(&place.city)
            ),
            None => println!("{text}\t{}", UNKNOWN),
        }
    }
    Ok(())
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
