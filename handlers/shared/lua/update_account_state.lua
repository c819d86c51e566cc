-- Keep a remembered account's state current, only if it is remembered.
-- KEYS: its hash. ARGV: field/value pairs.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
