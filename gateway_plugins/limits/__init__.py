"""Budgets, downgrades and rate limits (one Redis round trip before the call, one after).

``admit`` runs the ADMIT Lua script: rpm/tpm check + budget check + reservation of the estimate,
atomically. ``settle`` replaces the reservation by the real cost on the SAME period key (stored in
``ctx.reservation``), so a period roll-over mid-request neither loses nor double counts.
Redis down: tenants with a rate limit or a hard (block) budget are refused with 503
``limits_unavailable`` unless ``Tenant.fail_open`` / ``Budget.fail_open``.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from gateway_plugins import metrics
from gateway_plugins.limits.scripts import ADMIT_REPLY_PER_BUDGET, ADMIT_SCRIPT, SETTLE_SCRIPT
from gateway_plugins.policy.budget_state import MICRO, STATE_RANK, state_for, used_ratio
from gateway_plugins.policy.periods import period_bounds, period_key
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
    tpm_key: str
    est_tokens: int
    budget_keys: list[str]
    est_micro: list[int]
    lease_keys: list[str]
    lease_member: str
    # Worst-case input + output tokens reserved on every budget (estimate_tokens).
    budget_tokens: int = 0
    settled: bool = False


def estimate_tokens(ctx: RequestContext, policy: Any) -> tuple[int, int]:
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
    meta = policy.models.get(ctx.requested_model)
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


def reserved_usd(ctx: RequestContext) -> float:
    """What the request reserved (its worst case), in USD."""
    res = ctx.reservation
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


def lease_seconds(policy: Any, model: str) -> int:
    """How long a reservation holds before the next admit may release it: the longest the call can take,
    the model's own attempts and then each fallback's, so a slow call that still settles keeps its lease."""
    total, seen, todo = 0, set(), [model]
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


async def admit(ctx: RequestContext, data: dict, rt: Runtime) -> None:
    """Check rate limits, reserve the budget estimate and apply downgrades (sets ``ctx.model``).

    Raises an OpenAI-style 429 (``rate_limit_exceeded`` / ``budget_exceeded``) when refused.
    """
    ctx.model = ctx.requested_model
    policy = rt.policy
    tenant = ctx.tenant
    budgets = policy.budgets_for(tenant.id)
    rl = tenant.rate_limits
    if not budgets and rl.rpm is None and rl.tpm is None:
        return
    hard = rl.rpm is not None or rl.tpm is not None or any(b.hard_limit for b in budgets)
    if rt.redis is None:
        _fail(ctx, budgets, hard)
        return
    now = time.time()
    minute = int(now // 60)
    gw = policy.keys
    rpm_key = gw.rate(tenant.id, "rpm", minute)
    tpm_key = gw.rate(tenant.id, "tpm", minute)
    p_tok, c_tok = estimate_tokens(ctx, policy)
    # A cache write is billed at up to twice the input price (Anthropic, one-hour breakpoints).
    cache_factor = CACHE_WRITE_FACTOR if ctx.contract is not None and ctx.contract.caches_prompt else 1
    est_usd = _estimate_usd(policy, ctx.requested_model, p_tok * cache_factor, c_tok)
    model_meta = policy.models.get(ctx.requested_model)
    free = 1 if model_meta is not None and model_meta.zero_price else 0
    now_dt = datetime.fromtimestamp(now, UTC)
    tpm_tok = typical_tokens(data, c_tok, ctx) if rl.tpm else 0
    args: list[Any] = [rl.rpm or 0, rl.tpm or 0, tpm_tok, 120, len(budgets)]
    # Not the request id: a client may choose that, and two leases under one name would release once.
    lease_member = secrets.token_hex(8)
    args += [lease_member, lease_seconds(policy, ctx.requested_model)]
    est_micro = 0 if free else math.ceil(est_usd * MICRO)
    bounds = []
    budget_keys, lease_keys = [], []
    for b in budgets:
        start, end = period_bounds(b, now_dt)
        bounds.append((start, end))
        budget_keys.append(period_key(gw, b, start))
        lease_keys.append(gw.budget_leases(b.name, start))
        ttl = int((end - start).total_seconds()) + 7 * 86400
        limit_micro = int(b.limit_usd * MICRO) if b.limit_usd is not None else 0
        args += [limit_micro, b.limit_tokens or 0, _block_fraction(b), est_micro, p_tok + c_tok, ttl, free]
    keys = [rpm_key, tpm_key, *budget_keys, *lease_keys]
    try:
        res = await ADMIT_SCRIPT(rt.redis, keys, args)
    except (RedisError, OSError) as exc:
        log.warning("limits store unreachable: %s", type(exc).__name__)
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
    ctx.reservation = Reservation(
        tpm_key=tpm_key if rl.tpm else "",
        est_tokens=tpm_tok,
        budget_keys=budget_keys,
        est_micro=[est_micro] * len(budgets),
        lease_keys=lease_keys,
        lease_member=lease_member,
        budget_tokens=p_tok + c_tok,
    )
    model = ctx.requested_model
    states = {}
    step = ADMIT_REPLY_PER_BUDGET
    used = [int(res[2 + step * i]) + int(res[3 + step * i]) for i in range(len(budgets))]
    used_tok = [int(res[4 + step * i]) + int(res[5 + step * i]) for i in range(len(budgets))]
    if budgets:
        _observe_use(policy, tenant.id, used, budgets, used_tok)
    for i, b in enumerate(budgets):
        state, _ = state_for(b, used[i] / MICRO, used_tok[i])
        states[b.name] = state
        if state == "downgrade":
            model = downgrade_chain(b, model)
    if budgets:
        ctx.response_headers.update(budget_headers(budgets, bounds, used, list(states.values()), used_tok))
    if states:
        ctx.decisions["budget"] = states
    if model != ctx.requested_model:
        ctx.decisions["downgrade"] = {"from": ctx.requested_model, "to": model}
    ctx.model = model


async def settle(ctx: RequestContext, rt: Runtime) -> None:
    """Replace the reservation by the real cost (``ctx.cost_usd``) once the call has ended."""
    res: Reservation | None = ctx.reservation if isinstance(ctx.reservation, Reservation) else None
    if res is None or res.settled or rt.redis is None:
        return
    res.settled = True
    ok = ctx.status not in ("error", "failed", "refused")
    actual = math.ceil(ctx.cost_usd * MICRO) if ok else 0
    real_tokens = ctx.prompt_tokens + ctx.completion_tokens if ok else 0
    keys = [res.tpm_key, *res.budget_keys, *res.lease_keys]
    args: list[Any] = [real_tokens - res.est_tokens if res.tpm_key else 0, len(res.budget_keys), res.lease_member]
    for est in res.est_micro:
        args += [est, actual, res.budget_tokens, real_tokens]
    try:
        await SETTLE_SCRIPT(rt.redis, keys, args)
    except (RedisError, OSError) as exc:
        # The reservation's lease lapses by itself (see limits.scripts); only this call's spend is lost.
        log.warning("budget settle failed: %s", type(exc).__name__)
