-- Announces one file; `A` holds ANNOUNCE's arguments (A[1] is base).
local function announce(meta, base, A)
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
  if A[12] == '1' and tonumber(redis.call('HGET', meta, 'next_fid') or '0') < tonumber(A[10]) - 1 then
    return answer({'0', 'forgot', 0, A[5], 0, 0})
  end
  local sent = base .. 'sent'
  local resupply = A[7] ~= ''
  local previous = redis.call('HGET', sent, A[2])
  if previous then
    local fid, identity, state = string.match(previous, '^(%d+) (%S+) (%S+)$')
    local f = base .. 'f:' .. fid
    local live = redis.call('HGET', f, 'state')
    if resupply then
      -- This very upload again, stored whole by an attempt whose reply was
      -- lost: nobody it is for settled it yet, or it would be done.
      if live == 'sent' and redis.call('HGET', f, 'for') == A[7] and identity == A[3] then
        return answer({fid, 'sent', 0, redis.call('HGET', f, 'chunk') or A[5], 0, 0})
      end
      if live == 'uploading' then
        -- This very upload again, begun by an attempt whose reply was lost
        -- or cut short by a Redis restart: resume it.
        if redis.call('HGET', f, 'for') == A[7] and identity == A[3] then
          return resume(fid, f)
        end
        -- Receivers of the unfinished upload still need it: finish it first.
        return answer({fid, 'busy', 0, A[5], 0, 0})
      end
    elseif A[4] == '1' and identity == A[3] then
      if state == 'sent' then return answer({fid, 'sent', 0, redis.call('HGET', f, 'chunk') or A[5], 0, 0}) end
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
        return answer({other, 'busy', 0, A[5], 0, 0})
      end
    end
  end
  -- A small file comes whole: stored in its record, if the budget has room
  -- for it (or holds nothing); otherwise the sender announces it without
  -- its data and waits for room chunk by chunk.
  local inline = A[13]
  if inline then
    local held = tonumber(redis.call('HGET', meta, 'held') or '0')
    if held > 0 and held + tonumber(A[16]) > tonumber(A[17]) then
      return answer({'0', 'full', 0, A[5], 0, 0})
    end
  end
  local fid = math.max(redis.call('HINCRBY', meta, 'next_fid', 1), tonumber(A[10]))
  redis.call('HSET', meta, 'next_fid', fid)
  local f = base .. 'f:' .. fid
  redis.call('HSET', f, 'name', A[2], 'chunk', A[5], 'need', A[6], 'state', 'uploading',
    'reserved', 0, 'published', 0, 'freed', 0, 'acks', 0, 'acct', 0, 'fails', 0,
    'identity', A[3], 'origin', A[8] ~= '' and A[8] or fid, 'round', A[9] ~= '' and A[9] or 0)
  if A[11] and A[11] ~= '' then redis.call('HSET', f, 'piece', A[11]) end
  if resupply then
    redis.call('HSET', f, 'for', A[7])
    redis.call('HINCRBY', meta, 'resupplied', 1)
    for r in string.gmatch(A[7], '[^,*]+') do redis.call('HINCRBY', base .. 'r:' .. r, 'owed', 1) end
    local wanted = base .. 'wanted'
    local value = redis.call('HGET', wanted, A[2])
    if value then
      local served, left = wanted_list(' ' .. A[7]), {}
      for r in pairs(wanted_list(value)) do
        if not served[r] then table.insert(left, r) end
      end
      if #left == 0 then
        redis.call('HDEL', wanted, A[2])
      else
        redis.call('HSET', wanted, A[2], string.match(value, '^(.*) %S*$') .. ' ' .. table.concat(left, ','))
      end
    end
  end
  if inline then
    redis.call('HSET', f, 'data', inline, 'size', A[14], 'digest', A[15], 'state', 'sent',
      'reserved', 1, 'published', 1, 'offset', A[14], 'stored', #inline, 'tail', A[16])
    account(meta, f)
    redis.call('HINCRBY', meta, 'original', A[14])
    redis.call('HINCRBY', meta, 'stored', #inline)
  end
  redis.call('HSET', sent, A[2], fid .. ' ' .. A[3] .. (inline and ' sent' or ' uploading'))
  redis.call('ZADD', base .. 'active', fid, fid)
  redis.call('HINCRBY', meta, 'announced', 1)
  redis.call('XADD', base .. 'files', '*', 'kind', 'file', 'fid', fid)
  return answer({tostring(fid), inline and 'stored' or 'new', 0, A[5], 0, 0})
end
