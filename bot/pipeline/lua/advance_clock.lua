-- Move the event clock forward, never back. KEYS: watermark. ARGV: event time. Returns the clock.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local candidate = tonumber(ARGV[1])
if candidate > current then redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1] end
return tostring(current)
