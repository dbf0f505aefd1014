local meta, base = KEYS[1], ARGV[1]
local fid, receiver = ARGV[2], ARGV[3]
redis.call('XACK', base .. 'files', ARGV[4], ARGV[5])
local f = base .. 'f:' .. fid
if redis.call('EXISTS', f) == 0 then return 'gone' end
local name = redis.call('HGET', f, 'name') or ''
local identity = redis.call('HGET', f, 'identity') or 'stream'
local round = tonumber(redis.call('HGET', f, 'round') or '0') or 0
local origin = redis.call('HGET', f, 'origin') or fid
local why = nil
if identity == 'stream' then
  why = ARGV[7] .. '; it was read from a stream, which cannot be read again: send it again'
elseif round >= tonumber(ARGV[6]) then
  why = ARGV[7] .. ' (its data went missing ' .. (round + 1) .. ' times)'
end
if why then
  local parked = settle(meta, base, fid, receiver, 'parked', why, 0)
  event(base, 'a', fid)
  if parked then return 'parked' end
  return 'gone'
end
if not settle(meta, base, fid, receiver, 'moved', '', 0) then return 'gone' end
local who = receiver
if redis.call('HGET', meta, 'mode') == 'workers' then who = '*' end
want(base, name, fid .. ' ' .. identity .. ' ' .. (round + 1) .. ' ' .. origin, who)
event(base, 'w', fid)
return 'wanted'
