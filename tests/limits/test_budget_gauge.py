"""``kubegate_budget_used_ratio`` is set by admit from the script's own answer (spent + reserved / limit)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from litellm.proxy._types import ProxyException
from prometheus_client import REGISTRY

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.limits.test_limits_unit import GW, admit, make_ctx, make_policy, make_rt, req


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
    await admit(make_ctx(policy), req(1), rt)
    assert gauge("t1") == pytest.approx(0.30)
    await redis.hset(key, mapping={"spent": 1_200_000, "reserved": 0})
    with pytest.raises(ProxyException):  # a blocked tenant's gauge shows the overshoot too
        await admit(make_ctx(policy), req(1), rt)
    assert gauge("t1") == pytest.approx(1.2)


def reached(tenant: str, percent: str, action: str) -> float | None:
    return REGISTRY.get_sample_value(
        "kubegate_budget_threshold_reached", {"tenant": tenant, "budget": "b9", "threshold": percent, "action": action}
    )


def test_threshold_series_turn_on_at_their_percent():
    from gateway_plugins import metrics
    from gateway_plugins.policy.schema import Budget, BudgetAction, BudgetThreshold

    policy = make_policy()  # knows tenant t1
    budget = Budget(
        name="b9",
        tenant="t1",
        limit_usd=10,
        thresholds=[
            BudgetThreshold(percent=50, action=BudgetAction.NOTIFY),
            BudgetThreshold(percent=80, action=BudgetAction.NOTIFY),
            BudgetThreshold(percent=100, action=BudgetAction.BLOCK),
        ],
    )
    metrics.record_budget_thresholds(policy, "t1", budget, 0.8)
    assert (reached("t1", "50", "notify"), reached("t1", "80", "notify"), reached("t1", "100", "block")) == (1, 1, 0)
    metrics.record_budget_thresholds(policy, "t1", budget, 0.1)  # a new period
    assert (reached("t1", "50", "notify"), reached("t1", "80", "notify")) == (0, 0)
    metrics.record_budget_thresholds(policy, "stranger", budget, 1.0)  # not in the policy: bounded to `other`
    assert (
        REGISTRY.get_sample_value(
            "kubegate_budget_threshold_reached",
            {"tenant": "other", "budget": "b9", "threshold": "100", "action": "block"},
        )
        == 1
    )
