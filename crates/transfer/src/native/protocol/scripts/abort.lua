local meta, base = KEYS[1], ARGV[1]
if redis.call('HGET', base .. 'f:' .. ARGV[2], 'state') ~= 'uploading' then return 0 end
abort(meta, base, ARGV[2], ARGV[3])
return 1
