//! The step behind `redistribute retry`: parked files offered again, each
//! as a request in `wanted` for the sender to upload it from its source.

use std::sync::LazyLock;

use redis::Script;

use super::script;
use crate::error::Result;
use crate::native::protocol::channel::Channel;

/// Offers parked files again: each becomes a request in `wanted` for the
/// receivers that parked it (any worker in a work queue), for the sender
/// to upload it again from its source; its parked entry is removed.
/// Files sent from a stream cannot be read again and stay parked.
/// KEYS: meta. ARGV: base, names separated by newlines ('' for all).
/// Returns `{name, receiver, offered|stream, ...}`.
static RETRY: LazyLock<Script> = LazyLock::new(|| script(include_str!("scripts/retry.lua")));

/// One parked file that `retry` looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retried {
    /// The file's name.
    pub file: String,
    /// Who had parked it.
    pub receiver: String,
    /// Whether it is offered again; `false` for a file sent from a stream,
    /// which cannot be read again and stays parked.
    pub offered: bool,
}

impl Channel {
    /// Offers the parked files named in `names` (all when empty) again;
    /// returns every parked file it found, offered or not.
    pub(crate) async fn offer_parked_again(&self, names: &[String]) -> Result<Vec<Retried>> {
        let found: Vec<String> = self
            .run("offering files again", &RETRY, &[names.join("\n")])
            .await?;
        Ok(found
            .chunks_exact(3)
            .map(|answer| Retried {
                file: answer[0].clone(),
                receiver: answer[1].clone(),
                offered: answer[2] == "offered",
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::protocol::sending::Opened;
    use crate::native::protocol::{Audience, Keys};
    use crate::redis::{LocalRedis, LocalRedisOptions, Redis};

    /// A work queue where worker `w` parked `a.log` (read from disk) and
    /// `pipe` (read from a stream).
    async fn channel_with_parked_files(server: &LocalRedis) -> Channel {
        let redis = Redis::connect(&server.url()).await.unwrap();
        let channel = Channel::new(redis, Keys::new("rd", "t"));
        let opened = channel.create(&Audience::Workers, 65536, 4096).await;
        assert_eq!(opened.unwrap(), Opened::Ready);
        let base = channel.keys.base().to_owned();
        let _: () = channel
            .redis
            .query_pipe(
                "testing",
                redis::pipe()
                    .hset(format!("{base}parked"), "1:w", "a.log\tbroken")
                    .hset(format!("{base}parked"), "2:w", "pipe\tbroken")
                    .hset(format!("{base}sent"), "a.log", "1 10:20 sent")
                    .hset(format!("{base}sent"), "pipe", "2 stream sent"),
            )
            .await
            .unwrap();
        channel
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_file_is_offered_again_and_one_from_a_stream_stays_parked() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel_with_parked_files(&server).await;
        let mut found = channel.offer_parked_again(&[]).await.unwrap();
        found.sort_by(|a, b| a.file.cmp(&b.file));
        let parked = |file: &str, offered| Retried {
            file: file.into(),
            receiver: "w".into(),
            offered,
        };
        assert_eq!(found, [parked("a.log", true), parked("pipe", false)]);
        assert_eq!(
            channel.offer_parked_again(&[]).await.unwrap(),
            [parked("pipe", false)],
            "an offered file is no longer parked"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_files_named_are_offered_again() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel_with_parked_files(&server).await;
        let names = ["pipe".to_owned(), "elsewhere".to_owned()];
        let found = channel.offer_parked_again(&names).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].file, "pipe");
        let all = channel.offer_parked_again(&[]).await.unwrap();
        assert!(all.iter().any(|r| r.file == "a.log" && r.offered));
    }
}
