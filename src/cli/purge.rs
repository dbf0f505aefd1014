//! `redistribute purge`: delete every key of a channel.

use redistribute::Result;
use redistribute::redis::Redis;
use redistribute::transfer::purge;

use super::args::PurgeArgs;

pub async fn run(url: &str, prefix: &str, args: PurgeArgs) -> Result<()> {
    let redis = Redis::connect(url).await?;
    let deleted = purge::purge(&redis, prefix, &args.channel).await?;
    tracing::info!("purged channel {}: {deleted} keys deleted", args.channel);
    Ok(())
}
