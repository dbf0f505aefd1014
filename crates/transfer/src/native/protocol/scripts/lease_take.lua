local k = ARGV[1] .. 'lease:' .. ARGV[2]
local gen = ARGV[1] .. 'leasegen'
local current = redis.call('GET', k)
if current and current ~= ARGV[3] and current ~= ARGV[5] then return {current, ''} end
local generation = redis.call('HGET', gen, ARGV[2])
if current ~= ARGV[3] or not generation then generation = redis.call('HINCRBY', gen, ARGV[2], 1) end
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return {'', tostring(generation)}
