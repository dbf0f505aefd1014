-- ARGV: base, the number of arguments per file, then each file's
-- arguments as ANNOUNCE takes them after base. Files go in order; the
-- first one neither stored nor sent before is the last one answered.
local meta, base, width = KEYS[1], ARGV[1], tonumber(ARGV[2])
local answers = {}
for at = 3, #ARGV, width do
  local A = {base}
  for i = 0, width - 1 do A[i + 2] = ARGV[at + i] end
  local reply = announce(meta, base, A)
  if reply.err then return reply end
  table.insert(answers, reply)
  if reply[2] ~= 'stored' and reply[2] ~= 'sent' then break end
end
return answers
