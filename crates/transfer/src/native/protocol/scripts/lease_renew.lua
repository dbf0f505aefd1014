local k = ARGV[1] .. 'lease:' .. ARGV[2]
local current = redis.call('GET', k)
if current and current ~= ARGV[3] then return 0 end
local gen = ARGV[1] .. 'leasegen'
local generation = tonumber(redis.call('HGET', gen, ARGV[2]) or '0')
-- A later holder took the role meanwhile. (An earlier generation, or none,
-- is Redis back from an older snapshot: ours stands.)
if generation > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', gen, ARGV[2], ARGV[5])
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return 1
