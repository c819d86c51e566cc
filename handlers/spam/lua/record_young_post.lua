-- One young account's post. Returns {flagged posts, flagged accounts, first flagged time, signs, surge}.
-- The fast sign is decided here, not in Python: it compares the count this call just updated.
local key, arg = named_arguments(
  {'feature_index', 'feature_first', 'posts', 'flagged', 'flagged_posts', 'samples', 'surge', 'open_surges',
   'activity', 'posters'},
  {'status', 'account', 'member', 'time', 'window', 'ttl', 'hour', 'new_status', 'sample', 'fingerprints',
   'mass_mention', 'duplicate_accounts', 'fast_floor', 'fast_ratio', 'activity_hours', 'feature_prefix',
   'activity_prefix', 'posters_prefix', 'flagged_account_prefix', 'feature_accounts_cap', 'feature_cap',
   'flagged_cap', 'samples_kept', 'prune_batch', 'posts_cap'})
local status, account, member, ts = arg.status, arg.account, arg.member, tonumber(arg.time)
local window, ttl = arg.window, arg.ttl
local from = ts - window
note_activity(key.activity, key.posters, account, ttl, arg.new_status)
local signs = {}
local flag_members = {}

-- an account joins the flagged set; its hash keeps its signs (and, from account.updated, its state)
local function flag(who, at, new_signs)
  redis.call('ZADD', key.flagged, 'GT', at, who)
  local hash = arg.flagged_account_prefix .. string.sub(who, 1, string.find(who, '|', 1, true) - 1)
  local known = redis.call('HGET', hash, 'signs') or ''
  for _, sign in ipairs(new_signs) do
    if not string.find(',' .. known .. ',', ',' .. sign .. ',', 1, true) then
      known = known == '' and sign or known .. ',' .. sign
    end
  end
  redis.call('HSET', hash, 'member', who, 'signs', known)
  redis.call('EXPIRE', hash, ttl)
end

-- fast: this account's posts in the last hour against everyone's normal speed
redis.call('ZADD', key.posts, ts, status)
redis.call('ZREMRANGEBYSCORE', key.posts, '-inf', '(' .. (ts - 3600))
redis.call('ZREMRANGEBYRANK', key.posts, 0, -arg.posts_cap - 1)
redis.call('EXPIRE', key.posts, 7200)
local in_hour = redis.call('ZCOUNT', key.posts, '(' .. (ts - 3600), ts)
if in_hour >= arg.fast_floor then
  local ratios, hours = 0, 0
  for h = arg.hour - arg.activity_hours, arg.hour - 1 do
    local posts = tonumber(redis.call('GET', arg.activity_prefix .. h) or '0')
    if posts > 0 then
      local posters = redis.call('PFCOUNT', arg.posters_prefix .. h)
      if posters > 0 then ratios = ratios + posts / posters; hours = hours + 1 end
    end
  end
  local normal = hours > 0 and ratios / hours or 0
  if in_hour >= math.max(arg.fast_floor, arg.fast_ratio * normal) then signs[#signs + 1] = 'fast' end
end

if arg.mass_mention then signs[#signs + 1] = 'mentions' end

-- duplicate: a fingerprint's first young poster is one hash field; a set exists once a second one posts it
local duplicate = false
for _, feature in ipairs(arg.fingerprints) do
  local set = arg.feature_prefix .. feature
  redis.call('ZADD', key.feature_index, 'GT', ts, feature)
  local first = redis.call('HGET', key.feature_first, feature)
  if not first then
    redis.call('HSET', key.feature_first, feature, ts .. '|' .. member)
  else
    local bar = string.find(first, '|', 1, true)
    local first_ts, first_member = tonumber(string.sub(first, 1, bar - 1)), string.sub(first, bar + 1)
    if first_member ~= member or redis.call('EXISTS', set) == 1 then
      redis.call('ZADD', set, 'NX', first_ts, first_member)
      redis.call('ZADD', set, 'GT', ts, member)
      redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. from)
      redis.call('ZREMRANGEBYRANK', set, 0, -arg.feature_accounts_cap - 1)
      redis.call('EXPIRE', set, math.ceil(window))
      if redis.call('ZCARD', set) >= arg.duplicate_accounts then
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
local forget = oldest_to_forget(key.feature_index, from, arg.feature_cap, arg.prune_batch)
for _, old in ipairs(forget) do
  redis.call('ZREM', key.feature_index, old)
  redis.call('HDEL', key.feature_first, old)
  redis.call('DEL', arg.feature_prefix .. old)
end

if #signs > 0 then
  flag(member, ts, signs)
  for i = 1, #flag_members, 2 do flag(flag_members[i], tonumber(flag_members[i + 1]), {'duplicate'}) end
  redis.call('ZREMRANGEBYSCORE', key.flagged, '-inf', '(' .. (ts - ttl))
  redis.call('ZREMRANGEBYRANK', key.flagged, 0, -arg.flagged_cap - 1)
  redis.call('EXPIRE', key.flagged, ttl)
  redis.call('ZADD', key.flagged_posts, ts, status)
  redis.call('ZREMRANGEBYSCORE', key.flagged_posts, '-inf', '(' .. (ts - ttl))
  redis.call('ZREMRANGEBYRANK', key.flagged_posts, 0, -arg.flagged_cap - 1)
  redis.call('EXPIRE', key.flagged_posts, ttl)
  redis.call('LPUSH', key.samples, arg.sample)
  redis.call('LTRIM', key.samples, 0, arg.samples_kept - 1)
  redis.call('EXPIRE', key.samples, ttl)
  touch_surge(key.surge, key.open_surges, ts, 'local')
end
local posts = redis.call('ZCOUNT', key.flagged_posts, '(' .. from, ts)
local accounts = redis.call('ZCOUNT', key.flagged, '(' .. from, '+inf')
local first_flagged = redis.call('ZRANGEBYSCORE', key.flagged_posts, '(' .. from, ts, 'WITHSCORES', 'LIMIT', 0, 1)
return {posts, accounts, first_flagged[2] or '', table.concat(signs, ','), redis.call('HGETALL', key.surge)}
