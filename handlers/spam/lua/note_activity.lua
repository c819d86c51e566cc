-- An established account's post: it only counts towards normal posting speed.
-- KEYS: activity, posters. ARGV: account, ttl, new status (1/0).
note_activity(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3] == '1')
