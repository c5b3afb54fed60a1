-- KEYS[1] run, KEYS[2] data, KEYS[3] moving (tagged {fast-<pool>}). ARGV: id.
-- The run ended (or its job is on BullMQ now): forget it.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
