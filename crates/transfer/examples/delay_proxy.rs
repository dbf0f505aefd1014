//! The delay proxy of the tests as a process of its own, for benchmarks
//! in any language: every segment held DELAY_MS milliseconds in each
//! direction, and each direction capped at RATE bytes/s when given.
//!
//! ```sh
//! cargo run --release --package redistribute-transfer --example delay_proxy -- \
//!     127.0.0.1:7000 127.0.0.1:6379 0.25 [RATE]
//! redis-benchmark -p 7000 -c 1 -t ping   # the round trip it really adds
//! ```
//!
//! It prints `listening on ADDRESS` once it accepts connections (give
//! port 0 for a free one) and runs until killed.

use std::net::SocketAddr;
use std::time::Duration;

use redistribute_transfer::redis::{DelayProxy, DelayProxyOptions};

const USAGE: &str = "usage: delay_proxy LISTEN UPSTREAM DELAY_MS [RATE_BYTES_PER_S]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=4).contains(&args.len()) {
        return Err(USAGE.into());
    }
    let listen: SocketAddr = args[0].parse()?;
    let upstream: SocketAddr = args[1].parse()?;
    let delay = Duration::from_secs_f64(args[2].parse::<f64>()? / 1000.0);
    let rate = args.get(3).map(|r| r.parse::<u64>()).transpose()?;
    // One thread: the proxy's cost stays small beside what it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        DelayProxy::serve(listener, upstream, DelayProxyOptions { delay, rate }).await;
        Ok(())
    })
}
