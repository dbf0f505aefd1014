//! Location table speed: IPv4 and IPv6 lookups per second on one thread against the
//! built-in country table, building that table, and reading its binary form
//! (alone, and fetched from a private redis-server as a worker does).
//!
//! `cargo bench --bench lookup`; every figure is the median of 5 runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use redistribute_job::geo::{self, GeoTable};
use redistribute_transfer::redis::{LocalRedis, LocalRedisOptions};

const LOOKUPS: u32 = 50_000_000;
const RUNS: usize = 5;

fn median(mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| run()).collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let builtin = median(|| {
        let started = Instant::now();
        black_box(GeoTable::builtin().unwrap());
        started.elapsed()
    });
    let table = GeoTable::builtin().unwrap();
    println!(
        "builtin(): {:.0} ms ({} IPv4 ranges, {} IPv6 ranges, {} places)",
        builtin.as_secs_f64() * 1e3,
        table.ipv4_range_count(),
        table.ipv6_range_count(),
        table.places().len()
    );

    let bytes = table.to_bytes();
    let decoding = median(|| {
        let started = Instant::now();
        black_box(GeoTable::from_bytes(&bytes).unwrap());
        started.elapsed()
    });
    println!(
        "from_bytes(): {:.1} ms for {} bytes",
        decoding.as_secs_f64() * 1e3,
        bytes.len()
    );

    // Pseudo-random addresses, so the search cannot lean on the cache the
    // way sorted input would; generating them costs ~1 ns each. IPv6 ones
    // are in 2000::/3, where all global unicast addresses are.
    let v4 = lookups(|rng| table.lookup_v4(rng.u32(..)));
    println!("lookup_v4(): {v4:.1} million random lookups/s on one thread (full table)");
    let v6 = lookups(|rng| table.lookup_v6(rng.u128(..) >> 3 | 1 << 125));
    println!("lookup_v6(): {v6:.1} million random lookups/s on one thread (2000::/3)");

    match LocalRedis::start(LocalRedisOptions::default()) {
        Ok(server) => from_redis(&server.url(), &table),
        Err(error) => println!("load from Redis: skipped, no redis-server ({error})"),
    }
}

/// Millions of `lookup` calls a second, median of [`RUNS`] runs of
/// [`LOOKUPS`] each.
fn lookups(lookup: impl Fn(&mut fastrand::Rng) -> Option<u32>) -> f64 {
    let mut seed = 1;
    let elapsed = median(|| {
        let mut rng = fastrand::Rng::with_seed(seed);
        seed += 1;
        let mut found = 0u64;
        let started = Instant::now();
        for _ in 0..LOOKUPS {
            if let Some(id) = lookup(&mut rng) {
                found += u64::from(id);
            }
        }
        let elapsed = started.elapsed();
        black_box(found);
        elapsed
    });
    f64::from(LOOKUPS) / elapsed.as_secs_f64() / 1e6
}

/// What a worker does at start: GET the current table and decode it.
fn from_redis(url: &str, table: &GeoTable) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let redis = redistribute_transfer::redis::Redis::connect(url)
            .await
            .unwrap();
        geo::store(&redis, "bench", table).await.unwrap();
        let mut loads = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            black_box(geo::load(&redis, "bench").await.unwrap().unwrap());
            loads.push(started.elapsed());
        }
        loads.sort();
        println!(
            "load from Redis (GET + from_bytes): {:.1} ms",
            loads[RUNS / 2].as_secs_f64() * 1e3
        );
    });
}
