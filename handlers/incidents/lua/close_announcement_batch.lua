-- Close the open batch if it is this one (a change held from now on opens the next batch).
-- KEYS: open batch. ARGV: batch id.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
