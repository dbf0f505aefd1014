local meta, base = KEYS[1], ARGV[1]
if redis.call('EXISTS', meta) == 0 then return redis.error_reply(VANISHED) end
local workers = redis.call('HGET', meta, 'mode') == 'workers'
local only = nil
if ARGV[2] ~= '' then
  only = {}
  for name in string.gmatch(ARGV[2], '[^\n]+') do only[name] = true end
end
local out = {}
local parked = redis.call('HGETALL', base .. 'parked')
for i = 1, #parked, 2 do
  local fid, receiver = string.match(parked[i], '^(%d+):(.+)$')
  local name = string.match(parked[i + 1], '^([^\t]*)')
  if fid and (not only or only[name]) then
    local sent = redis.call('HGET', base .. 'sent', name) or ''
    local identity = string.match(sent, '^%d+ (%S+) ') or 'stream'
    local outcome = 'stream'
    if identity ~= 'stream' then
      outcome = 'offered'
      local who = receiver
      if workers then who = '*' end
      local origin = redis.call('HGET', base .. 'f:' .. fid, 'origin') or fid
      want(base, name, fid .. ' ' .. identity .. ' 0 ' .. origin, who)
      redis.call('HDEL', base .. 'parked', parked[i])
      -- From parked to handed back, as a file asked for again.
      redis.call('HINCRBY', base .. 'r:' .. receiver, 'parked', -1)
      redis.call('HINCRBY', base .. 'r:' .. receiver, 'moved', 1)
    end
    table.insert(out, name)
    table.insert(out, receiver)
    table.insert(out, outcome)
  end
end
event(base, 'w', '0')
return out
