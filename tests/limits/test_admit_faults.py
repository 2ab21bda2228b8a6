"""Generated sequences of admits and settles on a real Redis, each admit meeting one of the faults a failover or a
broken connection brings (its reply lost after the script ran or before it reached Redis, the script resent after
it ran): once the releases are done, nothing stays reserved and the spend is exactly what the served requests
cost."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litellm.proxy._types import ProxyException
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway_plugins import limits
from gateway_plugins.limits import releases
from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds
from tests.limits.test_limits_unit import GW, admit, make_ctx, make_policy, make_rt, req

FATES = ("served", "reply_lost_after_run", "reply_lost_before_run", "resent_after_run", "refused_upstream")


class Faulty:
    """The real client, with the next admit's fate decided by the test (the admit script only)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client, self.fate = client, "served"
        self.evalsha = client.evalsha
        client.evalsha = self._evalsha

    async def _evalsha(self, sha, *args):
        if sha != limits.scripts.ADMIT_SCRIPT.sha or self.fate in ("served", "refused_upstream"):
            return await self.evalsha(sha, *args)
        if self.fate == "reply_lost_before_run":
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
        first = await self.evalsha(sha, *args)
        if self.fate == "reply_lost_after_run":
            raise RedisConnectionError("Connection closed by server.")
        again = await self.evalsha(sha, *args)  # what redis-py's resend does after a broken connection
        assert again == first
        return again


async def _run(url: str, plan: list[tuple[str, int, int]]) -> None:
    client = aioredis.from_url(url)
    await client.flushall()
    queue = releases.Releases()
    releases.RELEASES = queue
    policy = make_policy()
    (budget,) = policy.policy.budgets
    keys = GatewayKeys("default", GW)
    faulty = Faulty(client)
    rt = make_rt(client, policy)
    open_: list = []
    served_micro = 0
    try:
        warm = make_ctx(policy)
        await admit(warm, req(1), rt)  # the script loaded, so its sha is known
        open_.append(warm)
        for fate, max_tokens, cost_micro in plan:
            faulty.fate = fate
            ctx = make_ctx(policy)
            try:
                await admit(ctx, req(max_tokens), rt)
            except ProxyException as exc:
                assert fate.startswith("reply_lost") and exc.code == "503"
                continue
            assert not fate.startswith("reply_lost")
            ctx.status, ctx.cost_usd = ("error", 0) if fate == "refused_upstream" else ("success", cost_micro / 1e6)
            open_.append(ctx)
            served_micro += cost_micro if fate != "refused_upstream" else 0
            if len(open_) > 3:  # a few in flight at once
                await limits.settle(open_.pop(0), rt)
        for ctx in open_:
            await limits.settle(ctx, rt)
        await asyncio.wait_for(queue.drained(), 30)
        state = await read_budget_state(client, keys, budget)
        leases = keys.budget_leases(budget.tenant, budget.name, period_bounds(budget)[0])
        assert await client.zcard(leases) == 0
        assert state.reserved_usd == 0
        assert round(state.spent_usd * 1e6) == served_micro
    finally:
        await client.aclose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(st.tuples(st.sampled_from(FATES), st.integers(1, 30), st.integers(0, 5000)), min_size=1, max_size=25)
)
def test_faults_around_admits_leave_nothing_reserved_and_exact_spend(redis_proc, plan, monkeypatch):
    saved = releases.RELEASES
    try:
        asyncio.run(_run(redis_proc.url, plan))
    finally:
        releases.RELEASES = saved
