"""Storing an entry within the Gateway's cap, in one Lua call (off the request path: after the answer).

The size counter only ever holds unexpired entries: each store first takes the entries whose TTL has passed out of
the index (their size is in the member name) and off the counter. An entry Redis evicted early (maxmemory) is still
counted until its TTL ends, so the counter errs on the side of storing less.
"""

from __future__ import annotations

from enum import IntEnum

from gateway_plugins.limits.scripts import Script


class StoreResult(IntEnum):
    FULL = 0
    STORED = 1
    EXISTS = 2


# KEYS: [entry, index, bytes]; ARGV: [value, ttl_seconds, size, cap_bytes]
STORE = """
local now = tonumber(redis.call('TIME')[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  local freed = 0
  for _, m in ipairs(expired) do freed = freed + tonumber(string.match(m, '^(%d+):')) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('DECRBY', KEYS[3], freed) < 0 then redis.call('SET', KEYS[3], 0) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
local ttl, size = tonumber(ARGV[2]), tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
if used + size > tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
if redis.call('ZADD', KEYS[2], now + ttl, size .. ':' .. KEYS[1]) == 1 then redis.call('INCRBY', KEYS[3], size) end
return 1
"""

STORE_SCRIPT = Script(STORE)
