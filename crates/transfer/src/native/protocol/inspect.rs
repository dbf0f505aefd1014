//! What `status` reads of a channel's control keys, decoded: files in
//! flight, parked files, members, each receiver's counters (and the one
//! counter the job adds to them), files sent in pieces.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::native::protocol::Keys;
use crate::native::protocol::channel::Channel;
use crate::redis::Redis;

/// A file given up on.
#[derive(Debug, Serialize)]
pub struct ParkedFile {
    /// The file's name.
    pub file: String,
    /// Who gave up on it.
    pub receiver: String,
    /// Why, as the last failure said.
    pub reason: String,
}

/// What `active`, `parked` and `members` hold, read together.
#[derive(Debug, Default)]
pub(crate) struct Overview {
    /// Ids of the files whose data may still be in Redis.
    pub active: Vec<u64>,
    /// Files given up on, by file then receiver.
    pub parked: Vec<ParkedFile>,
    /// Ids of every receiver or worker that joined.
    pub members: Vec<String>,
}

/// The counters one receiver keeps in `P:{C}:r:ID`; 0 or `None` where
/// it never wrote one.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReceiverCounters {
    /// Files it acknowledged.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files it parked.
    pub parked: u64,
    /// Files it asked for again (their data left Redis first).
    pub moved: u64,
    /// Files uploaded again for it.
    pub owed: u64,
    /// Lines the job could not parse.
    pub unparsed: u64,
    /// Bytes a second it passed on, as of `seen`.
    pub rate: u64,
    /// The file it is reading, and how many bytes into it.
    pub current: Option<String>,
    pub at: u64,
    /// The last file it acknowledged.
    pub last: Option<String>,
    /// When it last reported (Unix ms).
    pub seen: Option<u64>,
}

/// One file in flight, as its record says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileInFlight {
    /// Whether it is still being uploaded.
    pub uploading: bool,
    /// Original bytes published so far.
    pub published: u64,
    /// Its size, once uploaded.
    pub size: Option<u64>,
}

/// A file sent in pieces (`send --split`), as `split` records it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SplitRecord {
    /// The whole file's name.
    pub file: String,
    /// How many pieces it was cut into.
    pub pieces: u64,
}

/// Names of all channels under `prefix`, sorted.
pub(crate) async fn channel_names(redis: &Redis, prefix: &str) -> Result<Vec<String>> {
    let key = Keys::new(prefix, "-").channels();
    let mut names: Vec<String> = redis
        .query("listing channels", redis::cmd("SMEMBERS").arg(&key))
        .await?;
    names.sort();
    Ok(names)
}

impl Channel {
    /// Reads `active`, `parked` and `members` at once.
    pub(crate) async fn overview(&self) -> Result<Overview> {
        let keys = &self.keys;
        let (active, parked, members): (Vec<u64>, HashMap<String, Vec<u8>>, Vec<String>) = self
            .redis
            .query_pipe(
                "reading channel status",
                redis::pipe()
                    .zrange(keys.active(), 0, -1)
                    .hgetall(keys.parked())
                    .smembers(keys.members()),
            )
            .await?;
        Ok(Overview {
            active,
            parked: parse_parked(parked),
            members,
        })
    }

    /// Files of the channel given up on, by file then receiver.
    pub(crate) async fn parked_files(&self) -> Result<Vec<ParkedFile>> {
        let fields: HashMap<String, Vec<u8>> = self
            .redis
            .query(
                "reading parked files",
                redis::cmd("HGETALL").arg(self.keys.parked()),
            )
            .await?;
        Ok(parse_parked(fields))
    }

    /// The counters of receiver `id`.
    pub(crate) async fn receiver_counters(&self, id: &str) -> Result<ReceiverCounters> {
        let fields: HashMap<String, String> = self
            .redis
            .query(
                "reading receiver status",
                redis::cmd("HGETALL").arg(self.keys.receiver(id)),
            )
            .await?;
        let number = |f: &str| fields.get(f).and_then(|v| v.parse().ok());
        Ok(ReceiverCounters {
            files: number("files").unwrap_or(0),
            bytes: number("bytes").unwrap_or(0),
            parked: number("parked").unwrap_or(0),
            moved: number("moved").unwrap_or(0),
            owed: number("owed").unwrap_or(0),
            unparsed: number("unparsed").unwrap_or(0),
            rate: number("rate").unwrap_or(0),
            current: fields.get("current").cloned(),
            at: number("at").unwrap_or(0),
            last: fields.get("last").cloned(),
            seen: number("seen"),
        })
    }

    /// Adds `lines` to the lines receiver `id` could not parse.
    pub(crate) async fn add_unparsed(&self, id: &str, lines: u64) -> Result<()> {
        self.redis
            .query(
                "recording unparsed lines",
                redis::cmd("HINCRBY")
                    .arg(self.keys.receiver(id))
                    .arg("unparsed")
                    .arg(lines),
            )
            .await
    }

    /// The records of the files `active` names, in its order.
    pub(crate) async fn in_flight_records(&self, active: &[u64]) -> Result<Vec<FileInFlight>> {
        if active.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &fid in active {
            pipe.cmd("HMGET")
                .arg(self.keys.file(fid))
                .arg("state")
                .arg("offset")
                .arg("size");
        }
        let files: Vec<(Option<String>, Option<u64>, Option<u64>)> = self
            .redis
            .query_pipe("reading files in flight", &pipe)
            .await?;
        Ok(files
            .into_iter()
            .map(|(state, offset, size)| FileInFlight {
                uploading: state.as_deref() == Some("uploading"),
                published: offset.unwrap_or(0),
                size,
            })
            .collect())
    }

    /// The files sent in pieces, in no particular order.
    pub(crate) async fn split_records(&self) -> Result<Vec<SplitRecord>> {
        let split: HashMap<String, String> = self
            .redis
            .query(
                "reading files sent in pieces",
                redis::cmd("HGETALL").arg(self.keys.split()),
            )
            .await?;
        Ok(split
            .into_iter()
            .map(|(file, cut)| SplitRecord {
                file,
                pieces: cut
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            })
            .collect())
    }

    /// Of the pieces named `names`: the file id of each one uploaded
    /// completely (`sent` says so) that no receiver asked for again
    /// (`wanted` does not name it).
    pub(crate) async fn pieces_uploaded(&self, names: &[String]) -> Result<Vec<u64>> {
        let (records, wanted): (Vec<Option<String>>, Vec<Option<String>>) = self
            .redis
            .query_pipe(
                "reading pieces",
                redis::pipe()
                    .cmd("HMGET")
                    .arg(self.keys.sent())
                    .arg(names)
                    .cmd("HMGET")
                    .arg(self.keys.wanted())
                    .arg(names),
            )
            .await?;
        Ok(records
            .iter()
            .zip(&wanted)
            .filter(|(_, wanted)| wanted.is_none())
            .filter_map(|(record, _)| record.as_deref()?.strip_suffix(" sent"))
            .filter_map(|record| record.split(' ').next()?.parse::<u64>().ok())
            .collect())
    }
}

/// The `parked` hash's fields are `fid:receiver`, its values `name<TAB>reason`
/// (a poison file's name may not be UTF-8: it is shown lossily).
fn parse_parked(fields: HashMap<String, Vec<u8>>) -> Vec<ParkedFile> {
    let mut parked: Vec<ParkedFile> = fields
        .into_iter()
        .map(|(key, value)| {
            let value = String::from_utf8_lossy(&value);
            let receiver = key
                .split_once(':')
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            let (file, reason) = value.split_once('\t').unwrap_or((&value, ""));
            ParkedFile {
                file: file.to_owned(),
                receiver,
                reason: reason.to_owned(),
            }
        })
        .collect();
    parked.sort_by(|a, b| (&a.file, &a.receiver).cmp(&(&b.file, &b.receiver)));
    parked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::{LocalRedis, LocalRedisOptions};

    async fn channel(server: &LocalRedis) -> Channel {
        let redis = Redis::connect(&server.url()).await.unwrap();
        Channel::new(redis, Keys::new("rd", "t"))
    }

    /// Writes what the protocol's scripts would have written.
    async fn write(channel: &Channel, pipe: &redis::Pipeline) {
        let _: () = channel.redis.query_pipe("testing", pipe).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_channel_reads_as_nothing_at_all() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        let overview = channel.overview().await.unwrap();
        assert!(overview.active.is_empty() && overview.parked.is_empty());
        assert!(overview.members.is_empty());
        assert_eq!(
            channel.receiver_counters("r").await.unwrap(),
            ReceiverCounters::default()
        );
        assert!(channel.in_flight_records(&[]).await.unwrap().is_empty());
        assert!(channel.split_records().await.unwrap().is_empty());
        assert!(
            channel_names(&channel.redis, "rd")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_in_flight_parked_files_and_members_are_read_back() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        let keys = &channel.keys;
        write(
            &channel,
            redis::pipe()
                .sadd(keys.channels(), "t")
                .zadd(keys.active(), 3, 1)
                .zadd(keys.active(), 4, 2)
                .hset_multiple(keys.file(3), &[("state", "uploading"), ("offset", "10")])
                .hset_multiple(keys.file(4), &[("state", "sent"), ("offset", "8")])
                .hset(keys.file(4), "size", 8)
                .hset(keys.parked(), "5:b", b"z.log\tbroken".as_slice())
                .hset(keys.parked(), "6:a", b"a\xff\tbad".as_slice())
                .sadd(keys.members(), "a"),
        )
        .await;
        let overview = channel.overview().await.unwrap();
        assert_eq!(overview.active, [3, 4]);
        assert_eq!(overview.members, ["a"]);
        let parked: Vec<_> = overview
            .parked
            .iter()
            .map(|p| (p.file.as_str(), p.receiver.as_str(), p.reason.as_str()))
            .collect();
        assert_eq!(
            parked,
            [("a\u{fffd}", "a", "bad"), ("z.log", "b", "broken")]
        );
        assert_eq!(channel.parked_files().await.unwrap().len(), 2);
        assert_eq!(
            channel.in_flight_records(&overview.active).await.unwrap(),
            [
                FileInFlight {
                    uploading: true,
                    published: 10,
                    size: None
                },
                FileInFlight {
                    uploading: false,
                    published: 8,
                    size: Some(8)
                },
            ]
        );
        assert_eq!(channel_names(&channel.redis, "rd").await.unwrap(), ["t"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receivers_counters_are_read_back_with_the_unparsed_lines_added() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        write(
            &channel,
            redis::pipe().hset_multiple(
                channel.keys.receiver("r"),
                &[
                    ("files", "2"),
                    ("bytes", "30"),
                    ("current", "c.log"),
                    ("at", "5"),
                    ("last", "b.log"),
                    ("seen", "1000"),
                    ("rate", "7"),
                ],
            ),
        )
        .await;
        channel.add_unparsed("r", 3).await.unwrap();
        channel.add_unparsed("r", 4).await.unwrap();
        let counters = channel.receiver_counters("r").await.unwrap();
        assert_eq!(
            counters,
            ReceiverCounters {
                files: 2,
                bytes: 30,
                unparsed: 7,
                rate: 7,
                current: Some("c.log".into()),
                at: 5,
                last: Some("b.log".into()),
                seen: Some(1000),
                ..ReceiverCounters::default()
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_piece_counts_as_uploaded_once_sent_and_not_wanted_again() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        let keys = &channel.keys;
        write(
            &channel,
            redis::pipe()
                .hset(keys.split(), "big", "3 300 300:1")
                .hset(keys.sent(), "big#1", "7 100:1 sent")
                .hset(keys.sent(), "big#2", "8 100:1 uploading")
                .hset(keys.sent(), "big#3", "9 100:1 sent")
                .hset(keys.wanted(), "big#3", "9 100:1 1 9 r"),
        )
        .await;
        assert_eq!(
            channel.split_records().await.unwrap(),
            [SplitRecord {
                file: "big".into(),
                pieces: 3
            }]
        );
        let names = ["big#1", "big#2", "big#3"].map(str::to_owned);
        assert_eq!(channel.pieces_uploaded(&names).await.unwrap(), [7]);
    }
}
