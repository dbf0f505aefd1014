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

use std::sync::LazyLock;

use redis::Script;

use crate::redis::memory;

/// Version of this key schema, stored in every channel's `meta` hash.
pub const VERSION: &str = "5";

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
const PRELUDE: &str = r#"
local VANISHED = 'VANISHED the channel is gone from Redis (purged, or Redis lost its data); purge it and send again'
-- What one chunk of file `f` costs Redis: its slot and the key around it.
local function chunk_cost(f)
  local slot = tonumber(redis.call('HGET', f, 'chunk') or '')
  return slot and slot + KEY_COST
end
local function account(meta, f)
  local cost = chunk_cost(f)
  local reserved = tonumber(redis.call('HGET', f, 'reserved') or '0')
  local freed = tonumber(redis.call('HGET', f, 'freed') or '0')
  local tail = redis.call('HGET', f, 'tail')
  local now
  if not cost then
    -- A damaged record (poison): its bytes can no longer be counted.
    now = 0
  elseif tail then
    -- Finished: every chunk but the last fills its slot.
    local left = tonumber(redis.call('HGET', f, 'published')) - freed
    now = 0
    if left > 0 then now = (left - 1) * cost + tonumber(tail) end
  else
    now = math.max(0, (reserved - freed) * cost)
  end
  local old = tonumber(redis.call('HGET', f, 'acct') or '0')
  redis.call('HSET', f, 'acct', now)
  redis.call('HINCRBY', meta, 'held', now - old)
end
-- Whether file `fid` (record `f`) is the oldest in flight while newer
-- files hold the room: after Redis lost writes, or when a sender resumes
-- an older file after newer ones, receivers wait for it before any of
-- those, so only it going first can free room.
local function starved(base, fid, f, held, cost)
  local oldest = redis.call('ZRANGE', base .. 'active', 0, 0)[1]
  return oldest == tostring(fid) and held - tonumber(redis.call('HGET', f, 'acct') or '0') >= cost
end
local function reclaim_list(base)
  local out = {}
  for _, fid in ipairs(redis.call('SMEMBERS', base .. 'reclaim')) do
    local f = base .. 'f:' .. fid
    local freed = redis.call('HGET', f, 'freed')
    if freed then
      table.insert(out, fid)
      table.insert(out, freed)
      table.insert(out, redis.call('HGET', f, 'reserved'))
    else
      redis.call('SREM', base .. 'reclaim', fid)
    end
  end
  return out
end
local function event(base, kind, fid)
  redis.call('XADD', base .. 'events', 'MAXLEN', '~', '100', '*', kind, fid)
end
local function abort(meta, base, fid, reason)
  local f = base .. 'f:' .. fid
  redis.call('HSET', f, 'state', 'aborted')
  redis.call('XADD', f .. ':log', '*', 'abort', reason)
  redis.call('ZREM', base .. 'active', fid)
  redis.call('SADD', base .. 'reclaim', fid)
  redis.call('HINCRBY', meta, 'aborted', 1)
end
-- Settles a file for one receiver: `done`, `parked`, or `moved` (its
-- data left Redis too early for this receiver, which now waits for the
-- file to be uploaded again). Returns whether it was settled now.
local function settle(meta, base, fid, receiver, outcome, reason, bytes)
  local f = base .. 'f:' .. fid
  if redis.call('EXISTS', f) == 0 then return false end
  if redis.call('HSETNX', f, 'ack:' .. receiver, outcome) == 0 then return false end
  local acks = redis.call('HINCRBY', f, 'acks', 1)
  local r = base .. 'r:' .. receiver
  local name = redis.call('HGET', f, 'name') or ''
  if outcome == 'done' then
    redis.call('HINCRBY', r, 'files', 1)
    redis.call('HINCRBY', r, 'bytes', bytes)
    redis.call('HSET', r, 'last', name)
  elseif outcome == 'parked' then
    redis.call('HINCRBY', r, 'parked', 1)
    redis.call('HSET', base .. 'parked', fid .. ':' .. receiver, name .. '\t' .. reason)
  else
    redis.call('HINCRBY', r, 'moved', 1)
  end
  if acks >= tonumber(redis.call('HGET', f, 'need')) and redis.call('HGET', f, 'state') == 'sent' then
    redis.call('HSET', f, 'state', 'done')
    redis.call('ZREM', base .. 'active', fid)
    redis.call('SADD', base .. 'reclaim', fid)
    redis.call('HINCRBY', meta, 'finished', 1)
  end
  return true
end
-- The receivers listed in a `wanted` value, as a set.
local function wanted_list(value)
  local set = {}
  for r in string.gmatch(string.match(value or '', ' (%S*)$') or '', '[^,]+') do set[r] = true end
  return set
end
-- Adds `who` to the receivers waiting for `name` to be uploaded again;
-- `head` is the rest of the value: `fid identity round origin`.
local function want(base, name, head, who)
  local wanted = base .. 'wanted'
  local list = wanted_list(redis.call('HGET', wanted, name))
  list[who] = true
  local ids = {}
  for r in pairs(list) do table.insert(ids, r) end
  table.sort(ids)
  redis.call('HSET', wanted, name, head .. ' ' .. table.concat(ids, ','))
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!(
        "local KEY_COST = {}\n{PRELUDE}{body}",
        memory::KEY_COST
    ))
}

/// Creates the channel or checks that it matches.
/// KEYS: meta. ARGV: base, mode, receivers, limit, chunk size, now (ms), [`VERSION`].
/// Returns `{}` on success, `{mode, receivers}` of an existing channel that
/// differs (mode `version N` when written by another schema version).
pub(crate) static OPEN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local files = base .. 'files'
if redis.call('EXISTS', meta) == 1 then
  local version = redis.call('HGET', meta, 'version')
  if version ~= ARGV[7] then return {'version ' .. tostring(version), ''} end
  local mode = redis.call('HGET', meta, 'mode')
  local receivers = redis.call('HGET', meta, 'receivers') or ''
  if mode ~= ARGV[2] or receivers ~= ARGV[3] then return {mode, receivers} end
  redis.call('HSET', meta, 'limit', ARGV[4], 'chunk_size', ARGV[5], 'ended', '0')
  return {}
end
redis.call('HSET', meta, 'version', ARGV[7], 'mode', ARGV[2], 'receivers', ARGV[3],
  'limit', ARGV[4], 'chunk_size', ARGV[5], 'created_ms', ARGV[6], 'ended', '0',
  'held', '0', 'announced', '0', 'finished', '0', 'aborted', '0', 'next_fid', '0')
local id = redis.call('XADD', files, '*', 'kind', 'open')
if ARGV[2] == 'workers' then
  redis.call('XGROUP', 'CREATE', files, 'workers', id)
else
  for r in string.gmatch(ARGV[3], '[^,]+') do
    redis.call('XGROUP', 'CREATE', files, 'r:' .. r, id)
  end
end
return {}
"#,
    )
});

/// Abandons an upload whose source changed while it was read: receivers
/// reading it stop with the reason, and its chunks are reclaimed.
/// KEYS: meta. ARGV: base, fid, reason. Returns 1 when aborted now, 0 when
/// it was no longer being uploaded.
pub(crate) static ABORT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
if redis.call('HGET', base .. 'f:' .. ARGV[2], 'state') ~= 'uploading' then return 0 end
abort(meta, base, ARGV[2], ARGV[3])
return 1
"#,
    )
});

/// Takes the lease of a role, `P:{C}:lease:ROLE`, unless someone else
/// holds it. KEYS: meta. ARGV: base, role, holder, ttl (ms), a holder it may
/// replace ('' for none: one whose process is known to be gone).
/// Returns `{'', generation}` when taken (or already ours), else
/// `{current holder, ''}`. The generation, field ROLE of `P:{C}:leasegen`, counts
/// the holders a role had: a holder that finds it moved on lost the role,
/// even once its successor gave the role back.
pub(crate) static LEASE_TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k = ARGV[1] .. 'lease:' .. ARGV[2]
local gen = ARGV[1] .. 'leasegen'
local current = redis.call('GET', k)
if current and current ~= ARGV[3] and current ~= ARGV[5] then return {current, ''} end
local generation = redis.call('HGET', gen, ARGV[2])
if current ~= ARGV[3] or not generation then generation = redis.call('HINCRBY', gen, ARGV[2], 1) end
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return {'', tostring(generation)}
"#,
    )
});

/// Renews a lease we hold, or takes it back when nobody holds it and
/// nobody else held it since (Redis restarted without it).
/// KEYS: meta. ARGV: base, role, holder, ttl (ms), generation.
/// Returns 1, or 0 when it is no longer ours (it lapsed and was taken).
pub(crate) static LEASE_RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k = ARGV[1] .. 'lease:' .. ARGV[2]
local current = redis.call('GET', k)
if current and current ~= ARGV[3] then return 0 end
local gen = ARGV[1] .. 'leasegen'
local generation = tonumber(redis.call('HGET', gen, ARGV[2]) or '0')
-- A later holder took the role meanwhile. (An earlier generation, or none,
-- is Redis back from an older snapshot: ours stands.)
if generation > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', gen, ARGV[2], ARGV[5])
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return 1
"#,
    )
});

/// Gives a lease back if it is still ours. KEYS: meta. ARGV: base, role, holder.
pub(crate) static LEASE_DROP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k = ARGV[1] .. 'lease:' .. ARGV[2]
if redis.call('GET', k) == ARGV[3] then
  redis.call('DEL', k)
  -- A renewal of ours still on its way must not take the role back.
  redis.call('HINCRBY', ARGV[1] .. 'leasegen', ARGV[2], 1)
end
return 1
"#,
    )
});

/// Announces a file, or finds the announcement a previous run made.
/// KEYS: meta. ARGV: base, name, identity, resumable (0/1), chunk size,
/// acks needed, then for a re-supply (else three ''): the receivers it is
/// for (comma-separated, `*` for any worker), the original file id, the
/// round; then the lowest file id a new file may get (above every id this
/// sender has seen: after Redis lost its latest writes, an id must not
/// name two files); then `I/N` when the file is piece I of N of a file
/// sent with `--split` (else ''); then 1 to answer `forgot` when Redis
/// no longer knows file ids this sender was given (else 0).
/// Returns `{fid, state, published, chunk slot, offset, stored, requests}`
/// where state is `new`, `uploading` or `sent`, `busy` for a re-supply
/// while any upload is unfinished (of this file, or one a stopped sender
/// left, which receivers read first), or `forgot` (nothing
/// announced) when Redis came back from a snapshot older than this
/// sender's last announcement; a resumed upload
/// keeps its chunk slot and goes on after `offset` original bytes, which
/// took `stored` bytes;
/// `requests` counts the names in `wanted` (after this one), so a sender
/// looks at them only when there are some.
pub(crate) static ANNOUNCE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
if redis.call('EXISTS', meta) == 0 then return redis.error_reply(VANISHED) end
local function answer(reply)
  table.insert(reply, redis.call('HLEN', base .. 'wanted'))
  return reply
end
local function resume(fid, f)
  return answer({fid, 'uploading', tonumber(redis.call('HGET', f, 'published')), redis.call('HGET', f, 'chunk'),
    redis.call('HGET', f, 'offset') or 0, redis.call('HGET', f, 'stored') or 0})
end
-- File ids below the lowest this sender may use were given to it
-- before: Redis no longer knowing them means it came back from an older
-- snapshot, and files it forgot must be announced again before this one,
-- in their order.
if ARGV[12] == '1' and tonumber(redis.call('HGET', meta, 'next_fid') or '0') < tonumber(ARGV[10]) - 1 then
  return answer({'0', 'forgot', 0, ARGV[5], 0, 0})
end
local sent = base .. 'sent'
local resupply = ARGV[7] ~= ''
local previous = redis.call('HGET', sent, ARGV[2])
if previous then
  local fid, identity, state = string.match(previous, '^(%d+) (%S+) (%S+)$')
  local f = base .. 'f:' .. fid
  local live = redis.call('HGET', f, 'state')
  if resupply then
    if live == 'uploading' then
      -- This very upload again, begun by an attempt whose reply was lost
      -- or cut short by a Redis restart: resume it.
      if redis.call('HGET', f, 'for') == ARGV[7] and identity == ARGV[3] then
        return resume(fid, f)
      end
      -- Receivers of the unfinished upload still need it: finish it first.
      return answer({fid, 'busy', 0, ARGV[5], 0, 0})
    end
  elseif ARGV[4] == '1' and identity == ARGV[3] then
    if state == 'sent' then return answer({fid, 'sent', 0, redis.call('HGET', f, 'chunk') or ARGV[5], 0, 0}) end
    if live == 'uploading' then return resume(fid, f) end
  end
  if live == 'uploading' then
    abort(meta, base, fid, 'the sender restarted and could not resume this upload')
  end
end
-- An upload a stopped sender left unfinished goes first: receivers read
-- it before this one, which could take the room it needs.
if resupply then
  for _, other in ipairs(redis.call('ZRANGE', base .. 'active', 0, -1)) do
    if redis.call('HGET', base .. 'f:' .. other, 'state') == 'uploading' then
      return answer({other, 'busy', 0, ARGV[5], 0, 0})
    end
  end
end
local fid = math.max(redis.call('HINCRBY', meta, 'next_fid', 1), tonumber(ARGV[10]))
redis.call('HSET', meta, 'next_fid', fid)
local f = base .. 'f:' .. fid
redis.call('HSET', f, 'name', ARGV[2], 'chunk', ARGV[5], 'need', ARGV[6], 'state', 'uploading',
  'reserved', 0, 'published', 0, 'freed', 0, 'acks', 0, 'acct', 0, 'fails', 0,
  'identity', ARGV[3], 'origin', ARGV[8] ~= '' and ARGV[8] or fid, 'round', ARGV[9] ~= '' and ARGV[9] or 0)
if ARGV[11] and ARGV[11] ~= '' then redis.call('HSET', f, 'piece', ARGV[11]) end
if resupply then
  redis.call('HSET', f, 'for', ARGV[7])
  redis.call('HINCRBY', meta, 'resupplied', 1)
  for r in string.gmatch(ARGV[7], '[^,*]+') do redis.call('HINCRBY', base .. 'r:' .. r, 'owed', 1) end
  local wanted = base .. 'wanted'
  local value = redis.call('HGET', wanted, ARGV[2])
  if value then
    local served, left = wanted_list(' ' .. ARGV[7]), {}
    for r in pairs(wanted_list(value)) do
      if not served[r] then table.insert(left, r) end
    end
    if #left == 0 then
      redis.call('HDEL', wanted, ARGV[2])
    else
      redis.call('HSET', wanted, ARGV[2], string.match(value, '^(.*) %S*$') .. ' ' .. table.concat(left, ','))
    end
  end
end
redis.call('HSET', sent, ARGV[2], fid .. ' ' .. ARGV[3] .. ' uploading')
redis.call('ZADD', base .. 'active', fid, fid)
redis.call('HINCRBY', meta, 'announced', 1)
redis.call('XADD', base .. 'files', '*', 'kind', 'file', 'fid', fid)
return answer({tostring(fid), 'new', 0, ARGV[5], 0, 0})
"#,
    )
});

/// A receiver (or worker) found chunks of a file gone from Redis before it
/// could read them: settles the file as `moved` for it and asks the sender,
/// through `wanted`, to upload the file again. A file read from a stream,
/// or already supplied again `max rounds` times, is parked instead.
/// KEYS: meta. ARGV: base, fid, receiver, group, entry id, max rounds, reason.
/// Returns `wanted`, `parked`, or `gone` (settled or vanished already).
pub(crate) static REQUEST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local fid, receiver = ARGV[2], ARGV[3]
redis.call('XACK', base .. 'files', ARGV[4], ARGV[5])
local f = base .. 'f:' .. fid
if redis.call('EXISTS', f) == 0 then return 'gone' end
local name = redis.call('HGET', f, 'name') or ''
local identity = redis.call('HGET', f, 'identity') or 'stream'
local round = tonumber(redis.call('HGET', f, 'round') or '0') or 0
local origin = redis.call('HGET', f, 'origin') or fid
local why = nil
if identity == 'stream' then
  why = ARGV[7] .. '; it was read from a stream, which cannot be read again: send it again'
elseif round >= tonumber(ARGV[6]) then
  why = ARGV[7] .. ' (its data went missing ' .. (round + 1) .. ' times)'
end
if why then
  local parked = settle(meta, base, fid, receiver, 'parked', why, 0)
  event(base, 'a', fid)
  if parked then return 'parked' end
  return 'gone'
end
if not settle(meta, base, fid, receiver, 'moved', '', 0) then return 'gone' end
local who = receiver
if redis.call('HGET', meta, 'mode') == 'workers' then who = '*' end
want(base, name, fid .. ' ' .. identity .. ' ' .. (round + 1) .. ' ' .. origin, who)
event(base, 'w', fid)
return 'wanted'
"#,
    )
});

/// The sender cannot upload a wanted file again (its source changed or
/// is gone): parks it for every receiver that wanted it.
/// KEYS: meta. ARGV: base, name, reason. Returns how many receivers.
pub(crate) static GIVE_UP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local wanted = base .. 'wanted'
local value = redis.call('HGET', wanted, ARGV[2])
if not value then return 0 end
local fid = string.match(value, '^(%S+)') or '0'
local count = 0
for r in pairs(wanted_list(value)) do
  local who = r
  if r == '*' then who = 'workers' end
  redis.call('HSET', base .. 'parked', fid .. ':' .. who, ARGV[2] .. '\t' .. ARGV[3])
  redis.call('HINCRBY', base .. 'r:' .. who, 'parked', 1)
  count = count + 1
end
redis.call('HDEL', wanted, ARGV[2])
event(base, 'a', fid)
return count
"#,
    )
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
pub(crate) static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
if redis.call('EXISTS', meta) == 0 then return redis.error_reply(VANISHED) end
local f = base .. 'f:' .. ARGV[2]
local last = redis.call('XREVRANGE', base .. 'events', '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
local state = redis.call('HGET', f, 'state')
if not state or tonumber(redis.call('HGET', f, 'published') or '0') < tonumber(ARGV[5]) then
  return {-2, last_id}
end
if state ~= 'uploading' then
  -- A retry of the step that abandoned it below answers as that one did.
  if redis.call('HGET', f, 'unread') then return {-3, last_id} end
  return {-1, last_id}
end
-- Everyone it was for settled it already: they found chunks gone (released
-- early) and asked for the file again from the start, or gave up on it.
-- Nobody reads the rest, and the room it holds may be what they wait for.
if tonumber(redis.call('HGET', f, 'acks') or '0') >= tonumber(redis.call('HGET', f, 'need') or '1') then
  abort(meta, base, ARGV[2], 'everyone it was for asked for it again from the start')
  redis.call('HSET', f, 'unread', 1)
  return {-3, last_id}
end
local reserved = tonumber(redis.call('HGET', f, 'reserved'))
local want = tonumber(ARGV[3])
if want <= reserved then return {reserved, last_id} end
local held = tonumber(redis.call('HGET', meta, 'held'))
local cost = chunk_cost(f)
local limit = tonumber(ARGV[4])
local n = math.floor((limit - held) / cost)
if n <= 0 and held <= 0 then n = 1 end
-- A starved file gets a chunk beyond the limit, up to a limit of its own.
if n <= 0 and starved(base, ARGV[2], f, held, cost)
    and tonumber(redis.call('HGET', f, 'acct') or '0') + cost <= limit then
  n = 1
end
n = math.min(n, want - reserved)
if n > 0 then
  redis.call('HSET', f, 'reserved', reserved + n)
  account(meta, f)
  return {reserved + n, last_id}
end
return {reserved, last_id}
"#,
    )
});

/// Makes chunks `0..count` of a file visible to receivers, with the BLAKE3
/// digest of each chunk newly published (`d` in its upload log entry:
/// 64 hex digits per chunk, for chunks `count - len/64 .. count`), and
/// how many original and stored bytes chunks `0..count` hold (where a
/// resumed upload goes on from).
/// KEYS: meta. ARGV: base, fid, from, count, digests of chunks `from..count`,
/// original bytes, stored bytes. Returns 1, or -2 when Redis no longer has
/// the record or chunks before `from` (see [`RESERVE`]).
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local f = ARGV[1] .. 'f:' .. ARGV[2]
local published = tonumber(redis.call('HGET', f, 'published'))
local from, count = tonumber(ARGV[3]), tonumber(ARGV[4])
-- Redis lost the record or earlier publications (it restarted without
-- its latest writes): publishing these would leave chunks without digests.
if not published or published < from then return -2 end
if count > published then
  redis.call('HSET', f, 'published', count, 'offset', ARGV[6], 'stored', ARGV[7])
  -- Digests of the chunks published now; a retried call may cover
  -- chunks an earlier attempt published already.
  local digests = string.sub(ARGV[5], (math.max(published, from) - from) * 64 + 1)
  redis.call('XADD', f .. ':log', '*', 'n', count, 'd', digests)
end
return 1
"#,
    )
});

/// Records a file's size and digest once its last chunk is published, and
/// what its last chunk costs Redis (the others fill their slots).
/// KEYS: meta. ARGV: base, fid, size, digest (hex), chunk count, cost of
/// the last chunk.
/// Returns 1 when recorded (now or by an earlier attempt), 0 when the
/// upload was abandoned, -1 when Redis lost the record or some of its
/// publications (see [`RESERVE`]).
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local f = base .. 'f:' .. ARGV[2]
local state = redis.call('HGET', f, 'state')
if state == 'sent' or state == 'done' then return 1 end
if not state then return -1 end
if state ~= 'uploading' then return 0 end
if tonumber(redis.call('HGET', f, 'published') or '0') < tonumber(ARGV[5]) then return -1 end
redis.call('HSET', f, 'size', ARGV[3], 'digest', ARGV[4], 'state', 'sent', 'published', ARGV[5], 'tail', ARGV[6])
account(meta, f)
redis.call('HINCRBY', meta, 'original', ARGV[3])
redis.call('HINCRBY', meta, 'stored', redis.call('HGET', f, 'stored') or 0)
redis.call('XADD', f .. ':log', '*', 'end', '1', 'size', ARGV[3], 'digest', ARGV[4], 'n', ARGV[5])
local name = redis.call('HGET', f, 'name')
local previous = redis.call('HGET', base .. 'sent', name)
if previous then
  redis.call('HSET', base .. 'sent', name, (string.gsub(previous, 'uploading$', 'sent')))
end
if tonumber(redis.call('HGET', f, 'acks')) >= tonumber(redis.call('HGET', f, 'need')) then
  redis.call('HSET', f, 'state', 'done')
  redis.call('ZREM', base .. 'active', ARGV[2])
  redis.call('SADD', base .. 'reclaim', ARGV[2])
  redis.call('HINCRBY', meta, 'finished', 1)
end
return 1
"#,
    )
});

/// Sets the end-of-input mark. KEYS: meta. ARGV: base.
pub(crate) static END_INPUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = redis.call('XADD', ARGV[1] .. 'files', '*', 'kind', 'eof')
redis.call('HSET', KEYS[1], 'ended', '1', 'eof_id', id)
return id
"#,
    )
});

/// Records how many chunks of a file a receiver has consumed, so a sender
/// short of room may delete them before the file is finished.
/// `restart` 1 sets the position back (a receiver starting the file over).
/// KEYS: meta. ARGV: base, fid, receiver, chunks consumed, restart (0/1).
pub(crate) static CONSUME: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local base = ARGV[1]
local f = base .. 'f:' .. ARGV[2]
if redis.call('EXISTS', f) == 0 then return 0 end
local field = 'pos:' .. ARGV[3]
if ARGV[5] == '1' or tonumber(ARGV[4]) > tonumber(redis.call('HGET', f, field) or '0') then
  redis.call('HSET', f, field, ARGV[4])
end
event(base, 'c', ARGV[2])
return 1
"#,
    )
});

/// Settles a file for one receiver (`done` or `parked`) and acknowledges
/// its announcement; `skip` only acknowledges (aborted or vanished files).
/// KEYS: meta. ARGV: base, fid, receiver, group, entry id, outcome, reason, bytes.
/// Returns the reclaim list: `{fid, freed, reserved, ...}`.
pub(crate) static ACK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
redis.call('XACK', base .. 'files', ARGV[4], ARGV[5])
if ARGV[6] ~= 'skip' then
  settle(meta, base, ARGV[2], ARGV[3], ARGV[6], ARGV[7], ARGV[8])
end
event(base, 'a', ARGV[2])
return reclaim_list(base)
"#,
    )
});

/// Work queue: a worker failed a file, or it sat unacknowledged longer than
/// `min idle` with a worker that stopped responding. Counts the failure and
/// either queues the file again or parks it.
/// KEYS: meta. ARGV: base, fid, worker, entry id, min idle (ms), max failures, reason.
/// Returns `requeued`, `parked`, or `gone` (someone else already handled it).
pub(crate) static FAILED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local files = base .. 'files'
local pending = redis.call('XPENDING', files, 'workers', 'IDLE', ARGV[5], ARGV[4], ARGV[4], 1)
if #pending == 0 then return 'gone' end
redis.call('XACK', files, 'workers', ARGV[4])
local f = base .. 'f:' .. ARGV[2]
if redis.call('EXISTS', f) == 0 or redis.call('HGET', f, 'state') == 'done' then return 'gone' end
local fails = redis.call('HINCRBY', f, 'fails', 1)
if fails >= tonumber(ARGV[6]) then
  local times = fails == 1 and ' time)' or ' times)'
  settle(meta, base, ARGV[2], ARGV[3], 'parked', ARGV[7] .. ' (failed ' .. fails .. times, 0)
  event(base, 'a', ARGV[2])
  return 'parked'
end
redis.call('HSET', f, 'last_error', ARGV[7])
-- The next worker starts from chunk 0: forget how far the last one got.
local fields = redis.call('HKEYS', f)
for _, field in ipairs(fields) do
  if string.sub(field, 1, 4) == 'pos:' then redis.call('HDEL', f, field) end
end
redis.call('XADD', files, '*', 'kind', 'file', 'fid', ARGV[2])
return 'requeued'
"#,
    )
});

/// Lists chunk ranges that may be deleted now: files everyone finished and,
/// when `early` is 1 (the sender is out of room), the prefix every receiver
/// has consumed of the file being uploaded, if it alone fills the budget.
/// Early release costs a second upload for a receiver restarted mid-file
/// (it finds chunks gone and asks for the file again), so it happens only
/// when a file larger than the budget must stream through; files that fit
/// are never released early.
/// KEYS: meta. ARGV: base, early (0/1). Returns `{fid, from, to, ...}`.
pub(crate) static RELEASE_PLAN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local out = reclaim_list(base)
if ARGV[2] ~= '1' then return out end
local mode = redis.call('HGET', meta, 'mode')
local receivers = redis.call('HGET', meta, 'receivers') or ''
local held = tonumber(redis.call('HGET', meta, 'held') or '0')
for _, fid in ipairs(redis.call('ZRANGE', base .. 'active', 0, -1)) do
  local f = base .. 'f:' .. fid
  local freed = tonumber(redis.call('HGET', f, 'freed') or '-1')
  -- Only the file being uploaded, and only when it fills the budget by
  -- itself (less than a chunk held by all others): it is larger than the
  -- budget and can only stream through. Any other file fits, and waiting
  -- for its receivers to finish it frees room without losing a byte.
  local cost = chunk_cost(f) or 0
  local alone = held - tonumber(redis.call('HGET', f, 'acct') or '0') < cost
  -- A starved file (see `starved`) cannot wait for newer ones either.
  if redis.call('HGET', f, 'state') ~= 'uploading'
      or not (alone or starved(base, fid, f, held, cost)) then
    freed = -1
  end
  local published = tonumber(redis.call('HGET', f, 'published') or '0')
  local low = nil
  if mode == 'workers' then
    low = 0
    local fields = redis.call('HGETALL', f)
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, 4) == 'pos:' then low = math.max(low, tonumber(fields[i + 1])) end
    end
  else
    -- An upload again is for the receivers that lost the file only.
    local audience = redis.call('HGET', f, 'for') or receivers
    for r in string.gmatch(audience, '[^,]+') do
      local p = published
      if redis.call('HEXISTS', f, 'ack:' .. r) == 0 then
        p = tonumber(redis.call('HGET', f, 'pos:' .. r) or '0')
      end
      if low == nil or p < low then low = p end
    end
  end
  if freed >= 0 and low and low > freed then
    table.insert(out, fid)
    table.insert(out, freed)
    table.insert(out, math.min(low, published))
  end
end
return out
"#,
    )
});

/// Releases chunks `freed..upto` of a file after the caller deleted them,
/// and forgets the file once it is finished and fully deleted.
/// KEYS: meta. ARGV: base, fid, upto.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
local f = base .. 'f:' .. ARGV[2]
local freed = tonumber(redis.call('HGET', f, 'freed'))
if not freed then
  redis.call('SREM', base .. 'reclaim', ARGV[2])
  return 0
end
if tonumber(ARGV[3]) > freed then redis.call('HSET', f, 'freed', ARGV[3]) end
account(meta, f)
local state = redis.call('HGET', f, 'state')
if (state == 'done' or state == 'aborted')
    and tonumber(redis.call('HGET', f, 'freed')) >= tonumber(redis.call('HGET', f, 'reserved')) then
  redis.call('DEL', f, f .. ':log')
  redis.call('SREM', base .. 'reclaim', ARGV[2])
end
event(base, 'r', ARGV[2])
return 1
"#,
    )
});

/// Offers parked files again: each becomes a request in `wanted` for the
/// receivers that parked it (any worker in a work queue), for the sender
/// to upload it again from its source; its parked entry is removed.
/// Files sent from a stream cannot be read again and stay parked.
/// KEYS: meta. ARGV: base, names separated by newlines ('' for all).
/// Returns `{name, receiver, offered|stream, ...}`.
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local meta, base = KEYS[1], ARGV[1]
if redis.call('EXISTS', meta) == 0 then return redis.error_reply(VANISHED) end
local workers = redis.call('HGET', meta, 'mode') == 'workers'
local only = nil
if ARGV[2] ~= '' then
  only = {}
  for name in string.gmatch(ARGV[2], '[^\n]+') do only[name] = true end
end
local out = {}
local parked = redis.call('HGETALL', base .. 'parked')
for i = 1, #parked, 2 do
  local fid, receiver = string.match(parked[i], '^(%d+):(.+)$')
  local name = string.match(parked[i + 1], '^([^\t]*)')
  if fid and (not only or only[name]) then
    local sent = redis.call('HGET', base .. 'sent', name) or ''
    local identity = string.match(sent, '^%d+ (%S+) ') or 'stream'
    local outcome = 'stream'
    if identity ~= 'stream' then
      outcome = 'offered'
      local who = receiver
      if workers then who = '*' end
      local origin = redis.call('HGET', base .. 'f:' .. fid, 'origin') or fid
      want(base, name, fid .. ' ' .. identity .. ' 0 ' .. origin, who)
      redis.call('HDEL', base .. 'parked', parked[i])
      -- From parked to handed back, as a file asked for again.
      redis.call('HINCRBY', base .. 'r:' .. receiver, 'parked', -1)
      redis.call('HINCRBY', base .. 'r:' .. receiver, 'moved', 1)
    end
    table.insert(out, name)
    table.insert(out, receiver)
    table.insert(out, outcome)
  end
end
event(base, 'w', '0')
return out
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::channel::Channel;
    use crate::redis::{LocalRedis, LocalRedisOptions, Redis};

    const SLOT: u64 = 4096;
    const COST: u64 = SLOT + memory::KEY_COST;
    const LIMIT: u64 = 4 * COST;

    async fn run<T: redis::FromRedisValue>(
        channel: &Channel,
        script: &'static Script,
        args: &[&str],
    ) -> T {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        channel.run("testing", script, &args).await.unwrap()
    }

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

    async fn announce(channel: &Channel, name: &str) -> String {
        let slot = SLOT.to_string();
        let (fid, ..): (String, String, u64, u64, u64, u64, u64) = run(
            channel,
            &ANNOUNCE,
            &[name, "stream", "0", &slot, "1", "", "", "", "1"],
        )
        .await;
        fid
    }

    async fn reserve(channel: &Channel, fid: &str, want: u64, published: u64) -> i64 {
        let (want, limit, published) = (want.to_string(), LIMIT.to_string(), published.to_string());
        let (reserved, _): (i64, String) =
            run(channel, &RESERVE, &[fid, &want, &limit, &published]).await;
        reserved
    }

    /// After Redis lost writes, the file receivers read (the oldest) can be
    /// unfinished while newer files fill the budget: it must still get
    /// room, or nobody ever frees any.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_oldest_file_gets_room_that_newer_files_hold_and_no_more() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let redis = Redis::connect(&server.url()).await.unwrap();
        let channel = Channel::new(redis, Keys::new("rd", "t"));
        let (limit, slot) = (LIMIT.to_string(), SLOT.to_string());
        let _: Vec<String> = run(
            &channel,
            &OPEN,
            &["broadcast", "r", &limit, &slot, "0", VERSION],
        )
        .await;
        let old = announce(&channel, "old").await;
        assert_eq!(reserve(&channel, &old, 1, 0).await, 1);
        let new = announce(&channel, "new").await;
        assert_eq!(
            reserve(&channel, &new, 8, 0).await,
            3,
            "the rest of the budget"
        );
        // Full. The newer file waits; the older one goes on, chunk by chunk,
        // until it alone would fill a budget.
        assert_eq!(reserve(&channel, &new, 8, 0).await, 3);
        assert_eq!(reserve(&channel, &old, 8, 0).await, 2);
        assert_eq!(reserve(&channel, &old, 8, 0).await, 3);
        assert_eq!(reserve(&channel, &old, 8, 0).await, 4);
        assert_eq!(reserve(&channel, &old, 8, 0).await, 4, "a limit of its own");
        // Its consumed prefix is released early, as if it were alone.
        let fid = old.as_str();
        let _: i64 = run(&channel, &CONSUME, &[fid, "r", "2", "0"]).await;
        let _: i64 = run(
            &channel,
            &PUBLISH,
            &[fid, "0", "4", &"0".repeat(256), "4", "4"],
        )
        .await;
        let plan: Vec<String> = run(&channel, &RELEASE_PLAN, &["1"]).await;
        assert_eq!(plan, [fid, "0", "2"]);
    }
}
