"""Budgets, downgrades and rate limits (one Redis round trip before the call, one after).

``admit`` runs the ADMIT Lua script: rpm/tpm check + budget check + reservation of the estimate,
atomically. ``settle`` replaces the reservation by the real cost on the SAME period key (stored in
``ctx.reservation``), so a period roll-over mid-request neither loses nor double counts.
Redis down: tenants with a rate limit or a hard (block) budget are refused with 503
``limits_unavailable`` unless ``Tenant.fail_open`` / ``Budget.fail_open``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway_plugins import autoroute, metrics, replicated
from gateway_plugins.limits import releases, volume
from gateway_plugins.limits.scripts import ADMIT_REPLY_PER_BUDGET, ADMIT_SCRIPT, SETTLE_SCRIPT
from gateway_plugins.policy.budget_state import MICRO, STATE_RANK, state_for, used_ratio
from gateway_plugins.policy.periods import lease_key, period_bounds, period_key
from gateway_plugins.policy.redis_client import STORE_ERRORS
from gateway_plugins.policy.schema import DEFAULT_MAX_CALL_SECONDS, DEFAULT_MAX_OUTPUT_TOKENS, Budget, BudgetAction

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.runtime import Runtime

__all__ = ["admit", "estimate_tokens", "reserved_usd", "settle"]

log = logging.getLogger("kubegate.limits")

# Settling follows the call's end by one round trip; this covers that and a slow event loop.
LEASE_GRACE_SECONDS = 60


def openai_error(*args: Any, **kwargs: Any) -> Exception:
    # Imported on the refusal path only: gateway_plugins.errors pulls in LiteLLM, which the operator
    # (it reads budget state through this package) should not pay 4 s of start-up and 140 MiB for.
    from gateway_plugins.errors import openai_error as build

    return build(*args, **kwargs)


@dataclass(slots=True)
class Reservation:
    # Always the tenant's tpm key: it names the tenant's hash slot, so SETTLE's keys share one slot in a Cluster
    # (an empty key would hash elsewhere); ``counts_tokens`` says whether its count is corrected.
    tpm_key: str
    est_tokens: int
    budget_keys: list[str]
    est_micro: list[int]
    lease_keys: list[str]
    lease_member: str
    # Worst-case input + output tokens reserved on every budget (estimate_tokens).
    budget_tokens: int = 0
    counts_tokens: bool = False
    settled_key: str = ""
    settled: bool = False
    # Volume discounts (Policy.volume_discounts): the month's volume key ('' without tiers) and the discount applied.
    volume_key: str = ""
    discount_bp: int = 0
    # The reservation at list prices (before the discount): what an unreported answer is charged, discounted at settle.
    list_est_micro: int = 0


def estimate_tokens(ctx: RequestContext, policy: Any, model: str | None = None) -> tuple[int, int]:
    """Worst-case (input, output) tokens of an accepted request, for the reservation.

    Input: the body's size in bytes. Byte-level BPE tokenizers never produce more tokens than bytes, and
    every billed input (messages, tools and their schemas, list prompts, embedding inputs) is inside the
    body, so this bounds every shape the contract accepts without parsing any of them again.
    Output: ``max_tokens`` (validated >= 1 and within the model's maximum) or else the model's maximum,
    times the number of choices (``n``/``best_of``); zero for endpoints that produce no output.
    """
    contract = ctx.contract
    if contract is None:  # not through the front door: nothing is admitted without one
        raise RuntimeError("request has no contract facts")
    if not contract.endpoint.produces_output:
        return contract.body_bytes, 0
    meta = policy.models.get(model or ctx.requested_model)
    ceiling = meta.max_output_tokens if meta is not None else DEFAULT_MAX_OUTPUT_TOKENS
    per_choice = min(contract.max_tokens or ceiling, ceiling)
    return contract.body_bytes, per_choice * contract.choices


CHARS_PER_TOKEN = 4
CACHE_WRITE_FACTOR = 2
DEFAULT_TPM_OUTPUT_TOKENS = 1024


def typical_tokens(data: dict, worst_output: int, ctx: RequestContext) -> int:
    """A typical-size token estimate for the tokens-per-minute counter (corrected to real tokens at settle).

    Unlike the budget reservation this is not a worst case: a tpm limit counts what tenants typically use,
    and counting bytes would make every tpm limit several times stricter than configured. Text of every
    billed input shape counts (messages, list prompts, embedding inputs).
    """
    chars = 0
    for msg in data.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    for key in ("prompt", "input"):
        value = data.get(key)
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, list):
            chars += sum(len(v) for v in value if isinstance(v, str))
    contract = ctx.contract
    produces = contract is None or contract.endpoint.produces_output
    asked = contract.max_tokens if contract is not None else None
    output = (asked * contract.choices if asked else min(worst_output, DEFAULT_TPM_OUTPUT_TOKENS)) if produces else 0
    return math.ceil(chars / CHARS_PER_TOKEN) + 1 + output


def discounted(micro: int, basis_points: int) -> int:
    """``micro`` lowered by ``basis_points`` (1/100 percent), rounded in the tenant's disfavour by at most one
    micro-USD: the same integer arithmetic as the admit script's ``disc``."""
    return micro - (micro * basis_points) // 10000


def reserved_usd(ctx: RequestContext) -> float:
    """What the request reserved (its worst case), in USD; at list prices under volume discounts (settle applies the
    discount, so the charge is then exactly the reservation)."""
    res = ctx.reservation
    if isinstance(res, Reservation) and res.volume_key:
        return res.list_est_micro / MICRO
    if isinstance(res, Reservation) and res.est_micro:
        return res.est_micro[0] / MICRO
    return 0.0


def _estimate_usd(policy: Any, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    deps = [d for d in policy.deployments.values() if d.model == model]
    if not deps:
        return 0.0
    inp = max(float(d.input_cost_per_token) for d in deps)
    out = max(float(d.output_cost_per_token) for d in deps)
    return prompt_tokens * inp + completion_tokens * out


def lease_seconds(policy: Any, model: str, *more: str) -> int:
    """How long a reservation holds before the next admit may release it: the longest the call can take,
    the model's own attempts and then each fallback's, so a slow call that still settles keeps its lease
    (``more``: a cost-routed request's other candidates, its fallbacks)."""
    total, seen, todo = 0, set(), [model, *more]
    while todo:
        name = todo.pop(0)
        meta = policy.models.get(name)
        if name in seen or meta is None:
            continue
        seen.add(name)
        total += meta.max_call_seconds
        todo.extend(meta.fallbacks)
    return (total or DEFAULT_MAX_CALL_SECONDS) + LEASE_GRACE_SECONDS


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ratio(budget: Budget, used_micro: int, used_tokens: int) -> float:
    return used_ratio(budget, used_micro / MICRO, used_tokens)


def budget_headers(
    budgets: list[Budget],
    bounds: list[tuple[datetime, datetime]],
    used_micro: list[int],
    states: list[str],
    used_tokens: list[int] | None = None,
) -> dict[str, str]:
    """The budget headers of a request that reached the budget check: the worst state of the tenant's budgets,
    when the one nearest its limit resets, and what is left, before this request's reservation: in USD of the
    nearest budget with a USD limit, in tokens of the nearest with a token limit."""
    tokens = used_tokens if used_tokens is not None else [0] * len(budgets)
    ratios = [_ratio(b, used_micro[i], tokens[i]) for i, b in enumerate(budgets)]
    near = max(range(len(budgets)), key=ratios.__getitem__)
    out = {"x-kubegate-budget-state": max(states, key=STATE_RANK.__getitem__)}
    usd = [i for i, b in enumerate(budgets) if b.limit_usd is not None]
    if usd:
        i = max(usd, key=lambda j: used_micro[j] / float(budgets[j].limit_usd))
        out["x-kubegate-budget-remaining-usd"] = f"{max(0.0, float(budgets[i].limit_usd) - used_micro[i] / MICRO):.6f}"
    tok = [i for i, b in enumerate(budgets) if b.limit_tokens is not None]
    if tok:
        i = max(tok, key=lambda j: tokens[j] / budgets[j].limit_tokens)
        out["x-kubegate-budget-remaining-tokens"] = str(max(0, budgets[i].limit_tokens - tokens[i]))
    out["x-kubegate-budget-reset"] = _utc(bounds[near][1])
    return out


def describe_limits(budget: Budget) -> str:
    """``100 USD``, ``5000000 tokens`` or ``100 USD and 5000000 tokens``."""
    parts = [f"{budget.limit_usd} USD"] if budget.limit_usd is not None else []
    parts += [f"{budget.limit_tokens} tokens"] if budget.limit_tokens is not None else []
    return " and ".join(parts)


def _block_fraction(budget: Budget) -> float:
    for t in budget.thresholds:
        if t.action is BudgetAction.BLOCK:
            return t.percent / 100.0
    return -1.0


def downgrade_chain(budget: Budget, model: str) -> str:
    seen = {model}
    while model in budget.downgrade:
        model = budget.downgrade[model]
        if model in seen:  # validation refuses cycles; never loop on a bad map anyway
            break
        seen.add(model)
    return model


def _observe_use(
    policy: Any, tenant_id: str, used_micro: list[int], budgets: list[Budget], used_tokens: list[int]
) -> None:
    """Set the tenant's budget-use gauge from numbers the admit script already returned (no extra
    round trip). One label per tenant: with several budgets the highest ratio is the one nearest a block."""
    ratios = [_ratio(b, used_micro[i], used_tokens[i]) for i, b in enumerate(budgets)]
    metrics.BUDGET_USED.labels(metrics.bounded_tenant(policy, tenant_id)).set(max(ratios))
    for ratio, b in zip(ratios, budgets, strict=True):
        metrics.record_budget_thresholds(policy, tenant_id, b, ratio)


def _replica_acks(rt: Runtime) -> int:
    return getattr(getattr(rt, "settings", None), "redis_replica_acks", 0)


def _fail(ctx: RequestContext, budgets: list[Budget], hard: bool) -> None:
    tenant = ctx.tenant
    fail_open = tenant.fail_open if not budgets else tenant.fail_open or all(b.fail_open for b in budgets)
    if hard and not fail_open:
        ctx.decisions["limits"] = "unavailable"
        raise openai_error(
            503,
            "rate limits and budgets cannot be checked right now (limits store unreachable); retry shortly",
            code="limits_unavailable",
            type_="service_unavailable",
            headers={"Retry-After": "1"},
        )
    ctx.decisions["limits"] = "fail_open"


def _candidates(ctx: RequestContext, policy: Any, cache_factor: int) -> list[autoroute.Candidate] | None:
    """A cost-routed request's candidates the tenant may get, cheapest worst case first; None for any other model.

    Refused (403 ``no_candidate_allowed``) when none of the asked tier is in the tenant's models, has a deployment
    in its regions and accepts the request's ``max_tokens``."""
    meta = policy.models.get(ctx.requested_model)
    if meta is None or not meta.candidates:
        return None
    quality = ctx.quality or 1
    regions = ctx.tenant.allowed_regions
    asked = ctx.contract.max_tokens if ctx.contract is not None else None
    out = []
    for cand in meta.candidates:
        cmeta = policy.models.get(cand.model)
        if cand.tier < quality or cmeta is None or not ctx.tenant.allows_model(cand.model):
            continue
        if regions and not any(r in cmeta.regional_groups for r in regions):
            continue  # residency: never a candidate with no deployment in the tenant's regions
        if asked and asked > cmeta.max_output_tokens:
            continue  # the upstream would refuse the request's max_tokens
        p_tok, c_tok = estimate_tokens(ctx, policy, cand.model)
        free = cmeta.zero_price
        est = 0 if free else math.ceil(_estimate_usd(policy, cand.model, p_tok * cache_factor, c_tok) * MICRO)
        out.append(autoroute.Candidate(cand.model, cand.tier, est, p_tok + c_tok, free))
    ctx.decisions["autoroute"] = {"quality": quality}
    if not out:
        ctx.decisions["refusal"] = "no_candidate_allowed"
        raise autoroute.no_candidate_allowed(ctx, meta, quality)
    return autoroute.order(out)


def _route_to(ctx: RequestContext, candidates: list[autoroute.Candidate], fitting: list[int]) -> None:
    """Serve the first fitting candidate; the others that fit are its fallbacks (the reservation covers them)."""
    chosen = [candidates[i].model for i in fitting]
    ctx.model = chosen[0]
    ctx.fallback_models = tuple(chosen[1:])
    ctx.decisions["autoroute"]["model"] = chosen[0]


async def admit(ctx: RequestContext, data: dict, rt: Runtime) -> None:
    """Check rate limits, reserve the budget estimate and apply downgrades (sets ``ctx.model``).

    Raises an OpenAI-style 429 (``rate_limit_exceeded`` / ``budget_exceeded``) when refused.
    """
    ctx.model = ctx.requested_model
    policy = rt.policy
    tenant = ctx.tenant
    budgets = policy.budgets_for(tenant.id)
    rl = tenant.rate_limits
    # A cache write is billed at up to twice the input price (Anthropic, one-hour breakpoints).
    cache_factor = CACHE_WRITE_FACTOR if ctx.contract is not None and ctx.contract.caches_prompt else 1
    candidates = _candidates(ctx, policy, cache_factor)
    every = list(range(len(candidates or ())))
    tiers = policy.policy.volume_discounts
    # With volume discounts every request is admitted by the script: it reads the month's volume to price the request,
    # and its settle adds to it.
    if not budgets and rl.rpm is None and rl.tpm is None and not tiers:
        if candidates:
            _route_to(ctx, candidates, every)  # no budget to fit: the cheapest serves
        return
    hard = rl.rpm is not None or rl.tpm is not None or any(b.hard_limit for b in budgets)
    if rt.redis is None:
        _fail(ctx, budgets, hard)
        if candidates:
            _route_to(ctx, candidates, every)  # failing open: the budget cannot be read, the cheapest serves
        return
    now = time.time()
    minute = int(now // 60)
    gw = policy.keys
    rpm_key = gw.rate(tenant.id, "rpm", minute)
    tpm_key = gw.rate(tenant.id, "tpm", minute)
    p_tok, c_tok = estimate_tokens(ctx, policy)
    est_usd = _estimate_usd(policy, ctx.requested_model, p_tok * cache_factor, c_tok)
    model_meta = policy.models.get(ctx.requested_model)
    free = 1 if model_meta is not None and model_meta.zero_price else 0
    now_dt = datetime.fromtimestamp(now, UTC)
    tpm_tok = typical_tokens(data, c_tok, ctx) if rl.tpm else 0
    args: list[Any] = [rl.rpm or 0, rl.tpm or 0, tpm_tok, 120, len(budgets)]
    # Not the request id: a client may choose that, and two leases under one name would release once.
    lease_member = secrets.token_hex(8)
    if candidates:
        args += [lease_member, lease_seconds(policy, *(c.model for c in candidates)), len(candidates)]
        for c in candidates:
            args += [c.est_micro, c.est_tokens, 1 if c.free else 0]
    else:
        args += [lease_member, lease_seconds(policy, ctx.requested_model), 0]
    est_micro = 0 if free else math.ceil(est_usd * MICRO)
    bounds = []
    budget_keys, lease_keys = [], []
    for b in budgets:
        start, end = period_bounds(b, now_dt)
        bounds.append((start, end))
        budget_keys.append(period_key(gw, b, start))
        lease_keys.append(lease_key(gw, b, start))
        ttl = int((end - start).total_seconds()) + 7 * 86400
        limit_micro = int(b.limit_usd * MICRO) if b.limit_usd is not None else 0
        args += [limit_micro, b.limit_tokens or 0, _block_fraction(b), est_micro, p_tok + c_tok, ttl, free]
    volume_key = gw.volume(now_dt) if tiers else ""
    args.append(volume.basis_points(tiers, await volume.VOLUME.current(rt.redis, volume_key)) if tiers else 0)
    keys = [rpm_key, tpm_key, *budget_keys, *lease_keys, gw.admitted(tenant.id, lease_member)]
    try:
        res = await ADMIT_SCRIPT(rt.redis, keys, args)
    except STORE_ERRORS as exc:
        log.warning("limits store unreachable: %s", type(exc).__name__)
        if budgets:
            # The script may have run before the reply was lost: no settle will come for this request.
            keys = [*budget_keys, *lease_keys]
            releases.RELEASES.add(rt.redis, _replica_acks(rt), keys, [len(budgets), lease_member])
        _fail(ctx, budgets, hard)
        return
    status = int(res[0])
    if status in (1, 2):
        kind = "rpm" if status == 1 else "tpm"
        ctx.decisions["refusal"] = f"rate_limit_{kind}"
        retry = max(1, 60 - int(now % 60))
        raise openai_error(
            429,
            f"rate limit exceeded for tenant {tenant.id}: {kind} limit {rl.rpm if status == 1 else rl.tpm}",
            code="rate_limit_exceeded",
            type_="rate_limit_error",
            headers={"Retry-After": str(retry)},
        )
    if status == 3:
        idx = int(res[1]) - 1
        b = budgets[idx]
        start, end = bounds[idx]
        # The script stops at the blocking budget: only its numbers came back.
        used_micro, used_tok = int(res[2]) + int(res[3]), int(res[4]) + int(res[5])
        _observe_use(policy, tenant.id, [used_micro], [b], [used_tok])
        ctx.decisions["refusal"] = "budget_exceeded"
        ctx.decisions["budget"] = {"name": b.name, "state": "blocked"}
        headers = budget_headers([b], [(start, end)], [used_micro], ["blocked"], [used_tok])
        raise openai_error(
            429,
            f"budget {b.name} of tenant {tenant.id} is exhausted for the current {b.period.value} period "
            f"(limit {describe_limits(b)}); it resets at {end.isoformat()}",
            code="budget_exceeded",
            type_="rate_limit_error",
            headers={**headers, "Retry-After": str(max(1, int((end - now_dt).total_seconds())))},
        )
    step = ADMIT_REPLY_PER_BUDGET
    used = [int(res[2 + step * i]) + int(res[3 + step * i]) for i in range(len(budgets))]
    used_tok = [int(res[4 + step * i]) + int(res[5 + step * i]) for i in range(len(budgets))]
    budget_tokens = p_tok + c_tok
    bp = int(res[2 + step * len(budgets)])
    if bp:
        ctx.decisions["discount"] = {"percent": bp / 100}
    if candidates:
        fitting = [int(x) - 1 for x in res[3 + step * len(budgets) :]]
        if status == 4:
            _no_candidate_fits(ctx, candidates, budgets, bounds, used, used_tok, now_dt, bp)
        # The script reserved the largest worst case of the fitting candidates (see limits.scripts).
        est_micro = max(candidates[i].est_micro for i in fitting)
        budget_tokens = max(candidates[i].est_tokens for i in fitting)
        _route_to(ctx, candidates, fitting)
    list_est, est_micro = est_micro, discounted(est_micro, bp)
    ctx.reservation = Reservation(
        tpm_key=tpm_key,
        counts_tokens=bool(rl.tpm),
        est_tokens=tpm_tok,
        budget_keys=budget_keys,
        est_micro=[est_micro] * len(budgets),
        lease_keys=lease_keys,
        lease_member=lease_member,
        settled_key=gw.settled(tenant.id, lease_member),
        budget_tokens=budget_tokens,
        volume_key=volume_key,
        discount_bp=bp,
        list_est_micro=list_est,
    )
    model = ctx.model
    states = {}
    if budgets:
        _observe_use(policy, tenant.id, used, budgets, used_tok)
    for i, b in enumerate(budgets):
        state, _ = state_for(b, used[i] / MICRO, used_tok[i])
        states[b.name] = state
        if state == "downgrade" and not candidates:  # a cost-routed choice already fits the budget
            model = downgrade_chain(b, model)
    if budgets:
        ctx.response_headers.update(budget_headers(budgets, bounds, used, list(states.values()), used_tok))
    if states:
        ctx.decisions["budget"] = states
    if model != ctx.model:
        ctx.decisions["downgrade"] = {"from": ctx.model, "to": model}
    ctx.model = model


def _no_candidate_fits(
    ctx: RequestContext,
    candidates: list[autoroute.Candidate],
    budgets: list[Budget],
    bounds: list[tuple[datetime, datetime]],
    used: list[int],
    used_tok: list[int],
    now_dt: datetime,
    bp: int,
) -> None:
    """429 ``no_candidate_fits``: even the cheapest allowed candidate's worst case exceeds what a budget has left."""
    states = [state_for(b, used[i] / MICRO, used_tok[i])[0] for i, b in enumerate(budgets)]
    headers = budget_headers(budgets, bounds, used, states, used_tok)
    cheapest = candidates[0]
    ends = [end for _, end in bounds]
    ctx.decisions["refusal"] = "no_candidate_fits"
    raise openai_error(
        429,
        f"no candidate of {ctx.requested_model!r} of quality tier {ctx.quality or 1} or higher fits the remaining "
        f"budget of tenant {ctx.tenant.id}: the cheapest, {cheapest.model}, may cost up to "
        f"{discounted(cheapest.est_micro, bp) / MICRO:.6f} USD ({cheapest.est_tokens} tokens) for this request; set a smaller "
        "max_tokens, ask for a lower x-kubegate-quality, raise the Budget's limit or wait for its reset",
        code="no_candidate_fits",
        type_="rate_limit_error",
        headers={**headers, "Retry-After": str(max(1, int((min(ends) - now_dt).total_seconds())))},
    )


async def settle(ctx: RequestContext, rt: Runtime) -> None:
    """Replace the reservation by the real cost (``ctx.cost_usd``) once the call has ended."""
    res: Reservation | None = ctx.reservation if isinstance(ctx.reservation, Reservation) else None
    if res is None or res.settled or rt.redis is None:
        return
    res.settled = True
    ok = ctx.status not in ("error", "failed", "refused")
    actual = math.ceil(ctx.cost_usd * MICRO) if ok else 0
    list_micro: int | str = ""
    if res.volume_key:
        # The upstream's cost is at list prices: it counts toward the month's volume; the tenant pays the discounted
        # amount (its budget, audit cost_usd, metrics), with the list price beside it in the audit record.
        list_micro, actual = actual, discounted(actual, res.discount_bp)
        if res.discount_bp and actual:
            ctx.decisions.setdefault("discount", {"percent": res.discount_bp / 100})["list_cost_usd"] = (
                list_micro / MICRO
            )
            ctx.cost_usd = actual / MICRO
    real_tokens = ctx.prompt_tokens + ctx.completion_tokens if ok else 0
    keys = [res.tpm_key, *res.budget_keys, *res.lease_keys, res.settled_key]
    delta = real_tokens - res.est_tokens if res.counts_tokens else 0
    # Only a model of the policy (a public name): the field name is bounded by the models, never a client's string.
    served = ctx.served_model if ok and ctx.served_model in rt.policy.models else ""
    args: list[Any] = [delta, len(res.budget_keys), res.lease_member, served, list_micro]
    for est in res.est_micro:
        args += [est, actual, res.budget_tokens, real_tokens]
    acks = _replica_acks(rt)

    async def applied(result: Any) -> None:
        # Once per request: a replayed settle (result 0) already counted its list price.
        if res.volume_key and list_micro and int(result) == 1:
            await volume.VOLUME.add(rt.redis, res.volume_key, int(list_micro))

    try:
        await applied(await replicated.eval_script(rt.redis, SETTLE_SCRIPT, keys, args, acks))
    except STORE_ERRORS as exc:
        # Idempotent (the settled mark): sent again until it lands, e.g. on the replica Sentinel promoted.
        log.warning("budget settle failed: %s; retrying for up to %d s", type(exc).__name__, SETTLE_RETRY_SECONDS)
        _background(_retry_settle(rt.redis, keys, args, acks, applied))


# Longer than a Sentinel failover (docs/redis.md), shorter than the settled mark lives (limits.scripts).
SETTLE_RETRY_SECONDS = 60
_retries: set[asyncio.Task] = set()


def _background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _retries.add(task)
    task.add_done_callback(_retries.discard)


async def _retry_settle(
    redis: Any, keys: list[str], args: list[Any], acks: int, applied: Callable[[Any], Awaitable[None]]
) -> None:
    deadline = time.monotonic() + SETTLE_RETRY_SECONDS
    pause = 0.2
    while True:
        await asyncio.sleep(pause)
        try:
            await applied(await replicated.eval_script(redis, SETTLE_SCRIPT, keys, args, acks))
            return
        except STORE_ERRORS as exc:
            if time.monotonic() + pause > deadline:
                # The reservation's lease lapses by itself (see limits.scripts); only this call's spend is lost.
                log.warning("budget settle given up after %d s: %s", SETTLE_RETRY_SECONDS, type(exc).__name__)
                return
            pause = min(2.0, pause * 2)
