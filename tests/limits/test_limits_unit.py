"""admit/settle against a real redis-server: rate limits, budgets, downgrades, concurrency, outages."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis
from litellm.proxy._types import ProxyException

from gateway_plugins import limits, residency
from gateway_plugins.context import RequestContext
from gateway_plugins.contract.routes import CHAT
from gateway_plugins.contract.validate import ContractRequest
from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.schema import Budget, Policy
from gateway_plugins.policy.store import CompiledPolicy

GW = "gw"


def make_policy(*, rpm=None, tpm=None, thresholds=None, downgrade=None, fail_open=False, regions=()) -> CompiledPolicy:
    budget = {"name": "b1", "tenant": "t1", "limit_usd": "1.0", "downgrade": downgrade or {}, "fail_open": fail_open}
    if thresholds is not None:
        budget["thresholds"] = thresholds
    doc = {
        "gateway": GW,
        "tenants": [
            {
                "id": "t1",
                "allowed_models": ["*"],
                "allowed_regions": list(regions),
                "rate_limits": {"rpm": rpm, "tpm": tpm},
            }
        ],
        "budgets": [budget],
        "models": [
            {"name": "big", "regional_groups": {"eu": "big@eu", "us": "big@us"}},
            {"name": "mid"},
            {"name": "small"},
            {"name": "free", "zero_price": True},
        ],
        "deployments": [
            {
                "id": "d-big-eu",
                "model": "big",
                "region": "eu",
                "input_cost_per_token": "0",
                "output_cost_per_token": "0.001",
            },
            {"id": "d-big-us", "model": "big", "region": "us", "output_cost_per_token": "0.001"},
            {"id": "d-free", "model": "free", "region": "eu"},
        ],
    }
    return CompiledPolicy.compile(Policy.model_validate(doc))


def contract_for(data: dict) -> ContractRequest:
    """What the front door would have recorded for ``data``: its size and its output bound."""
    return ContractRequest(CHAT, len(json.dumps(data).encode()), 1, data.get("max_tokens"))


async def admit(ctx: RequestContext, data: dict, rt) -> None:
    ctx.contract = ctx.contract or contract_for(data)
    await limits.admit(ctx, data, rt)


def make_rt(redis, policy):
    return SimpleNamespace(redis=redis, policy=policy, metrics=None)


def make_ctx(policy, model="big") -> RequestContext:
    return RequestContext(
        request_id="r", tenant=policy.tenants["t1"], key_id="k", requested_model=model, call_type="completion"
    )


@pytest.fixture
async def redis(redis_proc):
    client = aioredis.from_url(redis_proc.url)
    await client.flushall()
    yield client
    await client.aclose()


def req(max_tokens=100):
    return {"model": "big", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


async def test_rpm_limit_refuses_with_retry_after(redis):
    policy = make_policy(rpm=3)
    rt = make_rt(redis, policy)
    for _ in range(3):
        await admit(make_ctx(policy), req(1), rt)
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy), req(1), rt)
    assert exc.value.code == "429" and exc.value.openai_code == "rate_limit_exceeded"
    assert int(exc.value.headers["Retry-After"]) >= 1


async def test_tpm_counts_real_tokens_at_settle(redis):
    policy = make_policy(tpm=1000)
    rt = make_rt(redis, policy)
    ctx = make_ctx(policy)
    await admit(ctx, req(10), rt)
    ctx.status, ctx.prompt_tokens, ctx.completion_tokens = "success", 500, 450
    await limits.settle(ctx, rt)
    # 950 real tokens used: a 100-token estimate no longer fits in 1000.
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy), req(100), rt)
    assert exc.value.openai_code == "rate_limit_exceeded"


async def test_block_with_headers_and_failure_releases(redis):
    policy = make_policy()
    rt = make_rt(redis, policy)
    ctx = make_ctx(policy)
    await admit(ctx, req(100), rt)  # reserves 0.1 USD
    ctx.status = "error"
    await limits.settle(ctx, rt)
    state = await read_budget_state(redis, GatewayKeys("default", GW), policy.policy.budgets[0])
    assert state.reserved_usd == 0 and state.spent_usd == 0
    ctx = make_ctx(policy)
    await admit(ctx, req(100), rt)
    ctx.status, ctx.cost_usd = "success", 1.0
    await limits.settle(ctx, rt)
    with pytest.raises(ProxyException) as exc:
        await admit(make_ctx(policy), req(100), rt)
    e = exc.value
    assert e.code == "429" and e.openai_code == "budget_exceeded"
    assert e.headers["x-kubegate-budget-remaining-usd"] == "0.000000"
    _, end = period_bounds(policy.policy.budgets[0])
    assert datetime.fromisoformat(e.headers["x-kubegate-budget-reset"]) == end
    # zero-price models are never blocked
    await admit(make_ctx(policy, "free"), {"model": "free", "messages": []}, rt)


async def test_downgrade_follows_chain_and_notify(redis):
    thresholds = [{"percent": 10, "action": "notify"}, {"percent": 50, "action": "downgrade"}]
    policy = make_policy(thresholds=thresholds, downgrade={"big": "mid", "mid": "small"})
    rt = make_rt(redis, policy)
    budget = policy.policy.budgets[0]
    start, _ = period_bounds(budget)
    key = period_key(GatewayKeys("default", GW), budget, start)
    await redis.hset(key, "spent", 200_000)
    ctx = make_ctx(policy)
    await admit(ctx, req(1), rt)
    assert ctx.model == "big" and ctx.decisions["budget"] == {"b1": "notify"}
    assert (await read_budget_state(redis, GatewayKeys("default", GW), budget)).state == "notify"
    await redis.hset(key, "spent", 600_000)
    ctx = make_ctx(policy)
    await admit(ctx, req(1), rt)
    assert ctx.model == "small" and ctx.decisions["downgrade"] == {"from": "big", "to": "small"}


async def test_concurrent_overshoot_within_one_request(redis):
    policy = make_policy()
    budget = policy.policy.budgets[0]
    rt = make_rt(redis, policy)
    served = 0

    async def client():
        nonlocal served
        while True:
            ctx = make_ctx(policy)
            try:
                await admit(ctx, req(30), rt)  # estimate 0.03 USD
            except ProxyException:
                return
            await asyncio.sleep(0)
            ctx.status, ctx.cost_usd = "success", 0.03
            served += 1
            await limits.settle(ctx, rt)

    await asyncio.gather(*(client() for _ in range(64)))
    state = await read_budget_state(redis, GatewayKeys("default", GW), budget)
    assert state.reserved_usd == 0
    assert state.spent_usd == pytest.approx(served * 0.03)
    assert float(budget.limit_usd) <= state.spent_usd < float(budget.limit_usd) + 0.03 + 1e-9


async def test_period_rollover_settles_on_reservation_key(redis):
    budget = Budget(name="b", tenant="t", limit_usd=Decimal(1), period="daily", timezone="Europe/Paris")
    s1, e1 = period_bounds(budget, datetime(2026, 3, 28, 22, 59, tzinfo=UTC))
    s2, e2 = period_bounds(budget, datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert (
        e1 == s2 and s1 != s2 and (e2.astimezone(UTC) - s2.astimezone(UTC)).total_seconds() == 23 * 3600
    )  # DST day is 23 h
    policy = make_policy()
    rt = make_rt(redis, policy)
    ctx = make_ctx(policy)
    await admit(ctx, req(100), rt)
    key = ctx.reservation.budget_keys[0]
    ctx.status, ctx.cost_usd = "success", 0.05
    await limits.settle(ctx, rt)
    assert await redis.hmget(key, "spent", "reserved") == [b"50000", b"0"]


async def test_redis_outage_fail_closed_open_and_recovery(redis_proc):
    client = aioredis.from_url(redis_proc.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    policy, open_policy = make_policy(), make_policy(fail_open=True)
    await admit(make_ctx(policy), req(1), make_rt(client, policy))
    redis_proc.stop()
    try:
        with pytest.raises(ProxyException) as exc:
            await admit(make_ctx(policy), req(1), make_rt(client, policy))
        assert exc.value.code == "503" and exc.value.openai_code == "limits_unavailable"
        ctx = make_ctx(open_policy)
        await admit(ctx, req(1), make_rt(client, open_policy))
        assert ctx.decisions["limits"] == "fail_open"
    finally:
        redis_proc.start()
    # Fresh Redis has no scripts: NOSCRIPT must reload them transparently.
    ctx = make_ctx(policy)
    await admit(ctx, req(1), make_rt(client, policy))
    assert ctx.reservation is not None
    await client.aclose()


@pytest.mark.parametrize(
    "raised",
    [
        AttributeError("'NoneType' object has no attribute 'writelines'"),
        RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"),
    ],
)
async def test_a_connection_closed_mid_command_fails_closed_like_an_outage(redis_proc, monkeypatch, raised):
    """redis-py raises these instead of ConnectionError when another task closed the connection (both seen in a
    Cluster failover); each must be a 503 limits_unavailable, not an exception LiteLLM answers with a 400 or a 500
    carrying its text."""
    client = aioredis.from_url(redis_proc.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    policy = make_policy()

    async def closed_mid_command(*args, **kwargs):
        raise raised

    monkeypatch.setattr(client, "execute_command", closed_mid_command)
    try:
        with pytest.raises(ProxyException) as exc:
            await admit(make_ctx(policy), req(1), make_rt(client, policy))
        assert exc.value.code == "503" and exc.value.openai_code == "limits_unavailable"
        assert str(raised) not in exc.value.message
    finally:
        await client.aclose()


def test_residency_route_and_second_line():
    policy = make_policy(regions=("us", "eu"))
    ctx = make_ctx(policy)
    ctx.model = "big"
    data = {"model": "big", "fallbacks": ["anything"]}
    residency.route(ctx, data, policy)
    assert data["model"] == "big@us" and data["fallbacks"] == ["big@eu"]
    deps = [{"model_info": {"id": "d-big-eu"}}, {"model_info": {"id": "x", "region": "ap"}}]
    assert residency.filter_deployments(policy, ctx.allowed_regions, deps) == deps[:1]
    with pytest.raises(ProxyException) as exc:
        residency.check_deployment(policy, ctx, deps[1])
    assert exc.value.openai_code == "residency_unavailable"
    ctx.model = "mid"
    with pytest.raises(ProxyException) as exc:
        residency.route(ctx, {"model": "mid"}, policy)
    assert "no deployment of mid in allowed regions [us, eu]" in exc.value.message


async def test_a_prompt_cache_write_is_reserved_at_twice_the_input_price(redis):
    """Anthropic bills cache writes at 1.25x (5 minutes) or 2x (one hour) the input price: the worst case is 2x."""
    from dataclasses import replace

    from gateway_plugins.contract.routes import MESSAGES

    doc = make_policy().policy.model_dump(mode="json", by_alias=True)
    doc["deployments"].append(
        {"id": "d-mid", "model": "mid", "region": "eu", "input_cost_per_token": "0.00001", "output_cost_per_token": "0"}
    )
    policy = CompiledPolicy.compile(Policy.model_validate(doc))
    rt = make_rt(redis, policy)
    body = {"model": "mid", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 400}]}
    plain, cached = make_ctx(policy, "mid"), make_ctx(policy, "mid")
    plain.contract = replace(contract_for(body), endpoint=MESSAGES)
    cached.contract = replace(plain.contract, caches_prompt=True)
    await limits.admit(plain, body, rt)
    await limits.admit(cached, body, rt)
    assert limits.reserved_usd(plain) > 0
    assert limits.reserved_usd(cached) == pytest.approx(2 * limits.reserved_usd(plain), rel=0.01)


async def _lapse_leases(redis, policy) -> None:
    """Move every open lease of b1 into the past, as if its lease time had gone by without a settle."""
    budget = policy.policy.budgets[0]
    leases = GatewayKeys("default", GW).budget_leases(budget.tenant, budget.name, period_bounds(budget)[0])
    for member in await redis.zrange(leases, 0, -1):
        await redis.zadd(leases, {member: 1}, xx=True)


async def test_a_lost_settle_is_released_when_its_lease_lapses(redis):
    policy = make_policy()
    budget = policy.policy.budgets[0]
    rt = make_rt(redis, policy)
    lost = make_ctx(policy)
    await admit(lost, req(100), rt)  # reserves 0.1 USD; its settle never arrives (Redis was unreachable)
    await admit(make_ctx(policy), req(200), rt)  # still held: 0.3 USD reserved
    assert (await read_budget_state(redis, GatewayKeys("default", GW), budget)).reserved_usd == pytest.approx(0.3)
    await _lapse_leases(redis, policy)
    held = make_ctx(policy)
    await admit(held, req(300), rt)  # this admit releases both lapsed leases, then reserves its own 0.3 USD
    state = await read_budget_state(redis, GatewayKeys("default", GW), budget)
    assert state.reserved_usd == pytest.approx(0.3)
    # The lost settle arriving late counts its spend but never releases a second time.
    lost.status, lost.cost_usd = "success", 0.05
    await limits.settle(lost, rt)
    state = await read_budget_state(redis, GatewayKeys("default", GW), budget)
    assert state.reserved_usd == pytest.approx(0.3) and state.spent_usd == pytest.approx(0.05)
    held.status, held.cost_usd = "success", 0.01
    await limits.settle(held, rt)
    state = await read_budget_state(redis, GatewayKeys("default", GW), budget)
    assert state.reserved_usd == 0 and state.spent_usd == pytest.approx(0.06)


async def test_the_lease_covers_the_model_and_its_fallbacks(redis):
    doc = make_policy().policy.model_dump(mode="json", by_alias=True)
    for model in doc["models"]:
        model["max_call_seconds"] = {"big": 600, "mid": 30, "small": 5}.get(model["name"], 1)
        model["fallbacks"] = {"big": ["mid"], "mid": ["small", "big"]}.get(model["name"], [])
    policy = CompiledPolicy.compile(Policy.model_validate(doc))
    assert limits.lease_seconds(policy, "big") == 600 + 30 + 5 + limits.LEASE_GRACE_SECONDS
    rt = make_rt(redis, policy)
    before = (await redis.time())[0]
    await admit(make_ctx(policy), req(100), rt)
    budget = policy.policy.budgets[0]
    leases = GatewayKeys("default", GW).budget_leases(budget.tenant, budget.name, period_bounds(budget)[0])
    [(_, lapses)] = await redis.zrange(leases, 0, -1, withscores=True)
    assert before + 635 + limits.LEASE_GRACE_SECONDS <= lapses <= before + 636 + limits.LEASE_GRACE_SECONDS


async def test_clients_reusing_a_request_id_cannot_pin_a_reservation(redis):
    policy = make_policy()
    rt = make_rt(redis, policy)
    first, second = make_ctx(policy), make_ctx(policy)  # same request id, same estimate
    await admit(first, req(100), rt)
    await admit(second, req(100), rt)
    for ctx in (first, second):
        ctx.status, ctx.cost_usd = "success", 0.0
        await limits.settle(ctx, rt)
    state = await read_budget_state(redis, GatewayKeys("default", GW), policy.policy.budgets[0])
    assert state.reserved_usd == 0


@pytest.mark.parametrize(
    ("ran", "lost"),
    [(True, ConnectionError), (True, TimeoutError), (False, ConnectionError)],
    ids=["ran-connection-dropped", "ran-timed-out", "never-ran"],
)
async def test_an_admit_whose_reply_was_lost_leaves_nothing_reserved(redis, monkeypatch, ran, lost):
    """A primary killed between running the admit script and sending its reply (its replica got the write): the
    request is refused, so no settle will come; what the script may have reserved is released, and only that."""
    from redis import exceptions

    policy = make_policy()
    budget = policy.policy.budgets[0]
    rt = make_rt(redis, policy)
    held = make_ctx(policy)
    await admit(held, req(100), rt)  # another request in flight keeps its 0.1 USD
    evalsha = redis.evalsha
    admit_sha = limits.scripts.ADMIT_SCRIPT.sha
    error = getattr(exceptions, lost.__name__)

    async def reply_lost(sha, *args):
        if sha != admit_sha:
            return await evalsha(sha, *args)
        if ran:
            await evalsha(sha, *args)
        raise error("Connection closed by server.")

    monkeypatch.setattr(redis, "evalsha", reply_lost)
    ctx = make_ctx(policy)
    with pytest.raises(ProxyException) as exc:
        await admit(ctx, req(200), rt)
    assert exc.value.code == "503" and ctx.reservation is None
    await limits.releases.RELEASES.drained()
    leases = GatewayKeys("default", GW).budget_leases(budget.tenant, budget.name, period_bounds(budget)[0])
    assert [m.decode().split(":")[0] for m in await redis.zrange(leases, 0, -1)] == [held.reservation.lease_member]
    state = await read_budget_state(redis, GatewayKeys("default", GW), budget)
    assert state.reserved_usd == pytest.approx(0.1) and state.spent_usd == 0
    held.status, held.cost_usd = "success", 0.01
    await limits.settle(held, rt)
    state = await read_budget_state(redis, GatewayKeys("default", GW), budget)
    assert state.reserved_usd == 0 and state.spent_usd == pytest.approx(0.01)
