-- Intake: remember the body (deduplication), append the event to the stream, count it, and claim the
-- right to enqueue a drain job if none is scheduled.
-- KEYS: dedupe key, stream, drain flag, intake counts. ARGV: dedupe ttl, event json, flag ttl, event name.
-- Returns 0 (seen before), 1 (added), 2 (added; the caller enqueues a drain).
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'event', ARGV[2])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then return 2 end
return 1
