//! The step behind `purge`: every key of a channel deleted, chunks first
//! (so nothing is left that no record names), then control keys, then
//! the channel's name in the list of channels.

use crate::error::Result;
use crate::native::protocol::channel::Channel;

impl Channel {
    /// Deletes every key of the channel and forgets its name. Returns how
    /// many keys were deleted.
    pub(crate) async fn delete_every_key(&self) -> Result<u64> {
        let mut deleted = 0;
        for pattern in [self.keys.chunk_pattern(), self.keys.control_pattern()] {
            for key in self.redis.scan("scanning keys", &pattern).await? {
                deleted += self
                    .redis
                    .query::<u64>("deleting keys", redis::cmd("UNLINK").arg(&key))
                    .await?;
            }
        }
        self.redis
            .query::<()>(
                "unregistering the channel",
                redis::cmd("SREM")
                    .arg(self.keys.channels())
                    .arg(self.keys.channel()),
            )
            .await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::protocol::Keys;
    use crate::native::protocol::inspect::channel_names;
    use crate::redis::{LocalRedis, LocalRedisOptions, Redis};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purged_channel_leaves_nothing_and_its_neighbour_everything() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let redis = Redis::connect(&server.url()).await.unwrap();
        let gone = Channel::new(redis.clone(), Keys::new("rd", "a"));
        let kept = Channel::new(redis.clone(), Keys::new("rd", "a:c:1"));
        let mut pipe = redis::pipe();
        for channel in [&gone, &kept] {
            let keys = &channel.keys;
            pipe.sadd(keys.channels(), keys.channel())
                .hset(keys.meta(), "mode", "workers")
                .hset(keys.file(1), "name", "x")
                .set(keys.chunk(1, 0), "data");
        }
        let _: () = redis.query_pipe("testing", &pipe).await.unwrap();
        assert_eq!(gone.delete_every_key().await.unwrap(), 3);
        assert_eq!(channel_names(&redis, "rd").await.unwrap(), ["a:c:1"]);
        let left = redis.scan("testing", "rd*").await.unwrap();
        assert_eq!(left.len(), 4, "{left:?}");
        assert_eq!(gone.delete_every_key().await.unwrap(), 0, "idempotent");
    }
}
