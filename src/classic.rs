//! The book's wire format (*Redis in Action* section 6.6), spoken byte for
//! byte so our sender can feed the book's receivers and the book's sender
//! can feed ours (`--protocol classic`).
//!
//! Keys for channel `C` (the channel string as given, e.g. `logs:`) and
//! file base name `F`: `ids:C` (message counter), `msgs:C` (zset of chat
//! messages as JSON, scored by id), `chat:C` (zset: member → last id seen),
//! `seen:R` (zset: chat → last id seen by recipient R), `lock:chat:C`,
//! `CF` (the file's bytes, appended in 128 KiB blocks) and `CF:done`
//! (receivers that finished it). `docs/protocol.md` has the details.
//!
//! Where a book peer cannot tell the difference, we do better: a receiver
//! advances its read position only after a file's work is done, in the same
//! atomic step as its `INCR`, so a crash mid-file redelivers that file and
//! still counts once; the sender appends only at the offset it expects, so
//! a restart or a retried command never appends twice; counters compare as
//! numbers. The format itself has no notification, so both sides poll.

use std::path::Path;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use indicatif::ProgressBar;
use redis::Script;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::connection::Redis;
use crate::error::{Error, Result};
use crate::incoming::{AbortOnDrop, IncomingFile, Ticket};
use crate::names;

/// Size of each `APPEND` and `GETRANGE`, as in the book.
pub const BLOCK: u64 = 1 << 17;
/// Redis' default `proto-max-bulk-len`: no string key can grow beyond it.
pub const MAX_FILE: u64 = 512 * 1024 * 1024;
/// How often to look again when the format gives nothing to block on.
const POLL: Duration = Duration::from_millis(100);
/// The chat member that sends; it never fetches.
const SOURCE: &str = "source";
/// The message that ends a transfer.
const DONE: &str = ":done";

/// Key names of one classic channel.
#[derive(Clone, Debug)]
pub struct ClassicKeys {
    channel: String,
}

impl ClassicKeys {
    pub fn new(channel: &str) -> Self {
        ClassicKeys {
            channel: channel.to_owned(),
        }
    }

    pub fn ids(&self) -> String {
        format!("ids:{}", self.channel)
    }

    pub fn messages(&self) -> String {
        format!("msgs:{}", self.channel)
    }

    pub fn chat(&self) -> String {
        format!("chat:{}", self.channel)
    }

    pub fn seen(&self, recipient: &str) -> String {
        format!("seen:{recipient}")
    }

    pub fn lock(&self) -> String {
        format!("lock:chat:{}", self.channel)
    }

    pub fn content(&self, name: &str) -> String {
        format!("{}{name}", self.channel)
    }

    pub fn done(&self, name: &str) -> String {
        format!("{}{name}:done", self.channel)
    }

    /// Our own record (unknown to the book) of files whose keys the sender
    /// deleted, so a restarted sender knows which announced files still
    /// need cleaning, empty ones included.
    pub fn cleaned(&self) -> String {
        format!("rd:classic:{}:cleaned", self.channel)
    }
}

/// A chat message as stored in `msgs:C`.
#[derive(Debug, serde::Deserialize)]
struct Message {
    id: u64,
    /// Kept as written: with the id, it tells messages of a chat that was
    /// created again apart.
    #[serde(default)]
    ts: Option<serde_json::Number>,
    message: String,
}

fn parse_message(key: &str, json: &str) -> Result<Message> {
    serde_json::from_str(json).map_err(|e| Error::Protocol {
        key: key.to_owned(),
        reason: format!("malformed chat message {json:?}: {e}"),
    })
}

/// A message exactly as the book's Python writes it with `json.dumps`:
/// keys in this order, `", "` and `": "` separators, non-ASCII escaped.
pub fn message_json(id: u64, ts: f64, sender: &str, message: &str) -> String {
    format!(
        "{{\"id\": {id}, \"ts\": {}, \"sender\": {}, \"message\": {}}}",
        python_float(ts),
        python_string(sender),
        python_string(message)
    )
}

/// Python's `repr` of a float for the values a clock gives: the shortest
/// digits that round-trip (as Rust prints them), always with a fraction.
fn python_float(value: f64) -> String {
    let text = value.to_string();
    if text.contains(['.', 'e', 'E']) || !value.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}

/// A JSON string with `ensure_ascii`: everything outside printable ASCII as
/// `\uXXXX` (UTF-16, lowercase hex), as Python's `json.dumps` does.
pub fn python_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

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
    progress: ProgressBar,
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
        let keys = ClassicKeys::new(channel);
        let mut sender = ClassicSender {
            redis,
            keys,
            receivers,
            limit,
            outstanding: Vec::new(),
            announced: Vec::new(),
            done_sent: false,
            progress: ProgressBar::hidden(),
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

    /// Reports uploaded bytes to `bar` from now on.
    pub fn set_progress(&mut self, bar: ProgressBar) {
        self.progress = bar;
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
        names::check_file_name(name)?;
        if name.contains('/') {
            return Err(Error::HostileName {
                name: name.to_owned(),
                reason: "the classic protocol sends base names only",
            });
        }
        if self.announced.iter().any(|n| n == name) {
            tracing::info!("{name}: already sent by an earlier run; skipping");
            return Ok(());
        }
        if self.done_sent {
            return Err(Error::Usage(format!(
                "chat {:?} already ended with `:done`, so the book's receivers stopped; send {name} on a new channel name",
                self.keys.channel
            )));
        }
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(path, e))?
            .len();
        if size > MAX_FILE {
            return Err(too_big(name, size));
        }
        self.wait_for_room(name, size).await?;
        let content = self.keys.content(name);
        let mut offset: u64 = self
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
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(path, e))?;
        let mut block = vec![0u8; BLOCK as usize];
        while offset < size {
            let want = (size - offset).min(BLOCK) as usize;
            file.read_exact(&mut block[..want])
                .await
                .map_err(|e| Error::io(path, e))?;
            let data = &block[..want];
            let length: u64 = self
                .redis
                .retry("appending a block", |mut con| {
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
            self.progress.inc(want as u64);
        }
        self.send_message(name).await?;
        self.outstanding.push((name.to_owned(), size));
        self.announced.push(name.to_owned());
        tracing::info!("sent {name} ({})", bytesize::ByteSize(size));
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
            .retry("unlocking the chat", |mut con| {
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

/// Receives files the book's way, as recipient `id`.
pub struct ClassicReceiver {
    redis: Redis,
    keys: ClassicKeys,
    id: String,
    refused: u64,
}

impl ClassicReceiver {
    pub async fn connect(url: &str, channel: &str, id: &str) -> Result<Self> {
        let redis = Redis::connect(url).await?;
        Ok(ClassicReceiver {
            redis,
            keys: ClassicKeys::new(channel),
            id: id.to_owned(),
            refused: 0,
        })
    }

    /// Files refused for hostile names since connecting.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Waits for the next file; `None` after `:done`.
    pub async fn next_file(&mut self) -> Result<Option<IncomingFile>> {
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
    pub async fn ack(&mut self, file: IncomingFile) -> Result<()> {
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

    async fn finish_message(&self, id: u64, file: Option<&str>) -> Result<()> {
        let done = file.map(|name| self.keys.done(name));
        let (chat, seen, messages) = (
            self.keys.chat(),
            self.keys.seen(&self.id),
            self.keys.messages(),
        );
        self.redis
            .retry("recording progress", |mut con| {
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
                    .arg(offset + BLOCK - 1),
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
        let short = (block.len() as u64) < BLOCK;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_written_as_python_json_dumps_writes_them() {
        assert_eq!(
            message_json(3, 1732467200.25, "source", "access.log"),
            r#"{"id": 3, "ts": 1732467200.25, "sender": "source", "message": "access.log"}"#
        );
        assert_eq!(
            message_json(1, 1732467200.0, "source", ""),
            r#"{"id": 1, "ts": 1732467200.0, "sender": "source", "message": ""}"#
        );
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        assert_eq!(
            python_string("naïve \"q\" \\ ☃ 𝄞\u{7f}"),
            r#""na\u00efve \"q\" \\ \u2603 \ud834\udd1e\u007f""#
        );
    }
}
