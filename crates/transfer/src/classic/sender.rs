//! The book's sender: announces files in the chat and appends their bytes
//! in 128 KiB blocks, deleting each file once every recipient finished it.

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{BLOCK_SIZE, ClassicKeys, DONE, MAX_FILE, POLL, SOURCE, message_json, parse_message};
use crate::error::{Error, Result};
use crate::files::names;
use crate::files::progress::Progress;
use crate::redis::Redis;

/// Appends a block only where the caller expects the key to end, so a
/// retried or repeated append cannot duplicate data.
/// KEYS: content. ARGV: expected length, block. Returns the new length.
static APPEND_AT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('STRLEN', KEYS[1]) == tonumber(ARGV[1]) then
  return redis.call('APPEND', KEYS[1], ARGV[2])
end
return redis.call('STRLEN', KEYS[1])
"#,
    )
});

/// Releases the chat lock if we still hold it.
/// KEYS: lock. ARGV: our identifier.
static RELEASE_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// Sends files the book's way.
pub struct ClassicSender {
    redis: Redis,
    keys: ClassicKeys,
    receivers: Vec<String>,
    limit: u64,
    /// Files announced whose keys are still in Redis, with their sizes.
    outstanding: Vec<(String, u64)>,
    /// Every file name announced in this chat so far.
    announced: Vec<String>,
    done_sent: bool,
    progress: Option<Arc<dyn Progress>>,
}

impl ClassicSender {
    /// Connects, creates the chat unless it exists, and recovers what an
    /// earlier run of the sender left in it.
    pub async fn open(
        url: &str,
        channel: &str,
        receivers: Vec<String>,
        limit: u64,
    ) -> Result<Self> {
        if channel.is_empty() || channel.chars().any(char::is_control) {
            return Err(Error::InvalidChannel {
                name: channel.to_owned(),
                reason: "it is empty or contains control characters",
            });
        }
        let redis = Redis::connect(url).await?;
        super::refuse_cluster(&redis)?;
        let keys = ClassicKeys::new(channel);
        let mut sender = ClassicSender {
            redis,
            keys,
            receivers,
            limit,
            outstanding: Vec::new(),
            announced: Vec::new(),
            done_sent: false,
            progress: None,
        };
        let members: Vec<String> = sender
            .redis
            .query(
                "reading the chat",
                redis::cmd("ZRANGE").arg(sender.keys.chat()).arg(0).arg(-1),
            )
            .await?;
        let mut expected: Vec<String> = sender
            .receivers
            .iter()
            .cloned()
            .chain([SOURCE.to_owned()])
            .collect();
        expected.sort();
        let mut found = members.clone();
        found.sort();
        if members.is_empty() {
            sender.create_chat().await?;
        } else if found != expected {
            // Fewer receivers would delete files under the others' feet.
            return Err(Error::Usage(format!(
                "chat {channel:?} already exists with members {}; send with the same receivers or use a new channel name",
                members.join(", ")
            )));
        } else {
            sender.recover().await?;
        }
        Ok(sender)
    }

    /// Reports uploaded bytes to `progress` from now on.
    pub fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = Some(progress);
    }

    async fn create_chat(&mut self) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let everyone: Vec<&str> = self
            .receivers
            .iter()
            .map(String::as_str)
            .chain([SOURCE])
            .collect();
        let chat = pipe.cmd("ZADD").arg(self.keys.chat());
        for member in &everyone {
            chat.arg(0).arg(*member);
        }
        for member in &everyone {
            pipe.cmd("ZADD")
                .arg(self.keys.seen(member))
                .arg(0)
                .arg(&self.keys.channel);
        }
        self.redis
            .query_pipe::<()>("creating the chat", &pipe)
            .await?;
        self.send_message("").await
    }

    /// Rebuilds what an earlier run announced from the chat's messages
    /// (the book's sender never trims them: `source` never reads).
    async fn recover(&mut self) -> Result<()> {
        let key = self.keys.messages();
        let messages: Vec<String> = self
            .redis
            .query(
                "reading the chat",
                redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1),
            )
            .await?;
        let cleaned: Vec<String> = self
            .redis
            .query(
                "reading the chat",
                redis::cmd("SMEMBERS").arg(self.keys.cleaned()),
            )
            .await?;
        for json in messages {
            let text = parse_message(&key, &json)?.message;
            match text.as_str() {
                "" => {}
                DONE => self.done_sent = true,
                name => {
                    if !cleaned.iter().any(|c| c == name) {
                        let size: u64 = self
                            .redis
                            .query(
                                "reading a file",
                                redis::cmd("STRLEN").arg(self.keys.content(name)),
                            )
                            .await?;
                        self.outstanding.push((name.to_owned(), size));
                    }
                    self.announced.push(name.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Appends `path` under `name` (a base name) and announces it, waiting
    /// first until the files in Redis leave room under the limit.
    pub async fn send_file(&mut self, path: &Path, name: &str) -> Result<()> {
        if !self.may_send(name)? {
            return Ok(());
        }
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(path, e))?
            .len();
        if size > MAX_FILE {
            return Err(too_big(name, size));
        }
        self.wait_for_room(name, size).await?;
        let offset = self.resume_offset(path, name, size).await?;
        self.append_from(path, name, offset, size).await?;
        self.send_message(name).await?;
        self.outstanding.push((name.to_owned(), size));
        self.announced.push(name.to_owned());
        tracing::info!("sent {name} ({})", bytesize::ByteSize(size));
        Ok(())
    }

    /// Whether `name` is to be sent: refuses names the book's receivers
    /// cannot take and a chat that already ended; `false` for a file an
    /// earlier run announced.
    fn may_send(&self, name: &str) -> Result<bool> {
        names::check_file_name(name)?;
        if name.contains('/') {
            return Err(Error::HostileName {
                name: name.to_owned(),
                reason: "the classic protocol sends base names only",
            });
        }
        if self.announced.iter().any(|n| n == name) {
            tracing::info!("{name}: already sent by an earlier run; skipping");
            return Ok(false);
        }
        if self.done_sent {
            return Err(Error::Usage(format!(
                "chat {:?} already ended with `:done`, so the book's receivers stopped; send {name} on a new channel name",
                self.keys.channel
            )));
        }
        Ok(true)
    }

    /// How much of the file an earlier run already appended: the run goes
    /// on from there.
    async fn resume_offset(&self, path: &Path, name: &str, size: u64) -> Result<u64> {
        let content = self.keys.content(name);
        let offset: u64 = self
            .redis
            .query("reading a file", redis::cmd("STRLEN").arg(&content))
            .await?;
        if offset > size {
            return Err(Error::Protocol {
                key: content,
                reason: format!(
                    "it holds {offset} bytes but {} has {size}; delete the key or use a new channel name",
                    path.display()
                ),
            });
        }
        if offset > 0 {
            tracing::info!(
                "{name}: resuming after {} appended by an earlier run",
                bytesize::ByteSize(offset)
            );
        }
        Ok(offset)
    }

    /// Appends the file from `offset` to `size` in the book's blocks, each
    /// only at the offset it expects, so a retried append never doubles.
    async fn append_from(&self, path: &Path, name: &str, mut offset: u64, size: u64) -> Result<()> {
        let content = self.keys.content(name);
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(path, e))?;
        let mut block = vec![0u8; BLOCK_SIZE as usize];
        while offset < size {
            let want = (size - offset).min(BLOCK_SIZE) as usize;
            file.read_exact(&mut block[..want])
                .await
                .map_err(|e| Error::io(path, e))?;
            let data = &block[..want];
            let length: u64 = self
                .redis
                .keep_trying("appending a block", |mut con| {
                    let mut invocation = APPEND_AT.prepare_invoke();
                    invocation.key(&content).arg(offset).arg(data);
                    async move { invocation.invoke_async(&mut con).await }
                })
                .await?;
            if length != offset + want as u64 {
                return Err(Error::Protocol {
                    key: content,
                    reason: format!(
                        "expected {} bytes after appending, found {length}",
                        offset + want as u64
                    ),
                });
            }
            offset = length;
            if let Some(progress) = &self.progress {
                progress.advance(want as u64);
            }
        }
        Ok(())
    }

    /// Sends `:done` (once).
    pub async fn finish(&mut self) -> Result<()> {
        if !self.done_sent {
            self.send_message(DONE).await?;
            self.done_sent = true;
        }
        Ok(())
    }

    /// Deletes each file once every receiver counted it done; returns when
    /// all are gone.
    pub async fn wait_until_done(&mut self) -> Result<()> {
        loop {
            self.clean().await?;
            if self.outstanding.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_for_room(&mut self, name: &str, size: u64) -> Result<()> {
        let mut said = false;
        loop {
            self.clean().await?;
            let held: u64 = self.outstanding.iter().map(|(_, s)| s).sum();
            if held + size <= self.limit {
                return Ok(());
            }
            if self.outstanding.is_empty() {
                tracing::warn!(
                    "{name} ({}) is larger than --limit {}; sending it alone",
                    bytesize::ByteSize(size),
                    bytesize::ByteSize(self.limit)
                );
                return Ok(());
            }
            if !said {
                tracing::debug!("{name}: waiting for receivers to make room");
                said = true;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes the keys of every file all receivers finished.
    async fn clean(&mut self) -> Result<()> {
        let mut still = Vec::new();
        for (name, size) in std::mem::take(&mut self.outstanding) {
            let done: Option<String> = self
                .redis
                .query(
                    "reading a counter",
                    redis::cmd("GET").arg(self.keys.done(&name)),
                )
                .await?;
            let count: u64 = done
                .as_deref()
                .and_then(|d| d.trim().parse().ok())
                .unwrap_or(0);
            if count >= self.receivers.len() as u64 {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("DEL")
                    .arg(self.keys.content(&name))
                    .arg(self.keys.done(&name))
                    .cmd("SADD")
                    .arg(self.keys.cleaned())
                    .arg(&name);
                self.redis
                    .query_pipe::<()>("deleting a finished file", &pipe)
                    .await?;
                tracing::debug!("{name}: every receiver finished; deleted");
            } else {
                still.push((name, size));
            }
        }
        self.outstanding = still;
        Ok(())
    }

    /// Sends a chat message as the book's `send_message` does, under the
    /// chat's lock.
    async fn send_message(&self, text: &str) -> Result<()> {
        let lock = self.keys.lock();
        let identifier = format!("{:032x}", fastrand::u128(..));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Unlike the book's bare SETNX, the lock expires, so a sender
            // killed while holding it cannot block the chat forever.
            let got: Option<String> = self
                .redis
                .query(
                    "locking the chat",
                    redis::cmd("SET")
                        .arg(&lock)
                        .arg(&identifier)
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000),
                )
                .await?;
            if got.is_some() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Protocol {
                    key: lock,
                    reason: "could not get the chat lock in 10 s (another sender holds it?)".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sent = async {
            let id: u64 = self
                .redis
                .query(
                    "numbering a message",
                    redis::cmd("INCR").arg(self.keys.ids()),
                )
                .await?;
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let json = message_json(id, ts, SOURCE, text);
            self.redis
                .query::<()>(
                    "sending a message",
                    redis::cmd("ZADD")
                        .arg(self.keys.messages())
                        .arg(id)
                        .arg(json),
                )
                .await
        }
        .await;
        self.redis
            .keep_trying("unlocking the chat", |mut con| {
                let mut invocation = RELEASE_LOCK.prepare_invoke();
                invocation.key(&lock).arg(&identifier);
                async move { invocation.invoke_async::<i64>(&mut con).await }
            })
            .await?;
        sent
    }
}

fn too_big(name: &str, size: u64) -> Error {
    Error::Processing {
        name: name.to_owned(),
        reason: format!(
            "{} is over the 512 MB a Redis string can hold, and the classic protocol keeps a file in one key; use the native protocol",
            bytesize::ByteSize(size)
        ),
    }
}

/// Checks every file against the 512 MB limit before anything is sent.
pub fn check_sizes(files: &[(std::path::PathBuf, String, u64)]) -> Result<()> {
    match files.iter().find(|(_, _, size)| *size > MAX_FILE) {
        Some((_, name, size)) => Err(too_big(name, *size)),
        None => Ok(()),
    }
}
