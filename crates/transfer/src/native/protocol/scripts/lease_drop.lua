local k = ARGV[1] .. 'lease:' .. ARGV[2]
if redis.call('GET', k) == ARGV[3] then
  redis.call('DEL', k)
  -- A renewal of ours still on its way must not take the role back.
  redis.call('HINCRBY', ARGV[1] .. 'leasegen', ARGV[2], 1)
end
return 1
