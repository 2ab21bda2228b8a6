"""Per-tenant rpm/tpm through the real proxy with the official openai SDK; counters live in Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import cr, echo_route, render_proxy

GW = "main"
TEXT = "abcdefgh"  # echo: 2 prompt + 2 completion tokens; our up-front estimate is 3 + max_tokens


def key(tenant: str) -> str:
    return f"sk-rl-{tenant}-0123456789"


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    limits = {"rpm3": {"rpm": 3}, "tpm10": {"tpm": 10}, "other": {"rpm": 100}}
    rendered = render_proxy(
        [
            cr("LLMGateway", GW, {}),
            echo_route(GW, "m", echo_upstream.base_url),
            *(cr("Tenant", t, {"gateway": GW, "allowedModels": ["m"], "rateLimits": rl}) for t, rl in limits.items()),
        ],
        keys={t: key(t) for t in limits},
    )
    server = ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env).start()
    yield server
    server.stop()


def ask(proxy: ProxyServer, tenant: str):
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60)
    return c.chat.completions.create(model="m", messages=[{"role": "user", "content": TEXT}], max_tokens=2)


def same_minute() -> int:
    """Start a burst well inside one minute window so the counter cannot roll over mid-test."""
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
    return int(time.time() // 60)


def test_rpm_fourth_request_is_429_with_retry_after(proxy):
    same_minute()
    for _ in range(3):
        assert ask(proxy, "rpm3").choices[0].message.content == TEXT
    with pytest.raises(openai.RateLimitError) as exc:
        ask(proxy, "rpm3")
    assert exc.value.status_code == 429
    assert exc.value.body["code"] == "rate_limit_exceeded"
    assert "rpm" in exc.value.body["message"]
    assert 1 <= int(exc.value.response.headers["Retry-After"]) <= 60
    # Another tenant's counter is its own.
    assert ask(proxy, "other").choices[0].message.content == TEXT


def test_tpm_counts_real_tokens_at_settle(proxy, redis_server):
    minute = same_minute()
    # estimate 5 each; real 4: 0+5 ok -> 4, 4+5 ok -> 8, 8+5 > 10 refused.
    ask(proxy, "tpm10")
    ask(proxy, "tpm10")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(proxy, "tpm10")
    assert exc.value.body["code"] == "rate_limit_exceeded"
    assert "tpm" in exc.value.body["message"]
    assert "Retry-After" in exc.value.response.headers
    tpm_key = GatewayKeys("default", GW).rate("tpm10", "tpm", minute)
    r = redis_server.client()
    for _ in range(50):  # settle runs in LiteLLM's success callback, after the response
        if int(r.get(tpm_key)) == 8:
            break
        time.sleep(0.1)
    assert int(r.get(tpm_key)) == 8
