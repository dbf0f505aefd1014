//! `redistribute purge`: delete every key of a channel, or only the
//! chunks of finished files it left behind.

use redistribute_transfer::Result;
use redistribute_transfer::native::purge;
use redistribute_transfer::redis::Redis;

use super::args::PurgeArgs;

pub async fn run(url: &str, prefix: &str, args: PurgeArgs) -> Result<()> {
    let redis = Redis::connect(url).await?;
    if args.stale {
        if purge::purge_stale(&redis, prefix, &args.channel)
            .await?
            .chunks
            == 0
        {
            tracing::info!("channel {} has no leftover chunks", args.channel);
        }
        return Ok(());
    }
    let deleted = purge::purge(&redis, prefix, &args.channel).await?;
    tracing::info!("purged channel {}: {deleted} keys deleted", args.channel);
    Ok(())
}
