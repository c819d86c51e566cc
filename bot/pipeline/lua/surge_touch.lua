-- KEYS: surge hash, open surges. ARGV: time, bucket.
touch_surge(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2])
