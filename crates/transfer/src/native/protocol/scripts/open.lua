local meta, base = KEYS[1], ARGV[1]
local files = base .. 'files'
if redis.call('EXISTS', meta) == 1 then
  local version = redis.call('HGET', meta, 'version')
  if version ~= ARGV[7] then return {'version ' .. tostring(version), ''} end
  local mode = redis.call('HGET', meta, 'mode')
  local receivers = redis.call('HGET', meta, 'receivers') or ''
  if mode ~= ARGV[2] or receivers ~= ARGV[3] then return {mode, receivers} end
  redis.call('HSET', meta, 'limit', ARGV[4], 'chunk_size', ARGV[5], 'ended', '0')
  return {}
end
redis.call('HSET', meta, 'version', ARGV[7], 'mode', ARGV[2], 'receivers', ARGV[3],
  'limit', ARGV[4], 'chunk_size', ARGV[5], 'created_ms', ARGV[6], 'ended', '0',
  'held', '0', 'announced', '0', 'finished', '0', 'aborted', '0', 'next_fid', '0')
local id = redis.call('XADD', files, '*', 'kind', 'open')
if ARGV[2] == 'workers' then
  redis.call('XGROUP', 'CREATE', files, 'workers', id)
else
  for r in string.gmatch(ARGV[3], '[^,]+') do
    redis.call('XGROUP', 'CREATE', files, 'r:' .. r, id)
  end
end
return {}
