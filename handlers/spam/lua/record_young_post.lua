-- One young account's post. Returns {flagged posts, flagged accounts, first flagged time, signs, surge}.
-- KEYS: feature index, feature first, this account's posts, flagged, flagged posts, samples, surge,
--       open surges, activity, posters.
-- ARGV: 1 status id, 2 account id, 3 "id|username", 4 time, 5 window, 6 duplicate accounts,
--       7 mass mention (1/0), 8 fast floor, 9 fast ratio, 10 hour number, 11 ttl, 12 sample json,
--       13 feature prefix, 14 activity prefix, 15 posters prefix, 16 new status (1/0), 17 accounts per
--       fingerprint cap, 18 fingerprint cap, 19 flagged cap, 20 samples kept, 21 prune batch, 22 activity
--       hours, 23 posts per account cap, 24 flagged account prefix, 25.. fingerprints
-- The fast sign is decided here, not in Python: it compares the count this call just updated.
local status, account, member, ts = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local window, ttl = tonumber(ARGV[5]), tonumber(ARGV[11])
local from = ts - window
note_activity(KEYS[9], KEYS[10], account, ttl, ARGV[16])
local signs = {}
local flag_members = {}

-- an account joins the flagged set; its hash keeps its signs (and, from account.updated, its state)
local function flag(who, at, new_signs)
  redis.call('ZADD', KEYS[4], 'GT', at, who)
  local key = ARGV[24] .. string.sub(who, 1, string.find(who, '|', 1, true) - 1)
  local known = redis.call('HGET', key, 'signs') or ''
  for _, sign in ipairs(new_signs) do
    if not string.find(',' .. known .. ',', ',' .. sign .. ',', 1, true) then
      known = known == '' and sign or known .. ',' .. sign
    end
  end
  redis.call('HSET', key, 'member', who, 'signs', known)
  redis.call('EXPIRE', key, ttl)
end

-- fast: this account's posts in the last hour against everyone's normal speed
redis.call('ZADD', KEYS[3], ts, status)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (ts - 3600))
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[23]) - 1)
redis.call('EXPIRE', KEYS[3], 7200)
local in_hour = redis.call('ZCOUNT', KEYS[3], '(' .. (ts - 3600), ts)
if in_hour >= tonumber(ARGV[8]) then
  local ratios, hours = 0, 0
  local now_hour = tonumber(ARGV[10])
  for h = now_hour - tonumber(ARGV[22]), now_hour - 1 do
    local posts = tonumber(redis.call('GET', ARGV[14] .. h) or '0')
    if posts > 0 then
      local posters = redis.call('PFCOUNT', ARGV[15] .. h)
      if posters > 0 then ratios = ratios + posts / posters; hours = hours + 1 end
    end
  end
  local normal = hours > 0 and ratios / hours or 0
  if in_hour >= math.max(tonumber(ARGV[8]), tonumber(ARGV[9]) * normal) then signs[#signs + 1] = 'fast' end
end

if ARGV[7] == '1' then signs[#signs + 1] = 'mentions' end

-- duplicate: a fingerprint's first young poster is one hash field; a set exists once a second one posts it
local duplicate = false
for i = 25, #ARGV do
  local feature = ARGV[i]
  local set = ARGV[13] .. feature
  redis.call('ZADD', KEYS[1], 'GT', ts, feature)
  local first = redis.call('HGET', KEYS[2], feature)
  if not first then
    redis.call('HSET', KEYS[2], feature, ts .. '|' .. member)
  else
    local bar = string.find(first, '|', 1, true)
    local first_ts, first_member = tonumber(string.sub(first, 1, bar - 1)), string.sub(first, bar + 1)
    if first_member ~= member or redis.call('EXISTS', set) == 1 then
      redis.call('ZADD', set, 'NX', first_ts, first_member)
      redis.call('ZADD', set, 'GT', ts, member)
      redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. from)
      redis.call('ZREMRANGEBYRANK', set, 0, -tonumber(ARGV[17]) - 1)
      redis.call('EXPIRE', set, math.ceil(window))
      if redis.call('ZCARD', set) >= tonumber(ARGV[6]) then
        duplicate = true
        for _, other in ipairs(redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')) do
          flag_members[#flag_members + 1] = other
        end
      end
    end
  end
end
if duplicate then signs[#signs + 1] = 'duplicate' end

-- forget old fingerprints, and the oldest beyond the cap
local forget = oldest_to_forget(KEYS[1], from, tonumber(ARGV[18]), tonumber(ARGV[21]))
for _, old in ipairs(forget) do
  redis.call('ZREM', KEYS[1], old)
  redis.call('HDEL', KEYS[2], old)
  redis.call('DEL', ARGV[13] .. old)
end

if #signs > 0 then
  flag(member, ts, signs)
  for i = 1, #flag_members, 2 do flag(flag_members[i], tonumber(flag_members[i + 1]), {'duplicate'}) end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (ts - ttl))
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -tonumber(ARGV[19]) - 1)
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('ZADD', KEYS[5], ts, status)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. (ts - ttl))
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -tonumber(ARGV[19]) - 1)
  redis.call('EXPIRE', KEYS[5], ttl)
  redis.call('LPUSH', KEYS[6], ARGV[12])
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[20]) - 1)
  redis.call('EXPIRE', KEYS[6], ttl)
  touch_surge(KEYS[7], KEYS[8], ts, 'local')
end
local posts = redis.call('ZCOUNT', KEYS[5], '(' .. from, ts)
local accounts = redis.call('ZCOUNT', KEYS[4], '(' .. from, '+inf')
local first_flagged = redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. from, ts, 'WITHSCORES', 'LIMIT', 0, 1)
return {posts, accounts, first_flagged[2] or '', table.concat(signs, ','), redis.call('HGETALL', KEYS[7])}
