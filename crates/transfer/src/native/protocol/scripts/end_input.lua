local id = redis.call('XADD', ARGV[1] .. 'files', '*', 'kind', 'eof')
redis.call('HSET', KEYS[1], 'ended', '1', 'eof_id', id)
return id
