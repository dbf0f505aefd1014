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
    -- This very upload again, stored whole by an attempt whose reply was
    -- lost: nobody it is for settled it yet, or it would be done.
    if live == 'sent' and redis.call('HGET', f, 'for') == ARGV[7] and identity == ARGV[3] then
      return answer({fid, 'sent', 0, redis.call('HGET', f, 'chunk') or ARGV[5], 0, 0})
    end
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
-- A small file comes whole: stored in its record, if the budget has room
-- for it (or holds nothing); otherwise the sender announces it without
-- its data and waits for room chunk by chunk.
local inline = ARGV[13]
if inline then
  local held = tonumber(redis.call('HGET', meta, 'held') or '0')
  if held > 0 and held + tonumber(ARGV[16]) > tonumber(ARGV[17]) then
    return answer({'0', 'full', 0, ARGV[5], 0, 0})
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
if inline then
  redis.call('HSET', f, 'data', inline, 'size', ARGV[14], 'digest', ARGV[15], 'state', 'sent',
    'reserved', 1, 'published', 1, 'offset', ARGV[14], 'stored', #inline, 'tail', ARGV[16])
  account(meta, f)
  redis.call('HINCRBY', meta, 'original', ARGV[14])
  redis.call('HINCRBY', meta, 'stored', #inline)
end
redis.call('HSET', sent, ARGV[2], fid .. ' ' .. ARGV[3] .. (inline and ' sent' or ' uploading'))
redis.call('ZADD', base .. 'active', fid, fid)
redis.call('HINCRBY', meta, 'announced', 1)
redis.call('XADD', base .. 'files', '*', 'kind', 'file', 'fid', fid)
return answer({tostring(fid), inline and 'stored' or 'new', 0, ARGV[5], 0, 0})
