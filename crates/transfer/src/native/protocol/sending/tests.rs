//! Each of the sender's steps against a real redis-server, one test per
//! answer worth telling apart.

use super::*;
use crate::native::protocol::Keys;
use crate::native::protocol::channel::ChunkRange;
use crate::redis::memory;
use crate::redis::{LocalRedis, LocalRedisOptions, Redis};

const SLOT: u64 = 4096;
const COST: u64 = SLOT + memory::KEY_COST;
const LIMIT: u64 = 4 * COST;

/// A server with a fresh broadcast channel `t` for receiver `r`.
async fn channel() -> (LocalRedis, Channel) {
    let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
    let redis = Redis::connect(&server.url()).await.unwrap();
    let channel = Channel::new(redis, Keys::new("rd", "t"));
    let audience = Audience::Broadcast(vec!["r".into()]);
    let opened = channel.create(&audience, LIMIT, SLOT).await.unwrap();
    assert_eq!(opened, Opened::Ready);
    (server, channel)
}

fn file(name: &str) -> Announcement<'_> {
    Announcement {
        name,
        identity: "10:1",
        resumable: true,
        slot: SLOT,
        acks_needed: 1,
        again: None,
        lowest_fid: 1,
        piece: None,
        check_forgotten: true,
        whole: None,
    }
}

/// `file(name)` coming whole: a value of `len` bytes.
fn whole(name: &str, len: usize) -> Announcement<'_> {
    let value = bytes::Bytes::from(vec![7; len]);
    Announcement {
        whole: Some(Whole {
            digest: blake3::hash(&value),
            value,
            size: 10,
            limit: LIMIT,
        }),
        ..file(name)
    }
}

async fn get<T: redis::FromRedisValue>(channel: &Channel, command: &redis::Cmd) -> T {
    channel.redis.query("testing", command).await.unwrap()
}

async fn held(channel: &Channel) -> u64 {
    get(
        channel,
        redis::cmd("HGET").arg(channel.keys.meta()).arg("held"),
    )
    .await
}

async fn announce(channel: &Channel, name: &str) -> u64 {
    let announced = channel.announce(&file(name)).await.unwrap();
    assert_eq!(announced.state, AnnounceState::Upload);
    announced.fid
}

async fn reserve(channel: &Channel, fid: u64, want: u64, published: u64) -> Reserve {
    let request = RoomRequest {
        fid,
        want,
        limit: LIMIT,
        published,
    };
    channel.reserve(&request).await.unwrap().grant
}

async fn publish(channel: &Channel, fid: u64, from: u64, count: u64) -> Publish {
    let digests = "0".repeat(64 * (count - from) as usize);
    let chunks = Publication {
        fid,
        from,
        count,
        digests: &digests,
        original: count,
        stored: count,
    };
    channel.publish(&chunks).await.unwrap()
}

async fn finish(channel: &Channel, fid: u64, chunks: u64) -> Finish {
    let ending = Ending {
        fid,
        size: chunks,
        digest: blake3::hash(b""),
        chunks,
        last_cost: COST,
    };
    channel.finish_upload(&ending).await.unwrap()
}

async fn set(channel: &Channel, key: String, field: &str, value: &str) {
    let command = redis::cmd("HSET").arg(key).arg(field).arg(value).clone();
    channel
        .redis
        .query::<()>("testing", &command)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_channel_of_another_audience_or_version_says_which() {
    let (_server, channel) = channel().await;
    let same = Audience::Broadcast(vec!["r".into()]);
    assert_eq!(
        channel.create(&same, LIMIT, SLOT).await.unwrap(),
        Opened::Ready
    );
    assert_eq!(
        channel
            .create(&Audience::Workers, LIMIT, SLOT)
            .await
            .unwrap(),
        Opened::OtherAudience {
            mode: "broadcast".into(),
            receivers: "r".into()
        }
    );
    set(&channel, channel.keys.meta(), "version", "4").await;
    assert_eq!(
        channel.create(&same, LIMIT, SLOT).await.unwrap(),
        Opened::OtherVersion("4".into())
    );
    let names: Vec<String> = channel
        .redis
        .query(
            "testing",
            redis::cmd("SMEMBERS").arg(channel.keys.channels()),
        )
        .await
        .unwrap();
    assert_eq!(names, ["t"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_is_new_resumed_skipped_or_forgotten() {
    let (_server, channel) = channel().await;
    let fid = announce(&channel, "a").await;
    assert_eq!(reserve(&channel, fid, 2, 0).await, Reserve::Granted(2));
    assert_eq!(publish(&channel, fid, 0, 2).await, Publish::Done);
    let resumed = channel.announce(&file("a")).await.unwrap();
    assert_eq!(
        (
            resumed.fid,
            resumed.state,
            resumed.published,
            resumed.offset
        ),
        (fid, AnnounceState::Upload, 2, 2)
    );
    assert_eq!(finish(&channel, fid, 2).await, Finish::Recorded);
    let again = channel.announce(&file("a")).await.unwrap();
    assert_eq!((again.fid, again.state), (fid, AnnounceState::AlreadySent));
    // Redis knows fewer file ids than this sender was given.
    let ahead = Announcement {
        lowest_fid: fid + 5,
        ..file("b")
    };
    let forgot = channel.announce(&ahead).await.unwrap();
    assert_eq!(forgot.state, AnnounceState::Forgot);
    let unchecked = Announcement {
        check_forgotten: false,
        ..ahead
    };
    let announced = channel.announce(&unchecked).await.unwrap();
    assert_eq!(
        (announced.fid, announced.state),
        (fid + 5, AnnounceState::Upload)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_served_only_after_unfinished_uploads_and_counted() {
    let (_server, channel) = channel().await;
    let busy = announce(&channel, "busy").await;
    set(&channel, channel.keys.wanted(), "old", "1 10:1 1 1 r").await;
    set(&channel, channel.keys.wanted(), "bad", "1 10:1").await;
    let mut requests = channel.requests().await.unwrap();
    requests.sort_by_key(|r| format!("{r:?}"));
    let [Request::Again(wanted), Request::Malformed { name, .. }] = requests.as_slice() else {
        panic!("{requests:?}");
    };
    assert_eq!((wanted.name.as_str(), name.as_str()), ("old", "bad"));
    assert_eq!((wanted.round, wanted.acks_needed()), (1, 1));
    let again = Announcement {
        again: Some(wanted),
        acks_needed: wanted.acks_needed(),
        ..file("old")
    };
    let answer = channel.announce(&again).await.unwrap();
    assert_eq!(
        (answer.fid, answer.state, answer.requests),
        (busy, AnnounceState::Busy, 2)
    );
    assert_eq!(finish(&channel, busy, 0).await, Finish::Recorded);
    let answer = channel.announce(&again).await.unwrap();
    assert_eq!((answer.state, answer.requests), (AnnounceState::Upload, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_parks_a_wanted_file_for_each_receiver() {
    let (_server, channel) = channel().await;
    set(&channel, channel.keys.wanted(), "lost", "1 10:1 1 1 r,s").await;
    assert_eq!(channel.give_up("lost", "gone").await.unwrap(), 2);
    assert_eq!(channel.requests().await.unwrap(), []);
    assert_eq!(
        channel.give_up("lost", "gone").await.unwrap(),
        0,
        "not wanted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserving_room_tells_a_lost_an_unread_and_a_taken_over_upload() {
    let (_server, channel) = channel().await;
    let fid = announce(&channel, "a").await;
    assert_eq!(reserve(&channel, fid, 1, 0).await, Reserve::Granted(1));
    assert_eq!(reserve(&channel, fid, 1, 3).await, Reserve::Lost);
    assert_eq!(reserve(&channel, fid + 1, 1, 0).await, Reserve::Lost);
    set(&channel, channel.keys.file(fid), "acks", "1").await;
    assert_eq!(reserve(&channel, fid, 2, 0).await, Reserve::Unread);
    assert_eq!(
        reserve(&channel, fid, 2, 0).await,
        Reserve::Unread,
        "retried"
    );
    let other = announce(&channel, "b").await;
    assert!(channel.abort_upload(other, "changed").await.unwrap());
    assert!(!channel.abort_upload(other, "changed").await.unwrap());
    assert_eq!(reserve(&channel, other, 1, 0).await, Reserve::TakenOver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_after_a_gap_and_finishing_a_lost_or_abandoned_upload_are_refused() {
    let (_server, channel) = channel().await;
    let fid = announce(&channel, "a").await;
    assert_eq!(publish(&channel, fid, 1, 2).await, Publish::Gap);
    assert_eq!(publish(&channel, fid + 1, 0, 1).await, Publish::Gap);
    assert_eq!(publish(&channel, fid, 0, 1).await, Publish::Done);
    assert_eq!(finish(&channel, fid, 2).await, Finish::Lost);
    assert_eq!(finish(&channel, fid + 1, 0).await, Finish::Lost);
    assert_eq!(finish(&channel, fid, 1).await, Finish::Recorded);
    assert_eq!(finish(&channel, fid, 1).await, Finish::Recorded, "retried");
    let other = announce(&channel, "b").await;
    channel.abort_upload(other, "changed").await.unwrap();
    assert_eq!(finish(&channel, other, 0).await, Finish::Abandoned);
    let active = channel.active_files().await.unwrap();
    assert!(active.iter().all(|file| !file.uploading), "{active:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_records_its_end_of_input_waits_rate_and_pieces() {
    let (_server, channel) = channel().await;
    let id = channel.mark_end_of_input().await.unwrap();
    assert!(id.contains('-'), "{id}");
    channel.mark_waiting(true).await.unwrap();
    channel.write_rate(5).await.unwrap();
    let meta = channel.meta().await.unwrap().unwrap();
    assert!(meta.ended);
    assert!(meta.number("waiting") > 0 && meta.number("rate") == 5);
    channel.mark_waiting(false).await.unwrap();
    channel.forget_rate().await.unwrap();
    let meta = channel.meta().await.unwrap().unwrap();
    assert_eq!((meta.number("waiting"), meta.number("rate")), (0, 0));
    assert_eq!(channel.recorded_split("a").await.unwrap(), None);
    channel.record_split("a", "2 10 5:1").await.unwrap();
    assert_eq!(
        channel.recorded_split("a").await.unwrap().as_deref(),
        Some("2 10 5:1")
    );
    let fid = announce(&channel, "a").await;
    assert_eq!(finish(&channel, fid, 0).await, Finish::Recorded);
    assert_eq!(
        channel.sent_completely(&["a", "b"]).await.unwrap(),
        [true, false]
    );
    let outstanding = channel.outstanding().await.unwrap();
    assert_eq!((outstanding.active, outstanding.wanted), (1, 0));
}

/// After Redis lost writes, the file receivers read (the oldest) can be
/// unfinished while newer files fill the budget: it must still get
/// room, or nobody ever frees any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_file_gets_room_that_newer_files_hold_and_no_more() {
    let (_server, channel) = channel().await;
    let old = announce(&channel, "old").await;
    assert_eq!(reserve(&channel, old, 1, 0).await, Reserve::Granted(1));
    let new = announce(&channel, "new").await;
    assert_eq!(
        reserve(&channel, new, 8, 0).await,
        Reserve::Granted(3),
        "the rest of the budget"
    );
    // Full. The newer file waits; the older one goes on, chunk by chunk,
    // until it alone would fill a budget.
    assert_eq!(reserve(&channel, new, 8, 0).await, Reserve::Granted(3));
    for reserved in [2, 3, 4] {
        assert_eq!(
            reserve(&channel, old, 8, 0).await,
            Reserve::Granted(reserved)
        );
    }
    assert_eq!(
        reserve(&channel, old, 8, 0).await,
        Reserve::Granted(4),
        "a limit of its own"
    );
    // Its consumed prefix is released early, as if it were alone.
    set(&channel, channel.keys.file(old), "pos:r", "2").await;
    assert_eq!(publish(&channel, old, 0, 4).await, Publish::Done);
    let plan = channel.release_plan(true).await.unwrap();
    assert_eq!(
        plan.0,
        [ChunkRange {
            fid: old,
            from: 0,
            to: 2
        }]
    );
    assert_eq!(
        channel.release_plan(false).await.unwrap(),
        ReleasePlan::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_is_stored_whole_by_its_announcement() {
    let (_server, channel) = channel().await;
    let stored = channel.announce(&whole("a", 100)).await.unwrap();
    assert_eq!(stored.state, AnnounceState::Stored);
    let record = channel.keys.file(stored.fid);
    let fields: Vec<String> = get(
        &channel,
        redis::cmd("HMGET")
            .arg(&record)
            .arg(&["state", "size", "published", "stored"][..]),
    )
    .await;
    assert_eq!(fields, ["sent", "10", "1", "100"]);
    let data: Vec<u8> = get(&channel, redis::cmd("HGET").arg(&record).arg("data")).await;
    assert_eq!(data, vec![7; 100]);
    assert_eq!(held(&channel).await, memory::chunk_cost(100));
    let sent: String = get(
        &channel,
        redis::cmd("HGET").arg(channel.keys.sent()).arg("a"),
    )
    .await;
    assert_eq!(sent, format!("{} 10:1 sent", stored.fid));
    let entries: u64 = get(&channel, redis::cmd("XLEN").arg(channel.keys.files())).await;
    assert_eq!(entries, 2, "the open mark and the file");
    // An attempt whose reply was lost finds it sent.
    let again = channel.announce(&whole("a", 100)).await.unwrap();
    assert_eq!(
        (again.fid, again.state),
        (stored.fid, AnnounceState::AlreadySent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_without_room_is_not_announced() {
    let (_server, channel) = channel().await;
    let big = announce(&channel, "big").await;
    assert_eq!(reserve(&channel, big, 4, 0).await, Reserve::Granted(4));
    let full = channel.announce(&whole("small", 100)).await.unwrap();
    assert_eq!(full.state, AnnounceState::Full);
    let entries: u64 = get(&channel, redis::cmd("XLEN").arg(channel.keys.files())).await;
    assert_eq!(entries, 2, "the open mark and the big file only");
    // Alone, it goes whatever the budget: an empty channel has room for one.
    let (_other, empty) = self::channel().await;
    let oversized = Announcement {
        whole: whole("huge", 1000).whole.map(|w| Whole { limit: 1, ..w }),
        ..file("huge")
    };
    let stored = empty.announce(&oversized).await.unwrap();
    assert_eq!(stored.state, AnnounceState::Stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_again_stored_whole_is_not_stored_twice() {
    let (_server, channel) = channel().await;
    set(&channel, channel.keys.wanted(), "old", "1 10:1 1 1 r").await;
    let requests = channel.requests().await.unwrap();
    let [Request::Again(wanted)] = requests.as_slice() else {
        panic!("{requests:?}");
    };
    let again = Announcement {
        again: Some(wanted),
        ..whole("old", 50)
    };
    let stored = channel.announce(&again).await.unwrap();
    assert_eq!((stored.state, stored.requests), (AnnounceState::Stored, 0));
    // The same step again (its reply lost) finds it stored.
    let retried = channel.announce(&again).await.unwrap();
    assert_eq!(
        (retried.fid, retried.state),
        (stored.fid, AnnounceState::AlreadySent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_small_files_are_announced_in_order_up_to_the_first_not_stored() {
    let (_server, channel) = channel().await;
    let first = channel.announce_many(&[whole("a", 100)]).await.unwrap();
    assert_eq!(first[0].state, AnnounceState::Stored);
    // `a` was sent before; `b` is stored; `c` does not fit beside them,
    // so `d` is not looked at: it would overtake `c`.
    let big = LIMIT as usize - 2 * memory::chunk_cost(100) as usize;
    let files = [
        whole("a", 100),
        whole("b", 100),
        whole("c", big),
        whole("d", 10),
    ];
    let answers = channel.announce_many(&files).await.unwrap();
    let states: Vec<_> = answers.iter().map(|a| a.state).collect();
    use AnnounceState::*;
    assert_eq!(states, [AlreadySent, Stored, Full]);
    assert_eq!(answers[0].fid, first[0].fid);
    let entries: u64 = get(&channel, redis::cmd("XLEN").arg(channel.keys.files())).await;
    assert_eq!(entries, 3, "the open mark, a and b");
}
