"""Limits store outage through the real proxy: a real redis-server is stopped, then started again.

While it is down, tenants with a hard budget or a rate limit get 503 ``limits_unavailable`` (fail closed),
fail-open tenants and tenants without limits are served, and the proxy stays up. Once Redis is back
(empty, so the Lua scripts must be reloaded after NOSCRIPT) the same proxy serves again by itself,
from the first request on: stale pooled connections are replaced by the Redis client's retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from tests.harness.proxy import ProxyServer
from tests.harness.redis import RedisServer
from tests.harness.rendered import cr, echo_route, render_proxy

TEXT = "abcdefgh"
TENANTS = {
    "hard": {},  # budget with the default block at 100 %
    "rl": {"rateLimits": {"rpm": 1000}},
    "open": {"rateLimits": {"rpm": 1000}, "failOpen": True},
    "openb": {},  # budget marked failOpen
    "plain": {},  # no limits at all: Redis is not needed
}


def key(tenant: str) -> str:
    return f"sk-fault-{tenant}-0123456789"


@pytest.fixture(scope="module")
def redis_and_proxy(echo_upstream) -> Iterator[tuple[RedisServer, ProxyServer]]:
    redis_server = RedisServer().start()  # our own: stopping it must not disturb other modules
    rendered = render_proxy(
        [
            cr("LLMGateway", "main", {}),
            echo_route("main", "m", echo_upstream.base_url, output_price="0.001"),
            *(cr("Tenant", t, {"gateway": "main", "allowedModels": ["m"], **extra}) for t, extra in TENANTS.items()),
            cr("Budget", "hard-b", {"tenant": "hard", "limitUSD": "100"}),
            cr("Budget", "openb-b", {"tenant": "openb", "limitUSD": "100", "failOpen": True}),
        ],
        keys={t: key(t) for t in TENANTS},
    )
    proxy = ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env)
    try:
        proxy.start()
        yield redis_server, proxy
    finally:
        proxy.stop()
        redis_server.stop()


def ask(proxy: ProxyServer, tenant: str) -> str:
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60)
    resp = c.chat.completions.create(model="m", messages=[{"role": "user", "content": TEXT}], max_tokens=2)
    return resp.choices[0].message.content


def served(proxy: ProxyServer, tenant: str, phase: str) -> None:
    try:
        assert ask(proxy, tenant) == TEXT
    except openai.APIStatusError as exc:  # say which tenant/phase and why, with the proxy's log
        pytest.fail(f"{phase}: tenant {tenant} got {exc.status_code} {exc.body}\n{proxy.logs()}")


def test_outage_fails_closed_or_open_per_policy_and_recovers(redis_and_proxy):
    redis_server, proxy = redis_and_proxy
    for t in TENANTS:
        served(proxy, t, "before")  # scripts loaded, connections pooled
    redis_server.stop()
    try:
        for _ in range(3):
            for t in ("hard", "rl"):
                with pytest.raises(openai.APIStatusError) as exc:
                    ask(proxy, t)
                assert exc.value.status_code == 503
                assert exc.value.body["code"] == "limits_unavailable"
                assert "Retry-After" in exc.value.response.headers
            for t in ("open", "openb", "plain"):
                served(proxy, t, "outage")
        assert proxy.proc is not None and proxy.proc.poll() is None
        assert proxy.get("/health/liveliness").status_code == 200
    finally:
        redis_server.start()  # same port, empty: Lua SHAs are gone
    # Strict: the pooled connections died with the old server; the client's reconnect-and-retry must
    # hide that, so the very first request of every tenant is served (no 503 tolerated).
    for t in TENANTS:
        served(proxy, t, "after restart")
    # A restart with no request in between: every pooled connection is stale at once.
    redis_server.stop()
    redis_server.start()
    for t in TENANTS:
        served(proxy, t, "after bounce")
    # Spend is tracked again in the new (empty) Redis: exactly the served requests above.
    r = redis_server.client()
    spent = r.keys(GatewayKeys("default", "main").budget_pattern("hard", "hard-b"))
    assert len(spent) == 1
    for _ in range(50):  # settle runs in LiteLLM's success callback, after the response
        if int(r.hget(spent[0], "reserved")) == 0:
            break
        time.sleep(0.1)
    hard_served = 1  # since the bounce
    assert int(r.hget(spent[0], "spent")) == hard_served * 2000  # 2 tokens x 0.001 USD in micro-USD
    assert int(r.hget(spent[0], "reserved")) == 0
