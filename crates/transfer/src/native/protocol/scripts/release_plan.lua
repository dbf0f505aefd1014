local meta, base = KEYS[1], ARGV[1]
local out = reclaim_list(base)
if ARGV[2] ~= '1' then return out end
local mode = redis.call('HGET', meta, 'mode')
local receivers = redis.call('HGET', meta, 'receivers') or ''
local held = tonumber(redis.call('HGET', meta, 'held') or '0')
for _, fid in ipairs(redis.call('ZRANGE', base .. 'active', 0, -1)) do
  local f = base .. 'f:' .. fid
  local freed = tonumber(redis.call('HGET', f, 'freed') or '-1')
  -- Only the file being uploaded, and only when it fills the budget by
  -- itself (less than a chunk held by all others): it is larger than the
  -- budget and can only stream through. Any other file fits, and waiting
  -- for its receivers to finish it frees room without losing a byte.
  local cost = chunk_cost(f) or 0
  local alone = held - tonumber(redis.call('HGET', f, 'acct') or '0') < cost
  -- A starved file (see `starved`) cannot wait for newer ones either.
  if redis.call('HGET', f, 'state') ~= 'uploading'
      or not (alone or starved(base, fid, f, held, cost)) then
    freed = -1
  end
  local published = tonumber(redis.call('HGET', f, 'published') or '0')
  local low = nil
  if mode == 'workers' then
    low = 0
    local fields = redis.call('HGETALL', f)
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, 4) == 'pos:' then low = math.max(low, tonumber(fields[i + 1])) end
    end
  else
    -- An upload again is for the receivers that lost the file only.
    local audience = redis.call('HGET', f, 'for') or receivers
    for r in string.gmatch(audience, '[^,]+') do
      local p = published
      if redis.call('HEXISTS', f, 'ack:' .. r) == 0 then
        p = tonumber(redis.call('HGET', f, 'pos:' .. r) or '0')
      end
      if low == nil or p < low then low = p end
    end
  end
  if freed >= 0 and low and low > freed then
    table.insert(out, fid)
    table.insert(out, freed)
    table.insert(out, math.min(low, published))
  end
end
return out
