//! Deleting a channel: its chunks first, then its control keys, then its
//! name from the list of channels. And deleting only what a channel left
//! behind: chunks of files no receiver needs any more.

use crate::error::{Error, Result};
use crate::files::names;
use crate::native::lease;
use crate::native::protocol::Keys;
use crate::native::protocol::channel::{Channel, UNLINK_BATCH};
use crate::redis::Redis;

/// Deletes every key of a channel. Returns how many keys were deleted.
///
/// # Errors
///
/// [`Error::ChannelInUse`] while a sender, receiver or worker holds a role
/// of the channel: the keys it writes next would come back without the
/// channel around them, and it would fail in confusing ways.
pub async fn purge(redis: &Redis, prefix: &str, name: &str) -> Result<u64> {
    names::check_channel_name(name)?;
    names::check_prefix(prefix)?;
    let channel = Channel::new(redis.clone(), Keys::new(prefix, name));
    let holders = lease::holders(&channel).await?;
    if !holders.is_empty() {
        return Err(Error::ChannelInUse {
            channel: name.to_owned(),
            holders: holders.join(", "),
        });
    }
    channel.delete_every_key().await
}

/// Deletes only the chunks of finished files that channel `name` left in
/// Redis (see [`remove_leftovers`]); the channel goes on.
pub async fn purge_stale(redis: &Redis, prefix: &str, name: &str) -> Result<Leftovers> {
    names::check_channel_name(name)?;
    names::check_prefix(prefix)?;
    remove_leftovers(&Channel::new(redis.clone(), Keys::new(prefix, name))).await
}

/// What [`remove_leftovers`] deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Chunks deleted.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Deletes the chunks of the channel's files that no receiver needs any
/// more (not `active`) but that are still on a master, and says so in one
/// log line. The release path cannot see them: after a failover, a
/// promoted replica may never have received the deletes its master ran
/// (replication is asynchronous), while the channel's records, on another
/// master, say the chunks are gone.
pub async fn remove_leftovers(channel: &Channel) -> Result<Leftovers> {
    let census = channel.chunk_census().await?;
    for batch in census.leftovers.chunks(UNLINK_BATCH as usize) {
        // One command per batch: on a cluster the client splits it by slot.
        let mut unlink = redis::cmd("UNLINK");
        for (key, _) in batch {
            unlink.arg(key);
        }
        channel
            .redis
            .query::<u64>("deleting leftover chunks", &unlink)
            .await?;
    }
    let removed = Leftovers {
        chunks: census.leftovers.len() as u64,
        bytes: census.leftover_bytes(),
    };
    if removed.chunks > 0 {
        tracing::info!(
            "deleted {} ({}) of finished files of channel {} that were still in Redis",
            crate::text::counted(removed.chunks, "leftover chunk", "leftover chunks"),
            bytesize::ByteSize(removed.bytes),
            channel.keys.channel()
        );
    }
    Ok(removed)
}
