-- Record one report and return the stats of its bucket and of EVERYWHERE, plus both surge states.
-- Every count is O(log n): distinct accounts and reporters are sorted sets scored by their latest report
-- (ZADD GT), so a wave's thousandth report costs what its first did.
local key, arg = named_arguments(
  {'bucket_times', 'everywhere_times', 'report', 'bucket_surge', 'everywhere_surge', 'open_surges',
   'active_buckets'},
  {'report_id', 'time', 'window', 'baseline', 'bucket', 'account', 'reporter', 'fields', 'ttl',
   'everywhere_threshold', 'report_cap', 'report_prefix', 'times_prefix', 'active_bucket_cap'})
local id, ts = arg.report_id, tonumber(arg.time)
local window, baseline = arg.window, arg.baseline
local from = ts - window
redis.call('HSET', key.report, unpack(arg.fields))  -- field, value, field, value, ...
redis.call('EXPIRE', key.report, arg.ttl)

local function track(index, member)
  if member ~= '' then redis.call('ZADD', index, 'GT', ts, member) end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (from - baseline))
  redis.call('EXPIRE', index, arg.ttl)
end
for _, times in ipairs({key.bucket_times, key.everywhere_times}) do
  track(times, id)
  track(times .. ':accounts', arg.account)
  track(times .. ':reporters', arg.reporter)
end
track(key.active_buckets, arg.bucket)
-- Beyond the cap, forget the oldest (a few per event): memory stays bounded whatever the report rate.
-- Each forgotten report leaves its bucket's times and its hash too.
local over = redis.call('ZCARD', key.everywhere_times) - arg.report_cap
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', key.everywhere_times, 0, math.min(over, 10) - 1)) do
    local bucket = redis.call('HGET', arg.report_prefix .. old, 'bucket')
    if bucket then redis.call('ZREM', arg.times_prefix .. bucket, old) end
    redis.call('ZREM', key.everywhere_times, old)
    redis.call('DEL', arg.report_prefix .. old)
  end
end
local oldest = redis.call('ZRANGE', key.everywhere_times, 0, 0, 'WITHSCORES')
local observed = ts - tonumber(oldest[2])

-- Distinct accounts (reporters) are those with a report after the window's start. For an event
-- processed late that includes accounts first reported after it: a slight over-count, used only for
-- the min-accounts gate (DMs show the counts read when they are sent, see window_details).
local function stats(times, everywhere)
  local count = redis.call('ZCOUNT', times, '(' .. from, ts)
  local hour = redis.call('ZCOUNT', times, '(' .. (ts - 3600), ts)
  local first = redis.call('ZRANGEBYSCORE', times, '(' .. (ts - 3600), ts, 'WITHSCORES', 'LIMIT', 0, 1)
  local base = redis.call('ZCOUNT', times, '(' .. (from - baseline), from)
  local accounts = redis.call('ZCOUNT', times .. ':accounts', '(' .. from, '+inf')
  local reporters = redis.call('ZCOUNT', times .. ':reporters', '(' .. from, '+inf')
  local top = 0
  if everywhere and count >= arg.everywhere_threshold then
    for _, bucket in ipairs(redis.call('ZRANGEBYSCORE', key.active_buckets, '(' .. from, '+inf', 'LIMIT', 0,
                                       arg.active_bucket_cap)) do
      if bucket ~= '*' then
        top = math.max(top, redis.call('ZCOUNT', arg.times_prefix .. bucket, '(' .. from, ts))
      end
    end
  end
  return {count, hour, first[2] or '', base, accounts, reporters, top, tostring(observed)}
end

local result = {stats(key.bucket_times, false), stats(key.everywhere_times, true)}
for i, surge in ipairs({key.bucket_surge, key.everywhere_surge}) do
  touch_surge(surge, key.open_surges, ts, i == 1 and arg.bucket or '*')
  result[#result + 1] = redis.call('HGETALL', surge)
end
return result
