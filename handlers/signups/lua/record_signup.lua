-- Record one sign-up; return the window's count, its oldest time, the baseline (only when the count
-- reaches the minimum, else -1: summing ~700 hourly counters is the slow part) and how long we have
-- observed.
local key, arg = named_arguments(
  {'signups', 'hours', 'first_seen', 'signup', 'surge'},
  {'account_id', 'time', 'window', 'baseline', 'min_signups', 'fields', 'keep_seconds', 'keep_cap',
   'signup_prefix', 'prune_batch'})
local id, ts = arg.account_id, tonumber(arg.time)
local window, baseline = arg.window, arg.baseline
if redis.call('ZADD', key.signups, 'NX', ts, id) == 1 then
  redis.call('HSET', key.signup, unpack(arg.fields))  -- field, value, field, value, ...
  redis.call('EXPIRE', key.signup, arg.keep_seconds)
  local hour = math.floor(ts / 3600)
  if redis.call('HINCRBY', key.hours, hour, 1) == 1 then
    local oldest = math.floor((ts - window - baseline) / 3600)
    for _, h in ipairs(redis.call('HKEYS', key.hours)) do
      if tonumber(h) < oldest then redis.call('HDEL', key.hours, h) end
    end
  end
  local first = redis.call('GET', key.first_seen)
  if not first or ts < tonumber(first) then redis.call('SET', key.first_seen, arg.time) end
end
local forget = oldest_to_forget(key.signups, ts - arg.keep_seconds, arg.keep_cap, arg.prune_batch)
for _, old in ipairs(forget) do
  redis.call('ZREM', key.signups, old)
  redis.call('DEL', arg.signup_prefix .. old)
end

local from = ts - window
local count = redis.call('ZCOUNT', key.signups, '(' .. from, ts)
local oldest = redis.call('ZRANGEBYSCORE', key.signups, '(' .. from, ts, 'WITHSCORES', 'LIMIT', 0, 1)
local base = -1
if count >= arg.min_signups then
  base = 0
  local low, high = math.floor((from - baseline) / 3600), math.floor(from / 3600)
  local hours = redis.call('HGETALL', key.hours)
  for i = 1, #hours, 2 do
    local h = tonumber(hours[i])
    if h >= low and h < high then base = base + tonumber(hours[i + 1]) end
  end
end
local observed = ts - tonumber(redis.call('GET', key.first_seen) or ts)
return {count, oldest[2] or '', base, tostring(observed), redis.call('HGETALL', key.surge)}
