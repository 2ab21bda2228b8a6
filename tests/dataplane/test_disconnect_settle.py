"""A client that leaves mid-stream still gets its request ended: one audit record, and the budget
reservation settled (charged as the worst case the upstream may have billed), never left reserved."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import GW, audit_records, budget, key, render
from tests.harness.proxy import ProxyServer

TENANT = "leaver"
BUDGETS = {"leaver-b": {"tenant": TENANT, "limitUSD": "10", "period": "daily"}}


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    slow = echo_upstream.base_url.replace("/v1", "/pace/300/v1")
    s = render(slow, budgets=BUDGETS, extra_tenants=(TENANT,))
    p = ProxyServer(
        s.config, s.policy, redis_url=redis_server.url, env={**s.env, "KUBEGATE_REAP_AFTER_SECONDS": "3"}
    ).start()
    yield p
    p.stop()


def budget_state(proxy: ProxyServer, url: str):
    async def read():
        r = aioredis.from_url(url)
        try:
            return await read_budget_state(r, GatewayKeys("default", GW), budget(proxy.policy, "leaver-b"))
        finally:
            await r.aclose()

    return asyncio.run(read())


def test_leaving_mid_stream_still_settles_and_audits_once(proxy, redis_server):
    body = {
        "model": "echo",
        "stream": True,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "a long answer that streams slowly " * 5}],
    }
    with httpx.stream(
        "POST",
        proxy.base_url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key(TENANT)}"},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200
        request_id = resp.headers["x-kubegate-request-id"]
        for _ in resp.iter_raw():
            break  # first bytes arrived: leave
    rds = redis_server.client()
    deadline = time.monotonic() + 60
    mine: list[dict] = []
    while time.monotonic() < deadline:
        mine = [r for r in audit_records(rds) if r["request_id"] == request_id]
        state = budget_state(proxy, redis_server.url)
        if mine and state.reserved_usd == 0:
            break
        time.sleep(0.3)
    assert len(mine) == 1, mine
    assert state.reserved_usd == 0
    print(mine[0])
    assert mine[0]["status"] == "incomplete" and mine[0]["decisions"]["client"] == "disconnected", mine[0]
    assert state.spent_usd > 0 and abs(state.spent_usd - mine[0]["cost_usd"]) <= 1e-6
    time.sleep(1)
    assert len([r for r in audit_records(rds) if r["request_id"] == request_id]) == 1
