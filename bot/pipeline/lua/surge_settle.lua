-- Raise a surge's reference count and rate (see `settling`), unless another alert intervened.
-- KEYS: surge hash. ARGV: alerts seen, count, rate.
if redis.call('HGET', KEYS[1], 'alerts') ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > tonumber(redis.call('HGET', KEYS[1], 'alerted_count')) then
  redis.call('HSET', KEYS[1], 'alerted_count', ARGV[2])
end
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'alerted_rate')) then
  redis.call('HSET', KEYS[1], 'alerted_rate', ARGV[3])
end
return 1
