//! The native wire format: key schema and the atomic state changes.
//!
//! Every key of channel `C` under prefix `P` is one of:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:channels` | set | names of all channels, for `status` |
//! | `P:{C}:meta` | hash | mode, receivers, limit, counters, end-of-input mark |
//! | `P:{C}:files` | stream | announcements (`kind=file fid=N`, `kind=eof`), one consumer group per broadcast receiver or one `workers` group |
//! | `P:{C}:sent` | hash | file name → `fid identity state`, so a restarted sender resumes |
//! | `P:{C}:f:N` | hash | one file: name, chunk slot, reserved/published/freed chunk counts, original and stored bytes published, size, BLAKE3 digest and last chunk's cost once known, acks |
//! | `P:{C}:f:N:log` | stream | upload progress of file N (`n=…`, then `end` or `abort`) that receivers block on |
//! | `P:{C}:active` | sorted set | files whose data may still be in Redis |
//! | `P:{C}:reclaim` | set | files everyone finished whose chunks still need deleting |
//! | `P:{C}:events` | stream (capped) | progress events a sender waiting for room blocks on |
//! | `P:{C}:r:ID` | hash | per-receiver counters for `status` |
//! | `P:{C}:parked` | hash | files given up on, with the reason |
//! | `P:{C}:wanted` | hash | file name → `fid identity round origin receivers`: files whose data left Redis before these receivers could read it, for the sender to upload again |
//! | `P:{C}:members` | set | ids of receivers and workers that joined |
//! | `P:{C}:split` | hash | file name → `pieces size identity` for a file sent with `--split` (identity of the input: `size:mtime`) |
//! | `P:{C}:lease:ROLE` | string, expiring | who holds a role (`sender`, `r:ID`, `w:ID`): `host pid since_ms nonce` |
//! | `P:{C}:leasegen` | hash | role → how many holders it had: a holder that finds it moved on lost the role |
//! | `P:c:L:C:N:I` | string | chunk I of file N (L = length of C): the only keys holding file data, in the chunk format of `docs/protocol.md` |
//!
//! All control keys share the hash tag `{C}`, so every state change below
//! is one Lua script on one slot, legal on Redis Cluster. Chunk keys carry
//! no tag, so a large file spreads over a cluster's shards; scripts never
//! touch them: chunks are written before they are published and deleted
//! before their bytes are released from the budget, so a crash between the
//! two steps can only overestimate memory, never lose data. Each script is
//! idempotent, which is what makes retrying after a dropped connection safe.
//! `docs/protocol.md` walks through the same steps in prose.
//!
//! A `Channel` (`channel.rs`) is a channel's keys with the connection
//! that reaches them; each state change is one method of it, written in
//! the module of the party that takes it (`sending`, `reading`, `lease`,
//! `offer_again`, `inspect`, `teardown`), with its arguments as
//! named fields and its answer as an enum. The Lua is in `scripts/`, the
//! helpers the scripts share in `scripts/prelude.lua`.

use redis::Script;

use crate::redis::memory;

pub(crate) mod channel;
pub(crate) mod inspect;
pub(crate) mod lease;
pub(crate) mod offer_again;
pub(crate) mod reading;
pub(crate) mod sending;
pub(crate) mod teardown;

/// Version of this key schema, stored in every channel's `meta` hash.
pub const VERSION: &str = "6";

/// How a channel distributes files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "receivers")]
pub enum Audience {
    /// Every named receiver gets every file.
    Broadcast(Vec<String>),
    /// Each file goes to exactly one of any number of workers.
    Workers,
}

impl Audience {
    /// The `mode` field stored in `meta`.
    pub fn mode(&self) -> &'static str {
        match self {
            Audience::Broadcast(_) => "broadcast",
            Audience::Workers => "workers",
        }
    }

    /// The `receivers` field stored in `meta`: comma-separated ids.
    pub fn receivers_field(&self) -> String {
        match self {
            Audience::Broadcast(ids) => ids.join(","),
            Audience::Workers => String::new(),
        }
    }

    /// How many acknowledgements complete a file.
    pub fn acks_needed(&self) -> usize {
        match self {
            Audience::Broadcast(ids) => ids.len(),
            Audience::Workers => 1,
        }
    }

    /// Reads the audience back from `meta`'s fields.
    pub fn from_fields(mode: &str, receivers: &str) -> Option<Self> {
        match mode {
            "broadcast" => Some(Audience::Broadcast(
                receivers
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            "workers" => Some(Audience::Workers),
            _ => None,
        }
    }

    /// The consumer group a receiver reads the `files` stream with.
    pub fn group_of(&self, receiver: &str) -> String {
        match self {
            Audience::Broadcast(_) => format!("r:{receiver}"),
            Audience::Workers => "workers".to_owned(),
        }
    }
}

/// Names of every key of one channel.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    channel: String,
    /// `P:{C}:`, the start of every control key; scripts build their
    /// per-file key names from it.
    base: String,
}

impl Keys {
    /// The keys of `channel` under `prefix`. Both must already be validated
    /// with [`crate::files::names::check_channel_name`].
    pub fn new(prefix: &str, channel: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            channel: channel.to_owned(),
            base: format!("{prefix}:{{{channel}}}:"),
        }
    }

    /// The channel these keys belong to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// `P:{C}`, the part every control key starts with.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The registry of channel names (not tagged: it spans channels).
    pub fn channels(&self) -> String {
        format!("{}:channels", self.prefix)
    }

    /// `P:{C}:meta`: mode, receivers, limit, counters, end-of-input mark.
    pub fn meta(&self) -> String {
        format!("{}meta", self.base)
    }

    /// `P:{C}:files`: the stream of announcements.
    pub fn files(&self) -> String {
        format!("{}files", self.base)
    }

    /// `P:{C}:active`: files whose data may still be in Redis.
    pub fn active(&self) -> String {
        format!("{}active", self.base)
    }

    /// `P:{C}:parked`: files given up on, with the reason.
    pub fn parked(&self) -> String {
        format!("{}parked", self.base)
    }

    /// `P:{C}:events`: progress events a waiting sender blocks on.
    pub fn events(&self) -> String {
        format!("{}events", self.base)
    }

    /// `P:{C}:f:N`: the record of file `fid`.
    pub fn file(&self, fid: u64) -> String {
        format!("{}f:{fid}", self.base)
    }

    /// `P:{C}:f:N:log`: the upload progress of file `fid`.
    pub fn file_log(&self, fid: u64) -> String {
        format!("{}f:{fid}:log", self.base)
    }

    /// `P:{C}:r:ID`: counters of receiver `id`.
    pub fn receiver(&self, id: &str) -> String {
        format!("{}r:{id}", self.base)
    }

    /// Pattern matching every control key of the channel.
    pub fn control_pattern(&self) -> String {
        format!("{}*", self.base)
    }

    /// Chunk `index` of file `fid`: `P:c:<length of C>:C:fid:index`.
    /// Deliberately without a hash tag. The length makes the channel part
    /// unambiguous, so one channel's pattern never matches another's keys
    /// (channel `a` vs `a:c:1`).
    pub fn chunk(&self, fid: u64, index: u64) -> String {
        format!("{}{fid}:{index}", self.chunk_base())
    }

    /// Pattern matching every chunk key of the channel.
    pub fn chunk_pattern(&self) -> String {
        format!("{}*", self.chunk_base())
    }

    /// The file id in a key matching [`Keys::chunk_pattern`]; `None` for
    /// any other key.
    pub fn chunk_file(&self, key: &str) -> Option<u64> {
        let (fid, index) = key.strip_prefix(&self.chunk_base())?.split_once(':')?;
        index.parse::<u64>().ok()?;
        fid.parse().ok()
    }

    fn chunk_base(&self) -> String {
        format!("{}:c:{}:{}:", self.prefix, self.channel.len(), self.channel)
    }

    /// `P:{C}:sent`: file name to upload state, for a resuming sender.
    pub fn sent(&self) -> String {
        format!("{}sent", self.base)
    }

    /// `P:{C}:reclaim`: finished files whose chunks still need deleting.
    pub fn reclaim(&self) -> String {
        format!("{}reclaim", self.base)
    }

    /// `P:{C}:wanted`: files receivers need uploaded again.
    pub fn wanted(&self) -> String {
        format!("{}wanted", self.base)
    }

    /// Ids of every receiver or worker that ever joined.
    pub fn members(&self) -> String {
        format!("{}members", self.base)
    }

    /// Files sent in pieces (`--split`): name → how many pieces.
    pub fn split(&self) -> String {
        format!("{}split", self.base)
    }
}

/// Helpers shared by the scripts. `account` recomputes how many bytes of a
/// file's chunks may be in Redis and moves `meta.held` by the difference;
/// `reclaim_list` tells the caller which chunk ranges to delete.
const PRELUDE: &str = include_str!("scripts/prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!(
        "local KEY_COST = {}\n{PRELUDE}{body}",
        memory::KEY_COST
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_key_names_its_file_and_only_its_own_channel_matches() {
        let keys = Keys::new("rd", "a");
        assert_eq!(keys.chunk_file(&keys.chunk(12, 3)), Some(12));
        assert_eq!(
            keys.chunk_file(&Keys::new("rd", "a:c:1").chunk(12, 3)),
            None
        );
        assert_eq!(keys.chunk_file(&keys.meta()), None);
        assert_eq!(keys.chunk_file("rd:c:1:a:12"), None);
    }
}
