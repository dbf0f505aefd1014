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
