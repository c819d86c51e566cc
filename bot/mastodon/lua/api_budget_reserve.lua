-- Reserve one paced call within Tocsin's share of Mastodon's API limit, or say how long to wait.
-- KEYS[1]: the budget hash (limit, remaining, reset as seconds since the epoch), as Mastodon last said.
-- ARGV[1]: now (epoch seconds); ARGV[2]: the share of the limit Tocsin may spend (0 < share <= 1).
-- Returns "0" (go ahead; the call is counted) or the seconds until the window resets.
local state = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset')
local limit, remaining, reset = tonumber(state[1]), tonumber(state[2]), tonumber(state[3])
local now, share = tonumber(ARGV[1]), tonumber(ARGV[2])
if not limit or not remaining or not reset or reset <= now then
  return '0' -- nothing known of this window yet: the answer's headers will say
end
if limit - remaining >= math.floor(limit * share) then
  return tostring(reset - now)
end
redis.call('HSET', KEYS[1], 'remaining', remaining - 1)
return '0'
