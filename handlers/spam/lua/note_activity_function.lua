-- Library: everyone's posting speed, per hour: posts and (HyperLogLog) posters.
local function note_activity(activity, posters, account, ttl, new)
  if new == '1' then
    redis.call('INCR', activity)
    redis.call('EXPIRE', activity, ttl)
  end
  redis.call('PFADD', posters, account)
  redis.call('EXPIRE', posters, ttl)
end
