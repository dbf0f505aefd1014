//! `redistribute retry`: offer parked files again.

use redistribute_transfer::native::retry;
use redistribute_transfer::redis::Redis;
use redistribute_transfer::text::counted;
use redistribute_transfer::{Error, Result};

use super::args::RetryArgs;

pub async fn run(url: &str, prefix: &str, args: RetryArgs) -> Result<()> {
    let redis = Redis::connect(url).await?;
    let outcome = retry::retry(&redis, prefix, &args.channel, &args.files).await?;
    let offered = outcome.files.iter().filter(|f| f.offered).count();
    for file in &outcome.files {
        if file.offered {
            tracing::info!("{}: offered again to {}", file.file, file.receiver);
        } else {
            tracing::warn!(
                "{}: sent from a stream, which cannot be read again; it stays parked (send it again)",
                file.file
            );
        }
    }
    if outcome.files.is_empty() && args.files.is_empty() {
        tracing::info!("channel {} has no parked files", args.channel);
    } else if offered > 0 {
        match &outcome.sender {
            Some(sender) => tracing::info!(
                "{} offered again; the running sender ({sender}) uploads them",
                counted(offered as u64, "file", "files")
            ),
            None => tracing::info!(
                "{} offered again; no sender is running: run the same `redistribute send` again to upload them",
                counted(offered as u64, "file", "files")
            ),
        }
    }
    if !outcome.not_parked.is_empty() {
        return Err(Error::Usage(format!(
            "not parked in channel {:?}: {} (see `redistribute status --channel {}`)",
            args.channel,
            outcome.not_parked.join(", "),
            args.channel
        )));
    }
    Ok(())
}
