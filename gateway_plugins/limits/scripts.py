"""Lua scripts: rate-limit check + budget reservation in one round trip, settle in one round trip.

A budget key is a hash {spent, reserved, spent_tokens, reserved_tokens}: micro-USD and tokens (integers, no
float drift), both checked and reserved in the same script so a budget limiting either or both stays race-free.

Every reservation is also a lease: a member ``<request id>:<micro-USD>:<tokens>`` of a sorted set beside its
budget key, scored by the Redis time after which it is void (members written before token quotas,
``<request id>:<micro-USD>``, are still read). ``settle`` removes the member and releases the amounts only if it
is still there; ``admit`` first releases every lapsed lease of the budgets it checks. A settle that never arrives
(Redis unreachable at the end of the call, a crashed replica) thus frees its reservation once the lease lapses
instead of blocking the tenant until the period ends, and a settle after the lapse never releases twice. Redis's
own clock decides, so replicas' clocks do not matter.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError

# Values per budget in ADMIT's ARGV and in its reply.
ADMIT_ARGS_PER_BUDGET = 7
ADMIT_ARGS_PER_CANDIDATE = 3
ADMIT_REPLY_PER_BUDGET = 4

# Gives back to budget hash ``k`` what the lease members ``members`` (already removed from their sorted set) held:
# ``<id>:<micro-USD>:<tokens>``, or ``<id>:<micro-USD>`` as written before token quotas. Prepended to the scripts that
# release leases.
GIVE_BACK = """
local function give_back(k, members)
  local amount, tokens = 0, 0
  for _, m in ipairs(members) do
    local a, t = string.match(m, ':(%d+):(%d+)$')
    if a == nil then a = string.match(m, ':(%d+)$') end
    amount = amount + (tonumber(a) or 0)
    tokens = tokens + (tonumber(t) or 0)
  end
  if amount > 0 then redis.call('HINCRBY', k, 'reserved', 0 - amount) end
  if tokens > 0 then redis.call('HINCRBY', k, 'reserved_tokens', 0 - tokens) end
end
"""

# KEYS: [rpm_key, tpm_key, budget_key_1 .. budget_key_n, lease_key_1 .. lease_key_n, admitted_mark] (one tenant's:
# one Cluster slot)
# ARGV: [rpm_limit|0, tpm_limit|0, est_tokens, window_ttl, n_budgets, lease_member, lease_seconds,
#        m_candidates, then per candidate: est_micro, est_tokens, zero_price(0/1),
#        then per budget: limit_micro|0, limit_tokens|0, block_fraction|-1, est_micro, est_tokens, ttl, zero_price(0/1),
#        then the volume discount's basis points (0 without)]
# Volume discounts: the tier the Gateway's month reached (limits.volume, read beside the script: another slot) lowers
# every USD estimate by its basis points (est - floor(est * bp / 10000), as limits.discounted computes it) before any
# check or reservation.
# A limit of 0 is no limit of that kind. A zero-price model reserves and checks no USD, but its tokens count.
# m_candidates > 0: a cost-routed request (gateway_plugins.autoroute). Instead of the block check, each candidate
# (cheapest first) fits when spent + reserved + its worst case stays within every budget's block threshold (the limit
# when none blocks); the largest worst case of the fitting ones is reserved (any of them may serve as a fallback), and
# the per-budget estimates are ignored.
# Returns {status, detail, then per budget: spent, reserved, spent_tokens, reserved_tokens, then the discount's basis
# points, then for a cost-routed request the indexes of the fitting candidates}; status 0 = admitted (detail = first
# fitting candidate or 0),
# 1 = rpm, 2 = tpm, 3 = budget (detail = index, followed by that budget's four numbers only), 4 = no candidate fits.
# An admission is recorded under its lease member (the mark, ADMIT_MARK_SECONDS) with its reply, and the same admit
# sent again returns that reply and changes nothing: redis-py resends a command whose connection broke (the retry
# that replaces a stale pooled connection), also when the break came after Redis ran it and before its reply
# arrived, and a second reservation under one member would be released only once. Refusals change nothing but
# lapsed leases, so they are not recorded.
ADMIT = (
    GIVE_BACK
    + """
local mark = KEYS[#KEYS]
local prior = redis.call('GET', mark)
if prior then
  local reply = {}
  for x in string.gmatch(prior, '[^,]+') do reply[#reply+1] = tonumber(x) end
  return reply
end
local rpm, tpm, est_tok, wttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local member, lease = ARGV[6], tonumber(ARGV[7])
local now = tonumber(redis.call('TIME')[1])
for i = 1, n do
  local k, lk = KEYS[2 + i], KEYS[2 + n + i]
  -- Bounded per call so one admit never stalls Redis; the next admits reap the rest.
  local lapsed = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'LIMIT', 0, 256)
  if #lapsed > 0 then
    redis.call('ZREM', lk, unpack(lapsed))
    give_back(k, lapsed)
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
local m = tonumber(ARGV[8])
local pb = 8 + 3 * m
local tb = pb + 7 * n
local bp = tonumber(ARGV[tb + 1] or '0')
local function disc(x) return x - math.floor(x * bp / 10000) end
local out = {0, 0}
for i = 1, n do
  local base = pb + (i - 1) * 7
  local limit, tlimit, frac = tonumber(ARGV[base+1]), tonumber(ARGV[base+2]), tonumber(ARGV[base+3])
  local free = tonumber(ARGV[base+7])
  local k = KEYS[2 + i]
  local v = redis.call('HMGET', k, 'spent', 'reserved', 'spent_tokens', 'reserved_tokens')
  local spent, reserved = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  local spent_t, reserved_t = tonumber(v[3] or '0'), tonumber(v[4] or '0')
  if m == 0 and frac >= 0 and ((limit > 0 and free == 0 and spent + reserved >= limit * frac)
      or (tlimit > 0 and spent_t + reserved_t >= tlimit * frac)) then
    return {3, i, spent, reserved, spent_t, reserved_t}
  end
  out[#out+1] = spent
  out[#out+1] = reserved
  out[#out+1] = spent_t
  out[#out+1] = reserved_t
end
out[#out+1] = bp
local fit, fit_est, fit_est_t = {}, 0, 0
if m > 0 then
  for c = 1, m do
    local cb = 8 + (c - 1) * 3
    local est, est_t, free = disc(tonumber(ARGV[cb+1])), tonumber(ARGV[cb+2]), tonumber(ARGV[cb+3])
    local ok = true
    for i = 1, n do
      local base, o = pb + (i - 1) * 7, 2 + (i - 1) * 4
      local limit, tlimit, frac = tonumber(ARGV[base+1]), tonumber(ARGV[base+2]), tonumber(ARGV[base+3])
      if frac < 0 then frac = 1 end
      if limit > 0 and free == 0 and out[o+1] + out[o+2] + est > limit * frac then ok = false end
      if tlimit > 0 and out[o+3] + out[o+4] + est_t > tlimit * frac then ok = false end
    end
    if ok then
      fit[#fit+1] = c
      if est > fit_est then fit_est = est end
      if est_t > fit_est_t then fit_est_t = est_t end
    end
  end
  if #fit == 0 then out[1] = 4; return out end
  out[2] = fit[1]
end
if rpm > 0 then redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], wttl) end
if tpm > 0 then redis.call('INCRBY', KEYS[2], est_tok); redis.call('EXPIRE', KEYS[2], wttl) end
for i = 1, n do
  local base = pb + (i - 1) * 7
  local k, lk = KEYS[2 + i], KEYS[2 + n + i]
  local est, est_t, ttl = disc(tonumber(ARGV[base+4])), tonumber(ARGV[base+5]), tonumber(ARGV[base+6])
  if m > 0 then est, est_t = fit_est, fit_est_t end
  redis.call('HINCRBY', k, 'reserved', est)
  if est_t > 0 then redis.call('HINCRBY', k, 'reserved_tokens', est_t) end
  redis.call('EXPIRE', k, ttl)
  if est > 0 or est_t > 0 then
    redis.call('ZADD', lk, now + lease, member .. ':' .. est .. ':' .. est_t)
    redis.call('EXPIRE', lk, ttl)
  end
end
for _, c in ipairs(fit) do out[#out+1] = c end
local saved = {}
for i, x in ipairs(out) do saved[i] = string.format('%.0f', x) end
redis.call('SET', mark, table.concat(saved, ','), 'EX', 10)
return out
"""
)

# KEYS: [tpm_key, budget_key_1 .. budget_key_n, lease_key_1 .. lease_key_n, settled_mark] (token_delta 0: tpm_key
# untouched; it is passed anyway, all keys of one tenant in one Cluster hash slot)
# ARGV: [token_delta, n, lease_member, served_model|'', list_micro|'' (with tiers only), then per budget:
#        reserved_micro, actual_micro, reserved_tokens, actual_tokens]
# The mark makes a settle idempotent, so one whose reply was lost (a timeout, a failover) can be sent again: the
# second run finds the mark and changes nothing (returns 0). It outlives the settle's retries (SETTLE_MARK_SECONDS).
# With volume-discount tiers, ``actual_micro`` is the discounted spend and ``list_micro`` the same at list prices,
# added to each budget's ``spent_list`` (the Gateway's month volume is another slot: limits.volume counts it).
# The spend is also counted per served public model (field ``m:<model>``, micro-USD) for ``kubegate usage``: which
# models a cost-routed name (auto) chose. Bounded by the policy's models.
SETTLE = """
if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', 90) then return 0 end
local delta, n, member, model, list = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
if KEYS[1] ~= '' and delta ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], delta) end
for i = 1, n do
  local k, lk = KEYS[1 + i], KEYS[1 + n + i]
  local base = 5 + (i - 1) * 4
  local est, actual = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local est_t, actual_t = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  -- Release only a lease still held: a lapsed one was already released by an admit.
  if (est > 0 or est_t > 0) and redis.call('ZREM', lk, member .. ':' .. est .. ':' .. est_t) == 1 then
    if est > 0 then redis.call('HINCRBY', k, 'reserved', 0 - est) end
    if est_t > 0 then redis.call('HINCRBY', k, 'reserved_tokens', 0 - est_t) end
  end
  redis.call('HINCRBY', k, 'spent', actual)
  if actual_t > 0 then redis.call('HINCRBY', k, 'spent_tokens', actual_t) end
  if model ~= '' and (actual > 0 or actual_t > 0) then redis.call('HINCRBY', k, 'm:' .. model, actual) end
  if list ~= nil and list > 0 then redis.call('HINCRBY', k, 'spent_list', list) end
end
return 1
"""

# KEYS: [budget_key_1 .. budget_key_n, lease_key_1 .. lease_key_n] (one tenant's slot)
# ARGV: [n, lease_member]
# Undoes an admit whose reply never came (the connection dropped or timed out after the script may have run, e.g. a
# primary killed mid-command whose replica got the write): the request was refused or served without a reservation,
# so nothing would ever settle it and its amounts would stay reserved until the lease lapsed (minutes). Every lease of
# that member is released; an admit that never ran leaves nothing to find, and a release sent twice finds nothing the
# second time (ZREM decides), so it can be sent until Redis answers (limits.releases). The member is random hex: no glob
# characters.
# Returns the number of leases released.
RELEASE = (
    GIVE_BACK
    + """
local n, pattern = tonumber(ARGV[1]), ARGV[2] .. ':*'
local released = 0
for i = 1, n do
  local k, lk = KEYS[i], KEYS[n + i]
  local cursor = '0'
  repeat
    local page = redis.call('ZSCAN', lk, cursor, 'MATCH', pattern, 'COUNT', 512)
    cursor = page[1]
    local removed = {}
    for j = 1, #page[2], 2 do
      if redis.call('ZREM', lk, page[2][j]) == 1 then removed[#removed+1] = page[2][j] end
    end
    give_back(k, removed)
    released = released + #removed
  until cursor == '0'
end
return released
"""
)


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


SETTLE_MARK_SECONDS = 90  # in SETTLE's source; more than limits.SETTLE_RETRY_SECONDS
ADMIT_MARK_SECONDS = 10  # in ADMIT's source; far more than redis-py's resends take (runtime.REDIS_RETRIES)
ADMIT_SCRIPT = Script(ADMIT)
SETTLE_SCRIPT = Script(SETTLE)
RELEASE_SCRIPT = Script(RELEASE)
