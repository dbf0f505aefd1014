local base = ARGV[1]
local f = base .. 'f:' .. ARGV[2]
if redis.call('EXISTS', f) == 0 then return 0 end
local field = 'pos:' .. ARGV[3]
if ARGV[5] == '1' or tonumber(ARGV[4]) > tonumber(redis.call('HGET', f, field) or '0') then
  redis.call('HSET', f, field, ARGV[4])
end
event(base, 'c', ARGV[2])
return 1
