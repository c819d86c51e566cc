-- Library: everyone's posting speed, per hour: posts and (HyperLogLog) posters. `new`: a status created
-- (a boolean), not an edit, which counts its poster only.
local function note_activity(activity, posters, account, ttl, new)
  if new then
    redis.call('INCR', activity)
    redis.call('EXPIRE', activity, ttl)
  end
  redis.call('PFADD', posters, account)
  redis.call('EXPIRE', posters, ttl)
end
