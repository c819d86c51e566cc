-- Close every surge whose last event is at or before the cutoff (at most 100 per call); return
-- bucket, fields pairs. KEYS: open surges. ARGV: cutoff, surge key prefix.
local closed = {}
for _, bucket in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)) do
  local key = ARGV[2] .. bucket
  local last = tonumber(redis.call('HGET', key, 'last_event_at') or '0')
  if last <= tonumber(ARGV[1]) then
    closed[#closed + 1] = bucket
    closed[#closed + 1] = redis.call('HGETALL', key)
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], bucket)
  else
    redis.call('ZADD', KEYS[1], last, bucket)
  end
end
return closed
