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
-- A file uploaded whole and settled by everyone it was for: it leaves
-- the active set and its chunks wait to be reclaimed; a file stored in
-- its record has no chunks, and goes at once.
local function file_done(meta, base, fid, f)
  redis.call('HSET', f, 'state', 'done')
  redis.call('ZREM', base .. 'active', fid)
  redis.call('HINCRBY', meta, 'finished', 1)
  if redis.call('HEXISTS', f, 'data') == 1 then
    redis.call('HSET', f, 'freed', redis.call('HGET', f, 'reserved'))
    account(meta, f)
    redis.call('DEL', f)
  else
    redis.call('SADD', base .. 'reclaim', fid)
  end
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
    file_done(meta, base, fid, f)
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
