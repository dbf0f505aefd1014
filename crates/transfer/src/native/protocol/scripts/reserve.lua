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
