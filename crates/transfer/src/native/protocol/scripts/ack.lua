local meta, base = KEYS[1], ARGV[1]
redis.call('XACK', base .. 'files', ARGV[4], ARGV[5])
if ARGV[6] ~= 'skip' then
  settle(meta, base, ARGV[2], ARGV[3], ARGV[6], ARGV[7], ARGV[8])
end
if ARGV[6] == 'done' then
  -- For `status`: no file being read now, when it said so, and its pace.
  local r = base .. 'r:' .. ARGV[3]
  redis.call('HDEL', r, 'current', 'at')
  redis.call('HSET', r, 'seen', ARGV[9], 'rate', ARGV[10])
end
event(base, 'a', ARGV[2])
return reclaim_list(base)
