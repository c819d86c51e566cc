-- A poll's changes: compare-and-set every changed domain's stored state, then append one event.
-- KEYS: state, stream, drain flag. ARGV: event JSON ('' to record the state only), drain flag ttl, then
-- (domain, expected old JSON or '', new JSON or '' to remove) for every changed domain.
-- Returns 0 (the state moved on: another poller got there first; nothing written), 1, or 2 (drain needed).
for i = 3, #ARGV, 3 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[i + 1] then return 0 end
end
for i = 3, #ARGV, 3 do
  if ARGV[i + 2] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2]) end
end
if ARGV[1] == '' then return 1 end
redis.call('XADD', KEYS[2], '*', 'event', ARGV[1])
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then return 2 end
return 1
