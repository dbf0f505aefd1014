local meta, base = KEYS[1], ARGV[1]
local f = base .. 'f:' .. ARGV[2]
local state = redis.call('HGET', f, 'state')
if state == 'sent' or state == 'done' then return 1 end
if not state then return -1 end
if state ~= 'uploading' then return 0 end
if tonumber(redis.call('HGET', f, 'published') or '0') < tonumber(ARGV[5]) then return -1 end
redis.call('HSET', f, 'size', ARGV[3], 'digest', ARGV[4], 'state', 'sent', 'published', ARGV[5], 'tail', ARGV[6])
account(meta, f)
redis.call('HINCRBY', meta, 'original', ARGV[3])
redis.call('HINCRBY', meta, 'stored', redis.call('HGET', f, 'stored') or 0)
redis.call('XADD', f .. ':log', '*', 'end', '1', 'size', ARGV[3], 'digest', ARGV[4], 'n', ARGV[5])
local name = redis.call('HGET', f, 'name')
local previous = redis.call('HGET', base .. 'sent', name)
if previous then
  redis.call('HSET', base .. 'sent', name, (string.gsub(previous, 'uploading$', 'sent')))
end
if tonumber(redis.call('HGET', f, 'acks')) >= tonumber(redis.call('HGET', f, 'need')) then
  file_done(meta, base, ARGV[2], f)
end
return 1
