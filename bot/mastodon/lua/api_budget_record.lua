-- Record what Mastodon's X-RateLimit-* headers said after a call.
-- KEYS[1]: the budget hash. ARGV: limit, remaining, reset (epoch seconds), now.
-- Answers arrive out of order and reservations are counted ahead of them, so within one window the
-- lower remaining count wins; an answer from an older window is ignored.
local limit, remaining, reset, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'remaining', 'reset')
local known_remaining, known_reset = tonumber(state[1]), tonumber(state[2])
if known_reset and known_reset > now then
  if reset < known_reset - 2 then
    return 0
  end
  if math.abs(reset - known_reset) <= 2 and known_remaining and known_remaining < remaining then
    remaining = known_remaining
  end
end
redis.call('HSET', KEYS[1], 'limit', limit, 'remaining', remaining, 'reset', reset)
redis.call('EXPIRE', KEYS[1], math.max(math.ceil(reset - now) + 60, 60))
return 1
