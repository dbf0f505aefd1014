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
