//! What a receiver reads of a file: its record `f:N`, its upload log
//! `f:N:log`, its chunks, and requests in `wanted`; and what it shows of
//! itself in `r:ID` for `status`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use redis::streams::{StreamId, StreamReadReply};

use crate::error::Result;
use crate::native::lease;
use crate::native::protocol::channel::Channel;

/// A file's record `f:N` as stored: raw bytes, since a record someone
/// else wrote may hold anything, and one bad record must not stop a
/// receiver.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileRecord {
    key: String,
    fields: HashMap<Vec<u8>, Vec<u8>>,
}

impl FileRecord {
    /// The record's key, to name it in errors.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Whether the record is gone (or never was).
    pub(crate) fn is_missing(&self) -> bool {
        self.fields.is_empty()
    }

    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name.as_bytes()).map(Vec::as_slice)
    }

    fn number(&self, name: &str) -> Option<u64> {
        std::str::from_utf8(self.field(name)?).ok()?.parse().ok()
    }

    /// Whether its upload was abandoned, or everyone it was for settled it.
    pub(crate) fn is_over(&self) -> bool {
        matches!(self.field("state"), Some(b"aborted" | b"done"))
    }

    /// Whether receiver `id` settled it already (`ack:ID`).
    pub(crate) fn settled_by(&self, id: &str) -> bool {
        self.fields.contains_key(format!("ack:{id}").as_bytes())
    }

    /// Whether this upload is for receiver `id`: every upload is, but one
    /// again (`for`) only for those that asked, or any worker (`*`).
    pub(crate) fn is_for(&self, id: &str) -> bool {
        self.field("for").is_none_or(|ids| {
            ids == b"*" || ids.split(|&b| b == b',').any(|one| one == id.as_bytes())
        })
    }

    /// Its name, or the bytes that are not UTF-8.
    pub(crate) fn name(&self) -> std::result::Result<String, Vec<u8>> {
        String::from_utf8(self.field("name").unwrap_or_default().to_vec())
            .map_err(|bad| bad.into_bytes())
    }

    /// The slot of its chunks (`chunk`), 0 when missing or malformed.
    pub(crate) fn chunk_slot(&self) -> u64 {
        self.number("chunk").unwrap_or(0)
    }

    /// The file id of its first upload (`origin`), when uploaded again.
    pub(crate) fn origin(&self) -> Option<u64> {
        self.number("origin")
    }

    /// The identity of its source: `size:mtime`, or `stream`.
    pub(crate) fn identity(&self) -> String {
        String::from_utf8_lossy(self.field("identity").unwrap_or(b"stream")).into_owned()
    }

    /// `I/N` when it is piece I of N of a file sent with `--split`.
    pub(crate) fn piece(&self) -> Option<&str> {
        std::str::from_utf8(self.field("piece")?).ok()
    }

    /// The file itself, when it came whole with its announcement (`data`):
    /// `Some(Err(field))` names a field that is missing or malformed.
    pub(crate) fn whole(&self) -> Option<std::result::Result<StoredWhole, &'static str>> {
        let value = self.field("data")?;
        let Some(size) = self.number("size") else {
            return Some(Err("size"));
        };
        let digest = self.field("digest").and_then(|hex| {
            let hex = std::str::from_utf8(hex).ok()?;
            blake3::Hash::from_hex(hex).ok()
        });
        let Some(digest) = digest else {
            return Some(Err("digest"));
        };
        Some(Ok(StoredWhole {
            value: Bytes::copy_from_slice(value),
            size,
            digest,
        }))
    }
}

/// A file stored whole in its record: its one chunk value, and the size
/// and BLAKE3 digest of its original bytes.
#[derive(Clone, Debug)]
pub(crate) struct StoredWhole {
    pub value: Bytes,
    pub size: u64,
    pub digest: blake3::Hash,
}

/// A file receivers asked to be uploaded again (an entry of `wanted`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WantedFile {
    pub name: String,
    /// Who waits for it: receiver ids, or `*` for any worker.
    pub receivers: Vec<String>,
}

impl WantedFile {
    /// Reads a `wanted` value, `fid identity round origin receivers`.
    fn decode(name: String, value: &str) -> WantedFile {
        let receivers = value.rsplit(' ').next().unwrap_or_default();
        WantedFile {
            name,
            receivers: receivers.split(',').map(str::to_owned).collect(),
        }
    }

    /// Whether receiver `id` (`*` for any worker) waits for it.
    pub(crate) fn is_for(&self, id: &str) -> bool {
        self.receivers.iter().any(|r| r == id)
    }
}

/// What a receiver shows `status` of the file it reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadingReport<'a> {
    pub receiver: &'a str,
    pub file: &'a str,
    /// Bytes of the file passed on so far.
    pub at: u64,
    /// Bytes a second passed on lately.
    pub rate: u64,
}

/// One entry of a file's upload log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub id: String,
    pub published: Option<Published>,
    pub end: Option<UploadEnd>,
    /// Why the sender abandoned the upload.
    pub aborted: Option<String>,
}

/// Chunks `0..count` are published; `digests` are those of the chunks
/// newly published, the last `digests.len()` ones (`None`: malformed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Published {
    pub count: u64,
    pub digests: Vec<Option<blake3::Hash>>,
}

/// The whole file is uploaded: its size and BLAKE3 digest (hex).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UploadEnd {
    pub size: u64,
    pub digest: String,
}

impl LogEntry {
    fn decode(entry: StreamId) -> LogEntry {
        let text = |field: &str| entry.get::<String>(field);
        let published = text("n").and_then(|n| n.parse().ok()).map(|count| {
            let digests = text("d").unwrap_or_default();
            Published {
                count,
                digests: digests
                    .as_bytes()
                    .chunks_exact(64)
                    .map(|hex| {
                        let hex = std::str::from_utf8(hex).ok()?;
                        blake3::Hash::from_hex(hex).ok()
                    })
                    .collect(),
            }
        });
        let end = text("end").map(|_| UploadEnd {
            size: text("size").and_then(|s| s.parse().ok()).unwrap_or(0),
            digest: text("digest").unwrap_or_default(),
        });
        let aborted = text("abort");
        LogEntry {
            id: entry.id,
            published,
            end,
            aborted,
        }
    }
}

impl Channel {
    /// A file's record; empty when it is gone.
    pub(crate) async fn file_record(&self, fid: u64) -> Result<FileRecord> {
        let key = self.keys.file(fid);
        let fields = self
            .redis
            .query("reading a file record", redis::cmd("HGETALL").arg(&key))
            .await?;
        Ok(FileRecord { key, fields })
    }

    /// The records of several files, in one round trip.
    pub(crate) async fn file_records(&self, fids: &[u64]) -> Result<Vec<FileRecord>> {
        if fids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for &fid in fids {
            pipeline.cmd("HGETALL").arg(self.keys.file(fid));
        }
        let replies: Vec<HashMap<Vec<u8>, Vec<u8>>> = self
            .redis
            .query_pipe("reading file records", &pipeline)
            .await?;
        Ok(fids
            .iter()
            .zip(replies)
            .map(|(&fid, fields)| FileRecord {
                key: self.keys.file(fid),
                fields,
            })
            .collect())
    }

    /// Whether file `fid` is an upload again of `name` for receiver `id`.
    pub(crate) async fn is_upload_again(&self, fid: u64, name: &str, id: &str) -> Result<bool> {
        let (found, receivers): (Option<String>, Option<String>) = self
            .redis
            .query(
                "reading a file record",
                redis::cmd("HMGET")
                    .arg(self.keys.file(fid))
                    .arg("name")
                    .arg("for"),
            )
            .await?;
        let ours = |ids: &str| ids.split(',').any(|one| one == id);
        Ok(found.as_deref() == Some(name) && receivers.as_deref().is_some_and(ours))
    }

    /// Whether a file's record still exists.
    pub(crate) async fn file_exists(&self, fid: u64) -> Result<bool> {
        self.redis
            .query(
                "checking a file record",
                redis::cmd("EXISTS").arg(self.keys.file(fid)),
            )
            .await
    }

    /// How many of a file's chunks were deleted (`freed`); `None` when the
    /// record is gone.
    pub(crate) async fn freed_chunks(&self, fid: u64) -> Result<Option<u64>> {
        self.redis
            .query(
                "reading a file record",
                redis::cmd("HGET").arg(self.keys.file(fid)).arg("freed"),
            )
            .await
    }

    /// The request to upload `name` again, if any.
    pub(crate) async fn wanted_file(&self, name: &str) -> Result<Option<WantedFile>> {
        let value: Option<String> = self
            .redis
            .query(
                "checking requests for files",
                redis::cmd("HGET").arg(self.keys.wanted()).arg(name),
            )
            .await?;
        Ok(value.map(|value| WantedFile::decode(name.to_owned(), &value)))
    }

    /// Every request to upload a file again.
    pub(crate) async fn wanted_files(&self) -> Result<Vec<WantedFile>> {
        let wanted: HashMap<String, String> = self
            .redis
            .query(
                "checking requests for files",
                redis::cmd("HGETALL").arg(self.keys.wanted()),
            )
            .await?;
        Ok(wanted
            .into_iter()
            .map(|(name, value)| WantedFile::decode(name, &value))
            .collect())
    }

    /// Reads a file's upload log after entry `after`, blocking up to
    /// `block` when it has nothing newer. Empty when nothing came (or the
    /// wait was cut short).
    pub(crate) async fn read_upload_log(
        &self,
        fid: u64,
        after: &str,
        block: Option<Duration>,
    ) -> Result<Vec<LogEntry>> {
        let mut command = redis::cmd("XREAD");
        command.arg("COUNT").arg(1000);
        if let Some(block) = block {
            command.arg("BLOCK").arg(block.as_millis() as u64);
        }
        command
            .arg("STREAMS")
            .arg(self.keys.file_log(fid))
            .arg(after);
        let reply: Option<StreamReadReply> = if block.is_some() {
            self.redis
                .wait("waiting for chunks", &command)
                .await?
                .flatten()
        } else {
            self.redis.query("reading the upload log", &command).await?
        };
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(LogEntry::decode)
            .collect())
    }

    /// Reads chunk `index` of file `fid`; `None` when it is not in Redis.
    /// The future owns what it needs, so many can be in flight.
    pub(crate) fn read_chunk(
        &self,
        fid: u64,
        index: u64,
    ) -> impl Future<Output = Result<Option<Bytes>>> + use<> {
        let redis = self.redis.clone();
        let mut command = redis::cmd("GET");
        command.arg(self.keys.chunk(fid, index));
        async move {
            let data: Option<Vec<u8>> = redis.query("reading a chunk", &command).await?;
            Ok(data.map(Bytes::from))
        }
    }

    /// Shows `status` the file a receiver reads, how far, when and how fast.
    pub(crate) async fn report_reading(&self, report: ReadingReport<'_>) -> Result<()> {
        self.redis
            .query(
                "reporting progress",
                redis::cmd("HSET")
                    .arg(self.keys.receiver(report.receiver))
                    .arg("current")
                    .arg(report.file)
                    .arg("at")
                    .arg(report.at)
                    .arg("seen")
                    .arg(lease::now_ms() as u64)
                    .arg("rate")
                    .arg(report.rate),
            )
            .await
    }
}
