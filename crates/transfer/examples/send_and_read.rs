//! Send a file through Redis and read it back as lines, with the library
//! alone (no command-line dependencies):
//!
//! ```sh
//! cargo run --package redistribute-transfer --example send_and_read -- [FILE]
//! ```
//!
//! Uses the Redis at `$REDIS_URL`, or starts a private `redis-server` when
//! the variable is unset. Sends FILE (this example's own source by default)
//! on a work queue, receives it as a worker, counts its lines, and
//! acknowledges it, after which its data is gone from Redis.

use std::path::PathBuf;

use redistribute_transfer::redis::{LocalRedis, LocalRedisOptions};
use redistribute_transfer::{
    Audience, Decode, FileSource, ReceiveOptions, Receiver, SendOptions, Sender,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(file!()));
    let _private;
    let url = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let server = LocalRedis::start(LocalRedisOptions::default())?;
            let url = server.url();
            _private = server;
            url
        }
    };
    let channel = format!("example-{}", std::process::id());

    let sender = Sender::open(&url, SendOptions::new(&channel, Audience::Workers)).await?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    sender.send_file(&path, &name).await?;
    sender.finish().await?;

    let mut receiver = Receiver::connect(&url, ReceiveOptions::new(&channel, "worker-1")).await?;
    while let Some(mut file) = receiver.next_file().await? {
        let mut lines = file.lines(Decode::Auto);
        let (mut count, mut longest) = (0u64, 0usize);
        while let Some(line) = lines.next_segment().await? {
            count += 1;
            longest = longest.max(line.len());
        }
        drop(lines);
        println!(
            "{}: {count} lines, the longest {longest} bytes",
            file.name()
        );
        receiver.ack(file).await?;
    }
    sender.wait_until_done().await?;
    println!("every file acknowledged; the channel holds no data any more");
    Ok(())
}
