-- Open a surge if none is open, or escalate it if no one else did since we read it. A replayed event
-- that already made this transition gets the same answer again (its alert job is then enqueued again,
-- and the outbox makes sure it is posted once).
-- `time` and `rate` come as text, stored as written: the opening time is the surge's id.
-- Returns {alert number, surge id}, or nil when another worker made the transition first.
local key, arg = named_arguments(
  {'surge', 'open_surges'}, {'decision', 'trigger', 'time', 'count', 'rate', 'alerts_seen', 'bucket'})
local exists = redis.call('EXISTS', key.surge) == 1
if exists and redis.call('HGET', key.surge, 'trigger') == arg.trigger then
  return redis.call('HMGET', key.surge, 'alerts', 'surge_id')
end
if arg.decision == 'open' then
  if exists then return false end
  redis.call('HSET', key.surge, 'surge_id', arg.time, 'opened_at', arg.time, 'alerts', 1, 'alerted_count', arg.count,
             'alerted_rate', arg.rate, 'alerted_at', arg.time, 'last_event_at', arg.time, 'trigger', arg.trigger)
  redis.call('ZADD', key.open_surges, arg.time, arg.bucket)
  return {'1', arg.time}
end
if not exists or tonumber(redis.call('HGET', key.surge, 'alerts')) ~= arg.alerts_seen then return false end
local alerts = redis.call('HINCRBY', key.surge, 'alerts', 1)
redis.call('HSET', key.surge, 'alerted_count', arg.count, 'alerted_rate', arg.rate, 'alerted_at', arg.time,
           'trigger', arg.trigger)
return {tostring(alerts), redis.call('HGET', key.surge, 'surge_id')}
