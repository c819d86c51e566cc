-- KEYS[1]: the per-category counts (hash); ARGV[1]: the category. Returns its new count.
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
