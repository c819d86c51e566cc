-- One audit entry per command, whatever the retries: the marker and the entry are written together.
-- KEYS[1] the command's marker, KEYS[2] the audit stream
-- ARGV[1] marker lifetime (s), ARGV[2] oldest entry id to keep (ms), ARGV[3..] field, value, ...
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then
  return false
end
local fields = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
return redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', unpack(fields))
