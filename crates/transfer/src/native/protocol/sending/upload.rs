//! The steps of one file's upload: announcing it, reserving room,
//! publishing chunks, and finishing or abandoning it.

use std::future::Future;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use redis::Script;

use super::Wanted;
use crate::error::Result;
use crate::native::protocol::channel::Channel;
use crate::native::protocol::script;
use crate::redis::memory;
use crate::redis::shards::Shards;

/// Abandons an upload whose source changed while it was read: receivers
/// reading it stop with the reason, and its chunks are reclaimed.
/// KEYS: meta. ARGV: base, fid, reason. Returns 1 when aborted now, 0 when
/// it was no longer being uploaded.
static ABORT: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/abort.lua")));

/// Announces a file, or finds the announcement a previous run made.
/// KEYS: meta. ARGV: base, name, identity, resumable (0/1), chunk size,
/// acks needed, then for a re-supply (else three ''): the receivers it is
/// for (comma-separated, `*` for any worker), the original file id, the
/// round; then the lowest file id a new file may get (above every id this
/// sender has seen: after Redis lost its latest writes, an id must not
/// name two files); then `I/N` when the file is piece I of N of a file
/// sent with `--split` (else ''); then 1 to answer `forgot` when Redis
/// no longer knows file ids this sender was given (else 0); then, for a
/// file that comes whole (see [`Whole`]), its chunk value, size, digest
/// (hex), what the value costs Redis, and the channel's budget.
/// Returns `{fid, state, published, chunk slot, offset, stored, requests}`
/// where state is `new`, `uploading` or `sent`, `stored` for a file that
/// came whole and is complete now, `full` (nothing announced) when one
/// that comes whole does not fit the budget now, `busy` for a re-supply
/// while any upload is unfinished (of this file, or one a stopped sender
/// left, which receivers read first), or `forgot` (nothing
/// announced) when Redis came back from a snapshot older than this
/// sender's last announcement; a resumed upload
/// keeps its chunk slot and goes on after `offset` original bytes, which
/// took `stored` bytes;
/// `requests` counts the names in `wanted` (after this one), so a sender
/// looks at them only when there are some.
static ANNOUNCE: LazyLock<Script> = LazyLock::new(|| {
    script(concat!(
        include_str!("../scripts/announce.lua"),
        include_str!("../scripts/announce_one.lua")
    ))
});

/// ANNOUNCE for several files that come whole, in order, in one step:
/// stops after the first one that is neither stored now nor sent before.
/// KEYS: meta. ARGV: base, the number of arguments per file, then each
/// file's arguments as [`ANNOUNCE`] takes them after base.
/// Returns ANNOUNCE's answer for each file up to that one.
static ANNOUNCE_MANY: LazyLock<Script> = LazyLock::new(|| {
    script(concat!(
        include_str!("../scripts/announce.lua"),
        include_str!("../scripts/announce_many.lua")
    ))
});

/// Reserves room in the channel's budget for chunks up to `want`.
/// KEYS: meta. ARGV: base, fid, want (chunk count), limit (bytes), chunks
/// the sender published. Returns `{reserved, last event id}`; reserved is
/// -1 when the file is no longer being uploaded (aborted by a newer
/// sender), -2 when Redis lost the record or some of its publications (a
/// restart that lost recent writes): the upload must start over from
/// what Redis still has; -3 when everyone the upload was for settled the
/// file already (asked for it again, or parked it): the upload is
/// abandoned here, and requests for it are served from the start.
static RESERVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/reserve.lua")));

/// Makes chunks `0..count` of a file visible to receivers, with the BLAKE3
/// digest of each chunk newly published (`d` in its upload log entry:
/// 64 hex digits per chunk, for chunks `count - len/64 .. count`), and
/// how many original and stored bytes chunks `0..count` hold (where a
/// resumed upload goes on from).
/// KEYS: meta. ARGV: base, fid, from, count, digests of chunks `from..count`,
/// original bytes, stored bytes. Returns 1, or -2 when Redis no longer has
/// the record or chunks before `from` (see [`RESERVE`]).
static PUBLISH: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/publish.lua")));

/// Records a file's size and digest once its last chunk is published, and
/// what its last chunk costs Redis (the others fill their slots).
/// KEYS: meta. ARGV: base, fid, size, digest (hex), chunk count, cost of
/// the last chunk.
/// Returns 1 when recorded (now or by an earlier attempt), 0 when the
/// upload was abandoned, -1 when Redis lost the record or some of its
/// publications (see [`RESERVE`]).
static FINISH: LazyLock<Script> = LazyLock::new(|| script(include_str!("../scripts/finish.lua")));

/// A file to announce.
pub(crate) struct Announcement<'a> {
    pub(crate) name: &'a str,
    /// `size:mtime` of a file, `stream` for input that cannot be read again.
    pub(crate) identity: &'a str,
    /// Whether an earlier run's upload of the same identity may be resumed
    /// or skipped.
    pub(crate) resumable: bool,
    /// The chunk slot a new upload gets.
    pub(crate) slot: u64,
    pub(crate) acks_needed: usize,
    /// The request this upload serves, for an upload again.
    pub(crate) again: Option<&'a Wanted>,
    /// The lowest file id a new file may get.
    pub(crate) lowest_fid: u64,
    /// `I/N` for piece I of N of a file sent in pieces.
    pub(crate) piece: Option<&'a str>,
    /// Answer [`AnnounceState::Forgot`] when Redis no longer knows file
    /// ids below `lowest_fid`.
    pub(crate) check_forgotten: bool,
    /// The whole file, when it fits one chunk and is small: stored in its
    /// record by the same step (one round trip for the whole upload).
    pub(crate) whole: Option<Whole>,
}

/// A small file stored in its record: its one chunk value (the chunk
/// format, empty for an empty file), size and digest.
#[derive(Clone)]
pub(crate) struct Whole {
    pub(crate) value: Bytes,
    pub(crate) size: u64,
    /// BLAKE3 of the original bytes.
    pub(crate) digest: blake3::Hash,
    /// The channel's budget, which the value must fit beside what the
    /// channel holds (unless it holds nothing).
    pub(crate) limit: u64,
}

/// ANNOUNCE's answer: the file's announcement, new or an earlier run's.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Announced {
    pub(crate) fid: u64,
    pub(crate) state: AnnounceState,
    /// Chunks an earlier run already published.
    pub(crate) published: u64,
    /// The chunk slot the file was begun with, which a resume keeps.
    pub(crate) slot: u64,
    /// Original bytes those chunks hold.
    pub(crate) offset: u64,
    /// Bytes those chunks take in Redis.
    pub(crate) stored: u64,
    /// Files receivers want uploaded again (fields of `wanted`).
    pub(crate) requests: u64,
}

/// What ANNOUNCE found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnnounceState {
    /// A new upload, or one an earlier run left unfinished.
    Upload,
    /// The file came whole and is complete: nothing is left to upload.
    Stored,
    /// Nothing announced: the file came whole and the budget has no room
    /// for it now; it goes chunk by chunk, waiting for room.
    Full,
    /// An earlier run sent this exact file.
    AlreadySent,
    /// A re-supply that must wait until an unfinished upload is done.
    Busy,
    /// Nothing announced: Redis forgot files this sender announced before
    /// (it came back from an older snapshot); those go first.
    Forgot,
}

/// What RESERVE granted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// Room for chunks up to this count (all chunks reserved so far).
    Granted(u64),
    /// Redis lost the record or some publications: start over.
    Lost,
    /// Everyone the file was for settled it: the upload was abandoned.
    Unread,
    /// The file is no longer being uploaded: another sender took it over.
    TakenOver,
}

/// RESERVE's arguments.
pub(crate) struct RoomRequest {
    pub(crate) fid: u64,
    /// Chunks wanted in all, counting those reserved before.
    pub(crate) want: u64,
    /// The channel's budget in bytes.
    pub(crate) limit: u64,
    /// Chunks this sender published.
    pub(crate) published: u64,
}

/// RESERVE's answer.
#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) grant: Reserve,
    /// The newest progress event when it answered: a wait for room blocks
    /// for anything newer, so no wake-up is missed.
    pub(crate) last_event: String,
}

/// PUBLISH's arguments: chunks `from..count`, with the totals of `0..count`.
pub(crate) struct Publication<'a> {
    pub(crate) fid: u64,
    pub(crate) from: u64,
    pub(crate) count: u64,
    /// BLAKE3 digests of chunks `from..count`, concatenated hex.
    pub(crate) digests: &'a str,
    pub(crate) original: u64,
    pub(crate) stored: u64,
}

/// What PUBLISH did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Publish {
    Done,
    /// Redis lost the record or chunks before `from`: start over.
    Gap,
}

/// FINISH's arguments.
pub(crate) struct Ending {
    pub(crate) fid: u64,
    pub(crate) size: u64,
    pub(crate) digest: blake3::Hash,
    pub(crate) chunks: u64,
    /// What the last chunk costs Redis.
    pub(crate) last_cost: u64,
}

/// What FINISH did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Size and digest recorded (now, or by an earlier attempt).
    Recorded,
    /// The upload was abandoned meanwhile.
    Abandoned,
    /// Redis lost the record or some publications: start over.
    Lost,
}

impl Channel {
    /// Announces a file (ANNOUNCE).
    pub(crate) async fn announce(&self, file: &Announcement<'_>) -> Result<Announced> {
        let answer = self
            .run("announcing a file", &ANNOUNCE, &announce_arguments(file))
            .await?;
        self.announced(answer)
    }

    /// Announces files that come whole, in order, in one round trip
    /// (ANNOUNCE_MANY): the answers go up to the first file neither
    /// stored now nor sent before, which is the caller's to announce again.
    pub(crate) async fn announce_many(&self, files: &[Announcement<'_>]) -> Result<Vec<Announced>> {
        let each: Vec<Vec<Vec<u8>>> = files.iter().map(announce_arguments).collect();
        let width = each.first().map_or(0, Vec::len);
        debug_assert!(each.iter().all(|args| args.len() == width));
        let args: Vec<Vec<u8>> = std::iter::once(width.to_string().into_bytes())
            .chain(each.into_iter().flatten())
            .collect();
        let answers: Vec<AnnounceAnswer> =
            self.run("announcing files", &ANNOUNCE_MANY, &args).await?;
        answers
            .into_iter()
            .map(|answer| self.announced(answer))
            .collect()
    }

    /// Decodes an answer of ANNOUNCE.
    fn announced(&self, answer: AnnounceAnswer) -> Result<Announced> {
        let (fid, state, published, slot, offset, stored, requests) = answer;
        let state = match state.as_str() {
            "new" | "uploading" => AnnounceState::Upload,
            "stored" => AnnounceState::Stored,
            "full" => AnnounceState::Full,
            "sent" => AnnounceState::AlreadySent,
            "busy" => AnnounceState::Busy,
            "forgot" => AnnounceState::Forgot,
            other => return Err(self.protocol_error(format!("ANNOUNCE answered state {other:?}"))),
        };
        let fid = fid
            .parse()
            .map_err(|_| self.protocol_error(format!("file id {fid:?} is not a number")))?;
        Ok(Announced {
            fid,
            state,
            published,
            slot,
            offset,
            stored,
            requests,
        })
    }

    /// Reserves room for a file's next chunks (RESERVE).
    pub(crate) async fn reserve(&self, request: &RoomRequest) -> Result<Room> {
        let args = [
            request.fid.to_string(),
            request.want.to_string(),
            request.limit.to_string(),
            request.published.to_string(),
        ];
        let (reserved, last_event): (i64, String) =
            self.run("reserving room", &RESERVE, &args).await?;
        let grant = match reserved {
            -2 => Reserve::Lost,
            -3 => Reserve::Unread,
            n if n < 0 => Reserve::TakenOver,
            n => Reserve::Granted(n as u64),
        };
        Ok(Room { grant, last_event })
    }

    /// Makes written chunks visible to receivers (PUBLISH).
    pub(crate) async fn publish(&self, chunks: &Publication<'_>) -> Result<Publish> {
        let args = [
            chunks.fid.to_string(),
            chunks.from.to_string(),
            chunks.count.to_string(),
            chunks.digests.to_owned(),
            chunks.original.to_string(),
            chunks.stored.to_string(),
        ];
        let answer: i64 = self.run("publishing chunks", &PUBLISH, &args).await?;
        Ok(if answer >= 0 {
            Publish::Done
        } else {
            Publish::Gap
        })
    }

    /// Records a file's size and digest after its last chunk (FINISH).
    pub(crate) async fn finish_upload(&self, ending: &Ending) -> Result<Finish> {
        let args = [
            ending.fid.to_string(),
            ending.size.to_string(),
            ending.digest.to_hex().to_string(),
            ending.chunks.to_string(),
            ending.last_cost.to_string(),
        ];
        let answer: i64 = self.run("finishing a file", &FINISH, &args).await?;
        Ok(match answer {
            0 => Finish::Abandoned,
            n if n < 0 => Finish::Lost,
            _ => Finish::Recorded,
        })
    }

    /// Abandons an upload (ABORT); whether it was still being uploaded.
    pub(crate) async fn abort_upload(&self, fid: u64, reason: &str) -> Result<bool> {
        let args = [fid.to_string(), reason.to_owned()];
        let aborted: i64 = self.run("abandoning an upload", &ABORT, &args).await?;
        Ok(aborted == 1)
    }

    /// Stores chunk `index` of file `fid` under its own key: no script, as
    /// chunk keys are no control state (a chunk is invisible until
    /// PUBLISH), and no hash tag, so a file spreads over a cluster's
    /// shards. With `shards`, waits first until its master has room.
    /// Owns what it needs, so several writes can be in flight at once.
    pub(crate) fn store_chunk(
        &self,
        fid: u64,
        index: u64,
        data: Bytes,
        shards: Option<Arc<Shards>>,
    ) -> impl Future<Output = Result<()>> + Send + use<> {
        let redis = self.redis.clone();
        let key = self.keys.chunk(fid, index);
        async move {
            if let Some(shards) = shards {
                shards.wait_for_room(&key).await?;
            }
            // The data's one copy: into the command, which every attempt sends.
            let mut command = redis::cmd("SET");
            command.arg(key).arg(data.as_ref());
            redis.query::<()>("writing a chunk", &command).await
        }
    }
}

/// ANNOUNCE's answer as it comes: fid, state, published, chunk slot,
/// offset, stored, requests.
type AnnounceAnswer = (String, String, u64, u64, u64, u64, u64);

/// ANNOUNCE's arguments for `file`, after base.
fn announce_arguments(file: &Announcement<'_>) -> Vec<Vec<u8>> {
    let again = file.again.map_or_else(Default::default, |w| {
        [w.receivers.clone(), w.origin.clone(), w.round.to_string()]
    });
    let flag = |on: bool| if on { "1" } else { "0" }.to_owned();
    let mut args: Vec<Vec<u8>> = [
        file.name.to_owned(),
        file.identity.to_owned(),
        flag(file.resumable),
        file.slot.to_string(),
        file.acks_needed.to_string(),
    ]
    .into_iter()
    .chain(again)
    .chain([
        file.lowest_fid.to_string(),
        file.piece.unwrap_or_default().to_owned(),
        flag(file.check_forgotten),
    ])
    .map(String::into_bytes)
    .collect();
    if let Some(whole) = &file.whole {
        args.push(whole.value.to_vec());
        args.extend(
            [
                whole.size.to_string(),
                whole.digest.to_hex().to_string(),
                memory::chunk_cost(whole.value.len() as u64).to_string(),
                whole.limit.to_string(),
            ]
            .map(String::into_bytes),
        );
    }
    args
}
