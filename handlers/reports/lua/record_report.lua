-- Record one report and return the stats of its bucket and of EVERYWHERE, plus both surge states.
-- Every count is O(log n): distinct accounts and reporters are sorted sets scored by their latest report
-- (ZADD GT), so a wave's thousandth report costs what its first did.
-- KEYS: bucket times, everywhere times, report hash, bucket surge, everywhere surge, open surges,
--       active buckets. ARGV: report id, time, window, baseline, everywhere threshold, bucket, ttl,
--       account, reporter, report cap, report hash prefix, times prefix, active bucket cap, then
--       field/value pairs for the report hash.
local id, ts = ARGV[1], tonumber(ARGV[2])
local window, baseline = tonumber(ARGV[3]), tonumber(ARGV[4])
local from = ts - window
local fields = {}
for i = 14, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('EXPIRE', KEYS[3], ARGV[7])

local function track(key, member)
  if member ~= '' then redis.call('ZADD', key, 'GT', ts, member) end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (from - baseline))
  redis.call('EXPIRE', key, ARGV[7])
end
for _, key in ipairs({KEYS[1], KEYS[2]}) do
  track(key, id)
  track(key .. ':accounts', ARGV[8])
  track(key .. ':reporters', ARGV[9])
end
track(KEYS[7], ARGV[6])
-- Beyond the cap (ARGV[10]), forget the oldest (a few per event): memory stays bounded whatever
-- the report rate. Each forgotten report leaves its bucket's times and its hash too.
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[10])
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, math.min(over, 10) - 1)) do
    local bucket = redis.call('HGET', ARGV[11] .. old, 'bucket')
    if bucket then redis.call('ZREM', ARGV[12] .. bucket, old) end
    redis.call('ZREM', KEYS[2], old)
    redis.call('DEL', ARGV[11] .. old)
  end
end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local observed = ts - tonumber(oldest[2])

-- Distinct accounts (reporters) are those with a report after the window's start. For an event
-- processed late that includes accounts first reported after it: a slight over-count, used only for
-- the min-accounts gate (DMs show the counts read when they are sent, see window_details).
local function stats(key, everywhere)
  local count = redis.call('ZCOUNT', key, '(' .. from, ts)
  local hour = redis.call('ZCOUNT', key, '(' .. (ts - 3600), ts)
  local first = redis.call('ZRANGEBYSCORE', key, '(' .. (ts - 3600), ts, 'WITHSCORES', 'LIMIT', 0, 1)
  local base = redis.call('ZCOUNT', key, '(' .. (from - baseline), from)
  local accounts = redis.call('ZCOUNT', key .. ':accounts', '(' .. from, '+inf')
  local reporters = redis.call('ZCOUNT', key .. ':reporters', '(' .. from, '+inf')
  local top = 0
  if everywhere and count >= tonumber(ARGV[5]) then
    for _, bucket in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '(' .. from, '+inf', 'LIMIT', 0, tonumber(ARGV[13]))) do
      if bucket ~= '*' then
        top = math.max(top, redis.call('ZCOUNT', ARGV[12] .. bucket, '(' .. from, ts))
      end
    end
  end
  return {count, hour, first[2] or '', base, accounts, reporters, top, tostring(observed)}
end

local result = {stats(KEYS[1], false), stats(KEYS[2], true)}
for i, key in ipairs({KEYS[4], KEYS[5]}) do
  touch_surge(key, KEYS[6], ts, i == 1 and ARGV[6] or '*')
  result[#result + 1] = redis.call('HGETALL', key)
end
return result
