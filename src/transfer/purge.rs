//! Deleting a channel: its chunks first, then its control keys, then its
//! name from the list of channels.

use crate::error::Result;
use crate::files::names;
use crate::redis::Redis;
use crate::transfer::protocol::Keys;

/// Deletes every key of a channel. Returns how many keys were deleted.
pub async fn purge(redis: &Redis, prefix: &str, name: &str) -> Result<u64> {
    names::check_channel_name(name)?;
    names::check_prefix(prefix)?;
    let keys = Keys::new(prefix, name);
    let mut deleted = 0;
    for pattern in [keys.chunk_pattern(), keys.control_pattern()] {
        for key in redis.scan("scanning keys", &pattern).await? {
            deleted += redis
                .query::<u64>("deleting keys", redis::cmd("UNLINK").arg(&key))
                .await?;
        }
    }
    redis
        .query::<()>(
            "unregistering the channel",
            redis::cmd("SREM").arg(keys.channels()).arg(name),
        )
        .await?;
    Ok(deleted)
}
