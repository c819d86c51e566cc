-- Library: the surge is still going at this event's time (never moves back). Included by the detectors'
-- record scripts, which keep their surge going in the same atomic call.
local function touch_surge(key, open_key, ts, bucket)
  if redis.call('EXISTS', key) == 1 and ts > tonumber(redis.call('HGET', key, 'last_event_at')) then
    redis.call('HSET', key, 'last_event_at', tostring(ts))
    redis.call('ZADD', open_key, 'XX', ts, bucket)
  end
end
