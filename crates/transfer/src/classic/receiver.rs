//! The book's receiver: reads the chat from its last position and each
//! file's key block by block, and moves past a file only after its work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use redis::Script;
use tokio::sync::mpsc;

use super::{BLOCK_SIZE, ClassicKeys, DONE, POLL, parse_message};
use crate::error::{Error, Result};
use crate::files::incoming::{AbortOnDrop, IncomingFile, Ticket};
use crate::files::names;
use crate::files::source::{Failure, FileSource};
use crate::redis::Redis;

/// A recipient is done with message `id`: optionally counts the file as
/// finished, advances the recipient's position, and drops messages every
/// member has seen, all at once and only once.
/// KEYS: chat, seen, msgs, and the done counter when a file is finished.
/// ARGV: channel, recipient, id.
static FINISH_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seen = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '-1')
if seen >= tonumber(ARGV[3]) then return 0 end
if #KEYS == 4 then redis.call('INCR', KEYS[4]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local lowest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #lowest > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], 0, lowest[2]) end
return 1
"#,
    )
});

/// Receives files the book's way, as recipient `id`.
pub struct ClassicReceiver {
    redis: Redis,
    keys: ClassicKeys,
    id: String,
    refused: u64,
}

impl ClassicReceiver {
    /// Connects to Redis as recipient `id` of chat `channel` (for example `logs:`).
    pub async fn connect(url: &str, channel: &str, id: &str) -> Result<Self> {
        let redis = Redis::connect(url).await?;
        super::refuse_cluster(&redis)?;
        Ok(ClassicReceiver {
            redis,
            keys: ClassicKeys::new(channel),
            id: id.to_owned(),
            refused: 0,
        })
    }

    async fn finish_message(&self, id: u64, file: Option<&str>) -> Result<()> {
        let done = file.map(|name| self.keys.done(name));
        let (chat, seen, messages) = (
            self.keys.chat(),
            self.keys.seen(&self.id),
            self.keys.messages(),
        );
        self.redis
            .keep_trying("recording progress", |mut con| {
                let mut invocation = FINISH_MESSAGE.prepare_invoke();
                invocation.key(&chat).key(&seen).key(&messages);
                if let Some(done) = &done {
                    invocation.key(done);
                }
                invocation.arg(&self.keys.channel).arg(&self.id).arg(id);
                async move { invocation.invoke_async::<i64>(&mut con).await }
            })
            .await?;
        Ok(())
    }

    fn open(&self, name: &str, message: u64, ts: String) -> IncomingFile {
        let (sender, chunks) = mpsc::channel(4);
        let verified = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(read_blocks(
            self.redis.clone(),
            self.keys.content(name),
            name.to_owned(),
            sender,
            verified.clone(),
        ));
        IncomingFile::new(
            name.to_owned(),
            Ticket::Classic { message, ts },
            chunks,
            verified,
            vec![AbortOnDrop(task)],
        )
        .of_channel("", &self.keys.channel)
    }
}

impl FileSource for ClassicReceiver {
    /// Waits for the next file; `None` after `:done`.
    async fn next_file(&mut self) -> Result<Option<IncomingFile>> {
        let key = self.keys.messages();
        loop {
            let seen: Option<f64> = self
                .redis
                .query(
                    "reading our position",
                    redis::cmd("ZSCORE")
                        .arg(self.keys.seen(&self.id))
                        .arg(&self.keys.channel),
                )
                .await?;
            let Some(seen) = seen else {
                tracing::debug!("not (yet) a member of chat {}; waiting", self.keys.channel);
                tokio::time::sleep(POLL).await;
                continue;
            };
            let pending: Vec<String> = self
                .redis
                .query(
                    "fetching messages",
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg(format!("({seen}"))
                        .arg("+inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(1),
                )
                .await?;
            let Some(json) = pending.first() else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            let message = parse_message(&key, json)?;
            match message.message.as_str() {
                "" => self.finish_message(message.id, None).await?,
                DONE => {
                    self.finish_message(message.id, None).await?;
                    return Ok(None);
                }
                name => {
                    let refused = names::check_file_name(name).err().or_else(|| {
                        name.contains('/').then(|| Error::HostileName {
                            name: name.to_owned(),
                            reason: "classic names are base names",
                        })
                    });
                    if let Some(refused) = refused {
                        tracing::error!("{refused}; skipping it (not counted as done)");
                        self.refused += 1;
                        self.finish_message(message.id, None).await?;
                        continue;
                    }
                    let ts = message.ts.map(|ts| ts.to_string()).unwrap_or_default();
                    return Ok(Some(self.open(name, message.id, ts)));
                }
            }
        }
    }

    /// Counts a processed file as done and moves past its message.
    async fn ack(&mut self, file: IncomingFile) -> Result<()> {
        let Ticket::Classic { message, .. } = file.ticket().clone() else {
            return Err(Error::Usage(format!(
                "file {:?} did not come from a classic channel",
                file.name()
            )));
        };
        if !file.is_verified() {
            return Err(Error::Corrupt {
                name: file.name().to_owned(),
                reason: "it was not read to its end".into(),
            });
        }
        self.finish_message(message, Some(file.name())).await
    }

    /// The book's format has no record of failures: the error ends the
    /// run, and the file comes back when the receiver runs again.
    async fn fail(&mut self, _file: IncomingFile, error: Error) -> Result<Failure> {
        Err(error)
    }

    /// Files refused for hostile names since connecting.
    fn parked(&self) -> u64 {
        self.refused
    }
}

/// Reads a file's key in 128 KiB blocks until a short block, as the book
/// does (the format records no size, so nothing more can be checked).
async fn read_blocks(
    redis: Redis,
    key: String,
    name: String,
    out: mpsc::Sender<std::io::Result<Bytes>>,
    verified: Arc<AtomicBool>,
) {
    let mut offset = 0u64;
    loop {
        let block: Result<Vec<u8>> = redis
            .query(
                "reading a block",
                redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(offset)
                    .arg(offset + BLOCK_SIZE - 1),
            )
            .await;
        let block = match block {
            Ok(block) => block,
            Err(error) => {
                let error = Error::Processing {
                    name: name.clone(),
                    reason: error.to_string(),
                };
                let _ = out.send(Err(std::io::Error::other(error))).await;
                return;
            }
        };
        let short = (block.len() as u64) < BLOCK_SIZE;
        offset += block.len() as u64;
        if !block.is_empty() && out.send(Ok(Bytes::from(block))).await.is_err() {
            return;
        }
        if short {
            verified.store(true, Ordering::Release);
            return;
        }
    }
}
