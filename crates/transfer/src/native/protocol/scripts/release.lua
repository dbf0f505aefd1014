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
