-- KEYS: open batch, pending, then one seen marker per change. ARGV: new batch id, due, hold seconds, batch
-- prefix, keep seconds, then one held JSON per change. All the changes join one batch (one moderator action,
-- one announcement); a change already held (a replayed event) is skipped.
-- Returns {batch id, 1 if this call opened it}; {'', 0} when every change was held already.
local fresh = {}
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[5]) then table.insert(fresh, ARGV[i + 3]) end
end
if #fresh == 0 then return {'', 0} end
local batch = redis.call('GET', KEYS[1])
local opened = 0
if not batch then
  batch = ARGV[1]
  redis.call('SET', KEYS[1], batch, 'EX', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], batch)
  opened = 1
end
redis.call('RPUSH', ARGV[4] .. batch, unpack(fresh))
redis.call('EXPIRE', ARGV[4] .. batch, ARGV[5])
return {batch, opened}
