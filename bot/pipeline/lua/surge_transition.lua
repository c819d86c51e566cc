-- Open a surge if none is open, or escalate it if no one else did since we read it. A replayed event
-- that already made this transition gets the same answer again (its alert job is then enqueued again,
-- and the outbox makes sure it is posted once).
-- KEYS: surge hash, open surges. ARGV: decision, trigger (event id), time, count, rate, alerts seen, bucket.
-- Returns {alert number, surge id}, or nil when another worker made the transition first.
local exists = redis.call('EXISTS', KEYS[1]) == 1
if exists and redis.call('HGET', KEYS[1], 'trigger') == ARGV[2] then
  return redis.call('HMGET', KEYS[1], 'alerts', 'surge_id')
end
if ARGV[1] == 'open' then
  if exists then return false end
  redis.call('HSET', KEYS[1], 'surge_id', ARGV[3], 'opened_at', ARGV[3], 'alerts', 1, 'alerted_count', ARGV[4],
             'alerted_rate', ARGV[5], 'alerted_at', ARGV[3], 'last_event_at', ARGV[3], 'trigger', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[7])
  return {'1', ARGV[3]}
end
if not exists or redis.call('HGET', KEYS[1], 'alerts') ~= ARGV[6] then return false end
local alerts = redis.call('HINCRBY', KEYS[1], 'alerts', 1)
redis.call('HSET', KEYS[1], 'alerted_count', ARGV[4], 'alerted_rate', ARGV[5], 'alerted_at', ARGV[3],
           'trigger', ARGV[2])
return {tostring(alerts), redis.call('HGET', KEYS[1], 'surge_id')}
