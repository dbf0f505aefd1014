//! Each step of the receiver's side against a real redis-server, one test
//! per answer. The state a sender would have made is written directly, so
//! these tests depend on no other step.

use std::time::Duration;

use super::records::Published;
use super::*;
use crate::native::protocol::Keys;
use crate::native::protocol::channel::ChunkRange;
use crate::redis::{LocalRedis, LocalRedisOptions, Redis};

const RECEIVER: &str = "r";
const GROUP: &str = "r:r";

struct Fixture {
    channel: Channel,
    _server: LocalRedis,
}

impl Fixture {
    /// A channel in `mode` with one consumer group, `group`.
    async fn new(mode: &str, group: &str) -> Fixture {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let redis = Redis::connect(&server.url()).await.unwrap();
        let fixture = Fixture {
            channel: Channel::new(redis, Keys::new("rd", "t")),
            _server: server,
        };
        let keys = &fixture.channel.keys;
        fixture.hset(&keys.meta(), &[("mode", mode)]).await;
        let mut create = redis::cmd("XGROUP");
        create.arg("CREATE").arg(keys.files()).arg(group).arg("$");
        fixture.send::<()>(create.arg("MKSTREAM")).await;
        fixture
    }

    async fn send<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        self.channel.redis.query("testing", command).await.unwrap()
    }

    async fn hset(&self, key: &str, fields: &[(&str, &str)]) {
        let mut command = redis::cmd("HSET");
        command.arg(key);
        for (field, value) in fields {
            command.arg(*field).arg(*value);
        }
        self.send::<()>(&command).await;
    }

    async fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.send(redis::cmd("HGET").arg(key).arg(field)).await
    }

    /// File 1 as a sender leaves it once uploaded whole, for one receiver.
    async fn uploaded_file(&self, identity: &str) {
        let record = self.channel.keys.file(1);
        let fields = [
            ("name", "a.log"),
            ("identity", identity),
            ("chunk", "4096"),
            ("state", "sent"),
            ("need", "1"),
            ("acks", "0"),
            ("reserved", "2"),
            ("published", "2"),
            ("freed", "0"),
            ("tail", "100"),
        ];
        self.hset(&record, &fields).await;
    }

    /// Adds an entry to `files`.
    async fn add(&self, fields: &[(&str, &str)]) -> String {
        let mut command = redis::cmd("XADD");
        command.arg(self.channel.keys.files()).arg("*");
        for (field, value) in fields {
            command.arg(*field).arg(*value);
        }
        self.send(&command).await
    }

    /// Announces file 1 and delivers the announcement to `id` of `group`.
    async fn announced(&self, group: &str, id: &str) -> String {
        let entry = self.add(&[("kind", "file"), ("fid", "1")]).await;
        assert_eq!(self.deliver(group, id).await, entry);
        entry
    }

    /// Delivers the next new announcement to `id` of `group`.
    async fn deliver(&self, group: &str, id: &str) -> String {
        let reader = Reader { group, id };
        let read = self
            .channel
            .read_announcements(reader, ReadFrom::New, 1, None);
        let announcement = read.await.unwrap().announcements.pop().unwrap();
        assert_eq!(announcement.announced, Announced::File(1));
        announcement.entry
    }

    fn delivery<'a>(&self, entry: &'a str) -> Delivery<'a> {
        Delivery {
            fid: 1,
            entry,
            reader: Reader {
                group: GROUP,
                id: RECEIVER,
            },
        }
    }

    async fn pending(&self, group: &str) -> u64 {
        let command = redis::cmd("XPENDING")
            .arg(self.channel.keys.files())
            .arg(group)
            .clone();
        let (count, ..): (u64, redis::Value, redis::Value, redis::Value) =
            self.send(&command).await;
        count
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_records_the_position_and_goes_back_only_on_a_restart() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("1:1").await;
    let at = |chunks, restart| Consumption {
        fid: 1,
        receiver: RECEIVER,
        chunks,
        restart,
    };
    let record = fixture.channel.keys.file(1);
    let consumed = fixture.channel.consume(at(2, false)).await.unwrap();
    assert_eq!(consumed, Consumed::Recorded);
    fixture.channel.consume(at(1, false)).await.unwrap();
    assert_eq!(fixture.hget(&record, "pos:r").await.as_deref(), Some("2"));
    fixture.channel.consume(at(0, true)).await.unwrap();
    assert_eq!(fixture.hget(&record, "pos:r").await.as_deref(), Some("0"));
    let gone = Consumption {
        fid: 9,
        ..at(1, false)
    };
    assert_eq!(
        fixture.channel.consume(gone).await.unwrap(),
        Consumed::NoRecord
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_done_settles_the_file_and_plans_its_release() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("1:1").await;
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let outcome = Outcome::Done { bytes: 10, rate: 0 };
    let plan = fixture.channel.ack(fixture.delivery(&entry), outcome);
    let plan = plan.await.unwrap();
    let range = ChunkRange {
        fid: 1,
        from: 0,
        to: 2,
    };
    assert_eq!(plan, ReleasePlan(vec![range]));
    let record = fixture.channel.keys.file(1);
    assert_eq!(
        fixture.hget(&record, "ack:r").await.as_deref(),
        Some("done")
    );
    assert_eq!(
        fixture.hget(&record, "state").await.as_deref(),
        Some("done")
    );
    let counters = fixture.channel.keys.receiver(RECEIVER);
    assert_eq!(
        fixture.hget(&counters, "bytes").await.as_deref(),
        Some("10")
    );
    assert_eq!(fixture.pending(GROUP).await, 0);
    fixture.channel.reclaim(&plan).await.unwrap();
    assert!(
        !fixture.channel.file_exists(1).await.unwrap(),
        "released and forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_parked_lists_the_file_with_its_reason() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("1:1").await;
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let outcome = Outcome::Parked { reason: "bad" };
    fixture
        .channel
        .ack(fixture.delivery(&entry), outcome)
        .await
        .unwrap();
    let parked = fixture.channel.keys.parked();
    let listed = fixture.hget(&parked, "1:r").await;
    assert_eq!(listed.as_deref(), Some("a.log\tbad"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_skip_only_acknowledges_the_announcement() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("1:1").await;
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let plan = fixture.channel.ack(fixture.delivery(&entry), Outcome::Skip);
    assert_eq!(plan.await.unwrap(), ReleasePlan::default());
    assert_eq!(fixture.pending(GROUP).await, 0);
    let record = fixture.channel.keys.file(1);
    assert_eq!(fixture.hget(&record, "ack:r").await, None);
}

fn takeover<'a>(entry: &'a str, max_failures: u32) -> WorkFailure<'a> {
    WorkFailure {
        fid: 1,
        worker: "w",
        entry,
        min_idle_ms: 0,
        max_failures,
        reason: "broken",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requeues_a_file_until_it_failed_too_often_then_parks_it() {
    let fixture = Fixture::new("workers", "workers").await;
    fixture.uploaded_file("1:1").await;
    let entry = fixture.announced("workers", "w").await;
    let failed = fixture.channel.failed(takeover(&entry, 2)).await.unwrap();
    assert_eq!(failed, Failed::Requeued);
    let again = fixture.deliver("workers", "w").await;
    let failed = fixture.channel.failed(takeover(&again, 2)).await.unwrap();
    assert_eq!(failed, Failed::Parked);
    let parked = fixture.channel.keys.parked();
    let listed = fixture.hget(&parked, "1:w").await.unwrap();
    assert_eq!(listed, "a.log\tbroken (failed 2 times)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_is_gone_for_an_entry_no_longer_pending() {
    let fixture = Fixture::new("workers", "workers").await;
    fixture.uploaded_file("1:1").await;
    let entry = fixture.announced("workers", "w").await;
    fixture.channel.failed(takeover(&entry, 3)).await.unwrap();
    let failed = fixture.channel.failed(takeover(&entry, 3)).await.unwrap();
    assert_eq!(failed, Failed::Gone, "handled already");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_asks_for_a_file_from_disk_again() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("10:20").await;
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let requested = fixture
        .channel
        .request_again(fixture.delivery(&entry), 3, "gone")
        .await
        .unwrap();
    assert_eq!(requested, Requested::Wanted);
    let wanted = fixture.channel.wanted_file("a.log").await.unwrap().unwrap();
    assert!(wanted.is_for(RECEIVER), "{wanted:?}");
    let all = fixture.channel.wanted_files().await.unwrap();
    assert_eq!(all, [wanted]);
    let again = fixture
        .channel
        .request_again(fixture.delivery(&entry), 3, "gone");
    assert_eq!(again.await.unwrap(), Requested::Gone, "settled already");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_parks_a_file_read_from_a_stream() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("stream").await;
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let requested = fixture
        .channel
        .request_again(fixture.delivery(&entry), 3, "gone");
    assert_eq!(requested.await.unwrap(), Requested::Parked);
    assert_eq!(fixture.channel.wanted_file("a.log").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_is_gone_for_a_vanished_record() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let requested = fixture
        .channel
        .request_again(fixture.delivery(&entry), 3, "gone");
    assert_eq!(requested.await.unwrap(), Requested::Gone);
    assert_eq!(fixture.pending(GROUP).await, 0, "acknowledged all the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_returns_bytes_and_forgets_a_vanished_file() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("1:1").await;
    let released = fixture.channel.release(1, 1).await.unwrap();
    assert_eq!(released, Released::Returned);
    let record = fixture.channel.keys.file(1);
    assert_eq!(fixture.hget(&record, "freed").await.as_deref(), Some("1"));
    assert_eq!(
        fixture.channel.release(9, 1).await.unwrap(),
        Released::NoRecord
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_are_read_as_files_markers_and_poison() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.add(&[("kind", "file"), ("fid", "7")]).await;
    fixture.add(&[("kind", "eof")]).await;
    fixture.add(&[("kind", "other")]).await;
    fixture.add(&[("kind", "file"), ("fid", "x")]).await;
    let reader = Reader {
        group: GROUP,
        id: RECEIVER,
    };
    let mut seen = Vec::new();
    for _ in 0..4 {
        let read = fixture
            .channel
            .read_announcements(reader, ReadFrom::New, 1, None);
        seen.push(read.await.unwrap().announcements.pop().unwrap().announced);
    }
    use Announced::*;
    assert_eq!(seen, [File(7), EndOfInput, Marker, Malformed]);
    let block = Some(Duration::from_millis(10));
    let read = fixture
        .channel
        .read_announcements(reader, ReadFrom::New, 1, block);
    assert!(read.await.unwrap().announcements.is_empty());
    let pending = fixture.channel.pending_files(reader).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.fid).collect::<Vec<_>>(), [7]);
    let entry = &pending[0].entry;
    assert_eq!(
        fixture.channel.announced_file(entry).await.unwrap(),
        Some(7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_log_is_read_with_digests_end_and_abort() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    let log = fixture.channel.keys.file_log(1);
    let digest = blake3::hash(b"chunk");
    let hex = digest.to_hex().to_string();
    let add = |fields: Vec<(&'static str, String)>| {
        let mut command = redis::cmd("XADD");
        command.arg(&log).arg("*");
        for (field, value) in fields {
            command.arg(field).arg(value);
        }
        command
    };
    fixture
        .send::<String>(&add(vec![("n", "2".into()), ("d", hex.clone())]))
        .await;
    let end = vec![
        ("end", "1".into()),
        ("size", "5".into()),
        ("digest", hex.clone()),
    ];
    fixture.send::<String>(&add(end)).await;
    fixture
        .send::<String>(&add(vec![("abort", "changed".into())]))
        .await;
    let entries = fixture
        .channel
        .read_upload_log(1, "0-0", None)
        .await
        .unwrap();
    let published = Published {
        count: 2,
        digests: vec![Some(digest)],
    };
    assert_eq!(entries[0].published, Some(published));
    let end = UploadEnd {
        size: 5,
        digest: hex,
    };
    assert_eq!(entries[1].end, Some(end));
    assert_eq!(entries[2].aborted.as_deref(), Some("changed"));
    let after = &entries[2].id;
    let block = Some(Duration::from_millis(10));
    let nothing = fixture
        .channel
        .read_upload_log(1, after, block)
        .await
        .unwrap();
    assert!(nothing.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_record_says_who_it_is_for_and_whether_it_is_usable() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("10:20").await;
    let record = fixture.channel.keys.file(1);
    fixture
        .hset(&record, &[("for", "x,r"), ("origin", "4")])
        .await;
    let read = fixture.channel.file_record(1).await.unwrap();
    assert!(!read.is_missing() && !read.is_over());
    assert!(read.is_for(RECEIVER) && !read.is_for("y"));
    assert!(!read.settled_by(RECEIVER));
    assert_eq!(read.name(), Ok("a.log".to_owned()));
    assert_eq!((read.chunk_slot(), read.origin()), (4096, Some(4)));
    assert_eq!(read.identity(), "10:20");
    assert!(
        fixture
            .channel
            .is_upload_again(1, "a.log", RECEIVER)
            .await
            .unwrap()
    );
    assert!(fixture.channel.file_record(9).await.unwrap().is_missing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_stored_whole_is_read_with_its_record_and_goes_with_its_ack() {
    let fixture = Fixture::new("broadcast", GROUP).await;
    fixture.uploaded_file("3:1").await;
    let record = fixture.channel.keys.file(1);
    let digest = blake3::hash(b"abc").to_hex().to_string();
    let stored = [
        ("data", "xyz"),
        ("size", "3"),
        ("digest", digest.as_str()),
        ("reserved", "1"),
        ("published", "1"),
        ("acct", "100"),
    ];
    fixture.hset(&record, &stored).await;
    let meta = fixture.channel.keys.meta();
    fixture.hset(&meta, &[("held", "100")]).await;
    let counters = fixture.channel.keys.receiver(RECEIVER);
    fixture.hset(&counters, &[("current", "a.log")]).await;
    let read = fixture.channel.file_record(1).await.unwrap();
    let whole = read.whole().unwrap().unwrap();
    assert_eq!((whole.value.as_ref(), whole.size), (&b"xyz"[..], 3));
    assert_eq!(whole.digest, blake3::hash(b"abc"));
    let entry = fixture.announced(GROUP, RECEIVER).await;
    let outcome = Outcome::Done { bytes: 3, rate: 42 };
    let plan = fixture.channel.ack(fixture.delivery(&entry), outcome);
    assert_eq!(
        plan.await.unwrap(),
        ReleasePlan(vec![]),
        "nothing to delete"
    );
    assert!(
        !fixture.channel.file_exists(1).await.unwrap(),
        "gone at once"
    );
    assert_eq!(fixture.hget(&meta, "held").await.as_deref(), Some("0"));
    assert_eq!(fixture.hget(&counters, "rate").await.as_deref(), Some("42"));
    assert_eq!(fixture.hget(&counters, "current").await, None);
    // A record whose size went missing is poison, named as such.
    fixture.uploaded_file("3:1").await;
    fixture.hset(&record, &[("data", "xyz")]).await;
    let read = fixture.channel.file_record(1).await.unwrap();
    assert_eq!(read.whole().unwrap().unwrap_err(), "size");
}
