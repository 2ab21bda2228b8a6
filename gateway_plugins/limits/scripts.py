"""Lua scripts: rate-limit check + budget reservation in one round trip, settle in one round trip.

Every reservation is also a lease: a member ``<request id>:<micro-USD>`` of a sorted set beside its budget
key, scored by the Redis time after which it is void. ``settle`` removes the member and releases the amount
only if it is still there; ``admit`` first releases every lapsed lease of the budgets it checks. A settle
that never arrives (Redis unreachable at the end of the call, a crashed replica) thus frees its reservation
once the lease lapses instead of blocking the tenant until the period ends, and a settle after the lapse
never releases twice. Redis's own clock decides, so replicas' clocks do not matter.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError

# KEYS: [rpm_key, tpm_key, budget_key_1 .. budget_key_n, lease_key_1 .. lease_key_n]
# ARGV: [rpm_limit|0, tpm_limit|0, est_tokens, window_ttl, n_budgets, lease_member, lease_seconds,
#        then per budget: limit_usd, block_fraction|-1, est_usd, ttl, zero_price(0/1)]
# A budget key is a hash {spent, reserved}; amounts are micro-dollars (integers) to avoid float drift.
# Returns {status, detail, spent_1, reserved_1, ...}; status 0 = admitted, 1 = rpm, 2 = tpm, 3 = budget (detail = index).
ADMIT = """
local rpm, tpm, est_tok, wttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local member, lease = ARGV[6], tonumber(ARGV[7])
local now = tonumber(redis.call('TIME')[1])
for i = 1, n do
  local k, lk = KEYS[2 + i], KEYS[2 + n + i]
  -- Bounded per call so one admit never stalls Redis; the next admits reap the rest.
  local lapsed = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'LIMIT', 0, 256)
  if #lapsed > 0 then
    local amount = 0
    for _, m in ipairs(lapsed) do amount = amount + (tonumber(string.match(m, ':(%d+)$')) or 0) end
    redis.call('ZREM', lk, unpack(lapsed))
    if amount > 0 then redis.call('HINCRBY', k, 'reserved', 0 - amount) end
  end
end
if rpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  if used + 1 > rpm then return {1, 0} end
end
if tpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used > 0 and used + est_tok > tpm then return {2, 0} end
end
local out = {0, 0}
for i = 1, n do
  local base = 7 + (i - 1) * 5
  local limit, frac, est, ttl, free = tonumber(ARGV[base+1]), tonumber(ARGV[base+2]), tonumber(ARGV[base+3]), tonumber(ARGV[base+4]), tonumber(ARGV[base+5])
  local k = KEYS[2 + i]
  local v = redis.call('HMGET', k, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if frac >= 0 and free == 0 and spent + reserved >= limit * frac then
    return {3, i, spent, reserved}
  end
  out[#out+1] = spent
  out[#out+1] = reserved
end
if rpm > 0 then redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], wttl) end
if tpm > 0 then redis.call('INCRBY', KEYS[2], est_tok); redis.call('EXPIRE', KEYS[2], wttl) end
for i = 1, n do
  local base = 7 + (i - 1) * 5
  local k, lk = KEYS[2 + i], KEYS[2 + n + i]
  local est, ttl = tonumber(ARGV[base+3]), tonumber(ARGV[base+4])
  redis.call('HINCRBY', k, 'reserved', est)
  redis.call('EXPIRE', k, ttl)
  if est > 0 then
    redis.call('ZADD', lk, now + lease, member .. ':' .. est)
    redis.call('EXPIRE', lk, ttl)
  end
end
return out
"""

# KEYS: [tpm_key|'', budget_key_1 .. budget_key_n, lease_key_1 .. lease_key_n]
# ARGV: [token_delta, n, lease_member, then per budget: reserved_micro, actual_micro]
SETTLE = """
local delta, n, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if KEYS[1] ~= '' and delta ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], delta) end
for i = 1, n do
  local k, lk = KEYS[1 + i], KEYS[1 + n + i]
  local est, actual = tonumber(ARGV[3 + (i - 1) * 2 + 1]), tonumber(ARGV[3 + (i - 1) * 2 + 2])
  -- Release only a lease still held: a lapsed one was already released by an admit.
  if est > 0 and redis.call('ZREM', lk, member .. ':' .. est) == 1 then
    redis.call('HINCRBY', k, 'reserved', 0 - est)
  end
  redis.call('HINCRBY', k, 'spent', actual)
end
return 1
"""


class Script:
    """EVALSHA with a NOSCRIPT fallback, so a restarted (empty) Redis reloads the script by itself."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha: str | None = None

    async def __call__(self, redis: Any, keys: list[str], args: list[Any]) -> Any:
        if self.sha is not None:
            try:
                return await redis.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                self.sha = None
        self.sha = await redis.script_load(self.source)
        return await redis.evalsha(self.sha, len(keys), *keys, *args)


ADMIT_SCRIPT = Script(ADMIT)
SETTLE_SCRIPT = Script(SETTLE)
