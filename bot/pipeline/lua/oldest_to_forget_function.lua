-- Library: the members of a time-scored index to forget now: those scored before `cutoff`, then the
-- oldest beyond `cap`, at most `batch` of each (constant work per call, and faster than any flood).
local function oldest_to_forget(index, cutoff, cap, batch)
  local forget = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. cutoff, 'LIMIT', 0, batch)
  local over = redis.call('ZCARD', index) - #forget - cap
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', index, #forget, #forget + math.min(over, batch) - 1)) do
      forget[#forget + 1] = old
    end
  end
  return forget
end
