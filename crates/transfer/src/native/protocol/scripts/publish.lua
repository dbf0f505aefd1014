local f = ARGV[1] .. 'f:' .. ARGV[2]
local published = tonumber(redis.call('HGET', f, 'published'))
local from, count = tonumber(ARGV[3]), tonumber(ARGV[4])
-- Redis lost the record or earlier publications (it restarted without
-- its latest writes): publishing these would leave chunks without digests.
if not published or published < from then return -2 end
if count > published then
  redis.call('HSET', f, 'published', count, 'offset', ARGV[6], 'stored', ARGV[7])
  -- Digests of the chunks published now; a retried call may cover
  -- chunks an earlier attempt published already.
  local digests = string.sub(ARGV[5], (math.max(published, from) - from) * 64 + 1)
  redis.call('XADD', f .. ':log', '*', 'n', count, 'd', digests)
end
return 1
