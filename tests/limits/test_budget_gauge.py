"""``kubegate_budget_used_ratio`` is set by admit from the script's own answer (spent + reserved / limit)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from litellm.proxy._types import ProxyException
from prometheus_client import REGISTRY

from gateway_plugins import limits
from gateway_plugins.limits.periods import period_bounds, period_key
from gateway_plugins.policy.keys import GatewayKeys
from tests.limits.test_limits_unit import GW, make_ctx, make_policy, make_rt, req


@pytest.fixture
async def redis(redis_proc):
    client = aioredis.from_url(redis_proc.url)
    await client.flushall()
    yield client
    await client.aclose()


def gauge(tenant: str) -> float | None:
    return REGISTRY.get_sample_value("kubegate_budget_used_ratio", {"tenant": tenant})


async def test_gauge_follows_spent_plus_reserved(redis):
    policy = make_policy()  # tenant t1, budget b1 of 1 USD
    rt = make_rt(redis, policy)
    budget = policy.policy.budgets[0]
    key = period_key(GatewayKeys("default", GW), budget, period_bounds(budget)[0])
    await redis.hset(key, mapping={"spent": 250_000, "reserved": 50_000})
    await limits.admit(make_ctx(policy), req(1), rt)
    assert gauge("t1") == pytest.approx(0.30)
    await redis.hset(key, mapping={"spent": 1_200_000, "reserved": 0})
    with pytest.raises(ProxyException):  # a blocked tenant's gauge shows the overshoot too
        await limits.admit(make_ctx(policy), req(1), rt)
    assert gauge("t1") == pytest.approx(1.2)
