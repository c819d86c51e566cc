-- Record one sign-up; return the window's count, its oldest time, the baseline (only when the count
-- reaches the minimum: summing ~700 hourly counters is the slow part) and how long we have observed.
-- KEYS: sign-ups, hours, first seen, this sign-up's hash, surge hash.
-- ARGV: 1 id, 2 time, 3 window, 4 baseline, 5 min sign-ups, 6 keep seconds, 7 keep cap, 8 hash prefix,
--       9 prune batch, 10.. field/value pairs.
local id, ts = ARGV[1], tonumber(ARGV[2])
local window, baseline = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('ZADD', KEYS[1], 'NX', ts, id) == 1 then
  local fields = {}
  for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[4], unpack(fields))
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  local hour = math.floor(ts / 3600)
  if redis.call('HINCRBY', KEYS[2], hour, 1) == 1 then
    local oldest = math.floor((ts - window - baseline) / 3600)
    for _, h in ipairs(redis.call('HKEYS', KEYS[2])) do
      if tonumber(h) < oldest then redis.call('HDEL', KEYS[2], h) end
    end
  end
  local first = redis.call('GET', KEYS[3])
  if not first or ts < tonumber(first) then redis.call('SET', KEYS[3], ARGV[2]) end
end
local forget = oldest_to_forget(KEYS[1], ts - tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[9]))
for _, old in ipairs(forget) do
  redis.call('ZREM', KEYS[1], old)
  redis.call('DEL', ARGV[8] .. old)
end

local from = ts - window
local count = redis.call('ZCOUNT', KEYS[1], '(' .. from, ts)
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. from, ts, 'WITHSCORES', 'LIMIT', 0, 1)
local base = -1
if count >= tonumber(ARGV[5]) then
  base = 0
  local low, high = math.floor((from - baseline) / 3600), math.floor(from / 3600)
  local hours = redis.call('HGETALL', KEYS[2])
  for i = 1, #hours, 2 do
    local h = tonumber(hours[i])
    if h >= low and h < high then base = base + tonumber(hours[i + 1]) end
  end
end
local observed = ts - tonumber(redis.call('GET', KEYS[3]) or ARGV[2])
return {count, oldest[2] or '', base, tostring(observed), redis.call('HGETALL', KEYS[5])}
