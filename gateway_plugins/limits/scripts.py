"""Lua scripts: rate-limit check + budget reservation in one round trip, settle in one round trip."""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError

# KEYS: [rpm_key, tpm_key, budget_key_1, ...]
# ARGV: [rpm_limit|0, tpm_limit|0, est_tokens, window_ttl, n_budgets,
#        then per budget: limit_usd, block_fraction|-1, est_usd, ttl, zero_price(0/1)]
# A budget key is a hash {spent, reserved}; amounts are micro-dollars (integers) to avoid float drift.
# Returns {status, detail, spent_1, reserved_1, ...}; status 0 = admitted, 1 = rpm, 2 = tpm, 3 = budget (detail = index).
ADMIT = """
local rpm, tpm, est_tok, wttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
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
  local base = 5 + (i - 1) * 5
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
  local base = 5 + (i - 1) * 5
  local k = KEYS[2 + i]
  redis.call('HINCRBY', k, 'reserved', tonumber(ARGV[base+3]))
  redis.call('EXPIRE', k, tonumber(ARGV[base+4]))
end
return out
"""

# KEYS: [tpm_key|'', budget_key_1, ...]; ARGV: [token_delta, n, then per budget: reserved_micro, actual_micro]
SETTLE = """
local delta, n = tonumber(ARGV[1]), tonumber(ARGV[2])
if KEYS[1] ~= '' and delta ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], delta) end
for i = 1, n do
  local k = KEYS[1 + i]
  -- 0 - x, not -x: Lua's -0 reaches Redis as "-0", which HINCRBY refuses (zero-price reservations).
  redis.call('HINCRBY', k, 'reserved', 0 - tonumber(ARGV[2 + (i - 1) * 2 + 1]))
  redis.call('HINCRBY', k, 'spent', tonumber(ARGV[2 + (i - 1) * 2 + 2]))
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
