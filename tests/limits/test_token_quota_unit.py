"""Token quotas (Budget.limit_tokens) through admit/settle against a real redis-server: alone, beside a USD limit,
under concurrency, with leases (old and new member formats) and with the schema's at-least-one-limit rule."""

from __future__ import annotations

import asyncio

import pytest
from gateway_operator.crd import models as crd
from litellm.proxy._types import ProxyException
from pydantic import ValidationError

from gateway_plugins import limits
from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.schema import Budget, Policy
from gateway_plugins.policy.store import CompiledPolicy
from tests.limits.test_limits_unit import GW, admit, contract_for, make_ctx, make_policy, make_rt, redis, req

__all__ = ["redis"]  # the fixture

KEYS = GatewayKeys("default", GW)


def token_policy(*, limit_tokens=1000, limit_usd=None, thresholds=None, downgrade=None) -> CompiledPolicy:
    doc = make_policy().policy.model_dump(mode="json", by_alias=True)
    budget = {"name": "b1", "tenant": "t1", "limit_tokens": limit_tokens, "downgrade": downgrade or {}}
    if limit_usd is not None:
        budget["limit_usd"] = limit_usd
    if thresholds is not None:
        budget["thresholds"] = thresholds
    doc["budgets"] = [budget]
    return CompiledPolicy.compile(Policy.model_validate(doc))


def worst_case(data: dict) -> int:
    """What admit reserves in tokens: the body's bytes plus max_tokens (estimate_tokens)."""
    contract = contract_for(data)
    return contract.body_bytes + data["max_tokens"]


async def spend(policy, rt, prompt: int, completion: int, cost: float = 0.0, data: dict | None = None) -> None:
    ctx = make_ctx(policy)
    await admit(ctx, data or req(10), rt)
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens, ctx.cost_usd = "success", prompt, completion, cost
    await limits.settle(ctx, rt)


async def state(redis, policy):
    return await read_budget_state(redis, KEYS, policy.policy.budgets[0])


async def test_a_token_only_budget_counts_prompt_plus_completion_and_blocks_at_its_limit(redis):
    policy = token_policy(limit_tokens=1000)
    rt = make_rt(redis, policy)
    ctx = make_ctx(policy)
    await admit(ctx, req(100), rt)
    assert ctx.response_headers["x-kubegate-budget-remaining-tokens"] == "1000"
    assert "x-kubegate-budget-remaining-usd" not in ctx.response_headers  # no USD limit, nothing left to say
    held = await state(redis, policy)
    assert held.reserved_tokens == worst_case(req(100)) and held.spent_tokens == 0
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens = "success", 300, 200
    await limits.settle(ctx, rt)
    settled = await state(redis, policy)
    assert (settled.spent_tokens, settled.reserved_tokens, settled.percent) == (500, 0, 50.0)

    await spend(policy, rt, 400, 100)
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy), req(1), rt)
    e = exc.value
    assert e.code == "429" and e.openai_code == "budget_exceeded" and "1000 tokens" in e.message
    assert e.headers["x-kubegate-budget-state"] == "blocked"
    assert e.headers["x-kubegate-budget-remaining-tokens"] == "0"
    assert "x-kubegate-budget-remaining-usd" not in e.headers and int(e.headers["Retry-After"]) >= 1
    final = await state(redis, policy)
    assert (final.spent_tokens, final.state, final.percent) == (1000, "blocked", 100.0)


async def test_a_failed_call_releases_its_tokens_and_spends_none(redis):
    policy = token_policy()
    rt = make_rt(redis, policy)
    ctx = make_ctx(policy)
    await admit(ctx, req(100), rt)
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens = "error", 50, 0
    await limits.settle(ctx, rt)
    after = await state(redis, policy)
    assert (after.spent_tokens, after.reserved_tokens) == (0, 0)


async def test_the_worst_case_is_reserved_so_a_request_that_could_exceed_the_limit_waits(redis):
    """Reserved tokens count: a held reservation at the limit blocks the next admit until it settles."""
    policy = token_policy(limit_tokens=200)
    rt = make_rt(redis, policy)
    big = {**req(200)}
    ctx = make_ctx(policy)
    await admit(ctx, big, rt)  # reserves more than the whole limit
    with pytest.raises(ProxyException):
        await admit(make_ctx(policy), req(1), rt)
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens = "success", 20, 30
    await limits.settle(ctx, rt)
    await admit(make_ctx(policy), req(1), rt)  # 50 of 200 spent: admitted again


async def test_usd_and_tokens_block_on_the_nearer_limit(redis):
    # USD nearer: 1 USD spent with few tokens.
    policy = token_policy(limit_tokens=1_000_000, limit_usd="1.0")
    rt = make_rt(redis, policy)
    await spend(policy, rt, 10, 10, cost=1.0)
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy), req(1), rt)
    assert exc.value.openai_code == "budget_exceeded"
    assert "1.0 USD and 1000000 tokens" in exc.value.message
    assert exc.value.headers["x-kubegate-budget-remaining-usd"] == "0.000000"
    assert int(exc.value.headers["x-kubegate-budget-remaining-tokens"]) == 1_000_000 - 20

    # Tokens nearer: 1000 tokens spent for a tenth of a cent.
    await redis.flushall()
    policy = token_policy(limit_tokens=1000, limit_usd="100")
    rt = make_rt(redis, policy)
    ctx = make_ctx(policy)
    await admit(ctx, req(10), rt)
    assert {"x-kubegate-budget-remaining-usd", "x-kubegate-budget-remaining-tokens"} <= set(ctx.response_headers)
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens, ctx.cost_usd = "success", 600, 400, 0.001
    await limits.settle(ctx, rt)
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy), req(1), rt)
    assert exc.value.openai_code == "budget_exceeded"
    assert exc.value.headers["x-kubegate-budget-remaining-tokens"] == "0"
    assert float(exc.value.headers["x-kubegate-budget-remaining-usd"]) == pytest.approx(99.999)
    s = await state(redis, policy)
    assert s.state == "blocked" and s.percent == 100.0 and s.spent_usd == pytest.approx(0.001)


async def test_the_token_ratio_drives_notify_and_downgrade(redis):
    thresholds = [{"percent": 10, "action": "notify"}, {"percent": 50, "action": "downgrade"}]
    policy = token_policy(limit_tokens=1000, limit_usd="100", thresholds=thresholds, downgrade={"big": "small"})
    rt = make_rt(redis, policy)
    await spend(policy, rt, 100, 50)  # 15 % of the tokens, ~0 % of the USD
    ctx = make_ctx(policy)
    await admit(ctx, req(1), rt)
    assert ctx.model == "big" and ctx.decisions["budget"] == {"b1": "notify"}
    await spend(policy, rt, 300, 100)  # 55 %
    ctx = make_ctx(policy)
    await admit(ctx, req(1), rt)
    assert ctx.model == "small" and ctx.response_headers["x-kubegate-budget-state"] == "downgrade"
    assert not any(t.action.value == "block" for t in policy.policy.budgets[0].thresholds)
    await spend(policy, rt, 5000, 0)  # no block threshold: served past the limit, state says so
    assert (await state(redis, policy)).state == "downgrade"


async def test_a_zero_price_model_still_counts_against_a_token_quota(redis):
    policy = token_policy(limit_tokens=100)
    rt = make_rt(redis, policy)
    data = {"model": "free", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    ctx = make_ctx(policy, "free")
    await admit(ctx, data, rt)
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens = "success", 60, 40
    await limits.settle(ctx, rt)
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy, "free"), data, rt)
    assert exc.value.openai_code == "budget_exceeded"


async def test_concurrent_overshoot_of_a_token_quota_is_within_one_request(redis):
    limit = 5000
    policy = token_policy(limit_tokens=limit)
    rt = make_rt(redis, policy)
    data = req(30)
    per_request = worst_case(data)  # every call uses its whole worst case: the hardest case for the limit
    served = 0

    async def client():
        nonlocal served
        while True:
            ctx = make_ctx(policy)
            try:
                await admit(ctx, data, rt)
            except ProxyException as exc:
                assert exc.openai_code == "budget_exceeded"
                return
            await asyncio.sleep(0)
            ctx.status, ctx.prompt_tokens, ctx.completion_tokens = "success", per_request - 30, 30
            served += 1
            await limits.settle(ctx, rt)

    await asyncio.gather(*(client() for _ in range(64)))
    s = await state(redis, policy)
    assert s.reserved_tokens == 0 and s.spent_tokens == served * per_request
    assert limit <= s.spent_tokens < limit + per_request


async def test_lapsed_leases_release_tokens_and_old_members_still_parse(redis):
    policy = token_policy(limit_tokens=100_000, limit_usd="1.0")
    budget = policy.policy.budgets[0]
    rt = make_rt(redis, policy)
    start = period_bounds(budget)[0]
    leases, key = KEYS.budget_leases(budget.tenant, budget.name, start), period_key(KEYS, budget, start)
    lost = make_ctx(policy)
    await admit(lost, req(100), rt)  # never settled
    [member] = await redis.zrange(leases, 0, -1)
    _, micro, tokens = member.decode().split(":")
    assert int(tokens) == worst_case(req(100)) and int(micro) == 100_000
    # A member written before token quotas: <id>:<micro-USD>, its reservation in `reserved` only.
    await redis.zadd(leases, {"0123456789abcdef:250000": 1})
    await redis.hincrby(key, "reserved", 250_000)
    for m in await redis.zrange(leases, 0, -1):
        await redis.zadd(leases, {m: 1}, xx=True)  # lapse them all
    held = make_ctx(policy)
    await admit(held, req(1), rt)  # releases both, then reserves its own
    s = await state(redis, policy)
    assert s.reserved_tokens == worst_case(req(1)) and s.reserved_usd == pytest.approx(0.001)
    lost.status, lost.prompt_tokens, lost.completion_tokens, lost.cost_usd = "success", 7, 3, 0.01
    await limits.settle(lost, rt)  # late: counts its spend, never releases twice
    s = await state(redis, policy)
    assert s.reserved_tokens == worst_case(req(1)) and s.spent_tokens == 10


def test_a_budget_needs_a_usd_or_a_token_limit():
    with pytest.raises(ValidationError, match="limit_usd or limit_tokens"):
        Budget(name="b", tenant="t")
    with pytest.raises(ValidationError, match="limitUSD or limitTokens"):
        crd.BudgetSpec.model_validate({"tenant": "t"})
    with pytest.raises(ValidationError, match="limitTokens"):
        crd.BudgetSpec.model_validate({"tenant": "t", "limitTokens": 0})
    assert crd.BudgetSpec.model_validate({"tenant": "t", "limitTokens": 5}).limit_usd is None
    only_tokens = Budget(name="b", tenant="t", limit_tokens=10)
    assert "limit_usd" not in only_tokens.model_dump(mode="json")
    # A USD-only budget serialises exactly as before token quotas: existing documents keep their bytes.
    assert "limit_tokens" not in Budget(name="b", tenant="t", limit_usd="1").model_dump(mode="json")
