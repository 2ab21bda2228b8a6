"""Cost-aware routing through a real proxy, Redis and echo upstreams: the ``auto`` model (a ModelRoute with
``spec.candidates``) serves the cheapest candidate of at least the tier asked for (``x-kubegate-quality``) whose worst
case fits the tenant's remaining budget, within its allowed models and regions; the served model is in
``x-kubegate-model``, the audit record and the report; a failing candidate falls back to the next one that fits, in
region; nothing fitting is refused with a code naming the fix.

Prices (output only, USD per token): mini 0.0001, mid 0.002, big 0.004. Requests ask ``max_tokens=10``, so the worst
cases are 0.001, 0.02 and 0.04 USD; the echo answers with 2 completion tokens. ``mini`` has no EU deployment.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import wait_for_records
from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import UPSTREAM_KEY, cr, echo_route, render_proxy

GW = "costly"
STREAM = GatewayKeys("default", GW).audit_stream
EU, US = "eu-west-1", "us-east-1"
AUTO = [{"model": "mini", "tier": 1}, {"model": "mid", "tier": 2}, {"model": "big", "tier": 3}]
# ``flaky`` is the cheapest and always fails (HTTP 500): its requests fall back to the next candidate that fits.
AUTO_F = [{"model": "flaky", "tier": 1}, {"model": "mini", "tier": 1}, {"model": "mid", "tier": 2}]
TENANTS: dict[str, dict] = {
    "rich": {},
    "tight": {},  # Budget: 0.015 USD, only mini's worst case fits
    "tok": {},  # Budget: 600 tokens, mini's worst case (no max_tokens: 1000 output tokens) does not fit
    "eu": {"allowedRegions": [EU]},
    "nomid": {"allowedModels": ["auto", "mini", "big"]},
}


def key(tenant: str) -> str:
    return f"sk-autoroute-{tenant}-0123456789"


def _two_region_route(model: str, base: str, price: str, regions: list[str], **spec) -> dict:
    deployments = [
        {
            "name": region,
            "model": f"{model}-echo",
            "apiBase": base,
            "apiKeySecretRef": UPSTREAM_KEY,
            "region": region,
            "inputCostPerToken": "0",
            "outputCostPerToken": price,
        }
        for region in regions
    ]
    return cr(
        "ModelRoute", model, {"gateway": GW, "modelName": model, "numRetries": 0, "deployments": deployments, **spec}
    )


@pytest.fixture(scope="module")
def stack(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    base = echo_upstream.base_url
    objects = [
        cr("LLMGateway", GW, {}),
        _two_region_route("mini", base, "0.0001", [US], maxOutputTokens=1000),
        _two_region_route("mid", base, "0.002", [EU, US], maxOutputTokens=200),
        _two_region_route("big", base, "0.004", [EU, US], maxOutputTokens=200),
        echo_route(
            GW, "flaky", echo_upstream.api_base(status=500), upstream_model="flaky-echo", output_price="0.00005"
        ),
        cr("ModelRoute", "auto", {"gateway": GW, "modelName": "auto", "candidates": AUTO}),
        cr("ModelRoute", "auto-f", {"gateway": GW, "modelName": "auto-f", "candidates": AUTO_F}),
        *(
            cr(
                "Tenant",
                t,
                {"gateway": GW, "allowedModels": ["auto", "auto-f", "mini", "mid", "big", "flaky"], **spec},
            )
            for t, spec in TENANTS.items()
        ),
        *(cr("Budget", f"{t}-b", {"tenant": t, "limitUSD": "100"}) for t in ("rich", "eu", "nomid")),
        cr("Budget", "tight-b", {"tenant": "tight", "limitUSD": "0.015"}),
        cr("Budget", "tok-b", {"tenant": "tok", "limitTokens": 600}),
    ]
    rendered = render_proxy(objects, keys={t: key(t) for t in TENANTS})
    env = {**rendered.env, "INITIAL_RETRY_DELAY": "0", "JITTER": "0"}
    proxy = ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env=env).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def ask(
    proxy: ProxyServer, tenant: str, quality: str | None = None, model: str = "auto", max_tokens: int | None = 10
) -> httpx.Response:
    body: dict = {"model": model, "messages": [{"role": "user", "content": "abcdefgh"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    headers = {"authorization": f"Bearer {key(tenant)}"}
    if quality is not None:
        headers["x-kubegate-quality"] = quality
    return httpx.post(proxy.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


def upstream_model(echo: EchoServer) -> str:
    """The upstream model name of the last request an echo deployment answered."""
    return [r for r in echo.received() if "/status/" not in r["path"]][-1]["body"]["model"]


def record(redis_server, request_id: str) -> dict:
    client = redis.Redis.from_url(redis_server.url)
    try:
        for _ in range(3):
            found = [r for r in wait_for_records(client, 1, STREAM) if r["request_id"] == request_id]
            if found:
                return found[0]
            wait_for_records(client, len(client.xrange(STREAM)) + 1, STREAM, timeout=3)
        raise AssertionError(f"no audit record for {request_id}")
    finally:
        client.close()


def test_each_tier_gets_its_cheapest_candidate(stack, echo_upstream, redis_server):
    for quality, served in [(None, "mini"), ("1", "mini"), ("2", "mid"), ("3", "big")]:
        r = ask(stack, "rich", quality)
        assert r.status_code == 200, r.text
        assert r.headers["x-kubegate-model"] == served
        assert upstream_model(echo_upstream) == f"{served}-echo"
        rec = record(redis_server, r.headers["x-kubegate-request-id"])
        assert rec["requested_model"] == "auto" and rec["served_model"] == served
        assert rec["decisions"]["autoroute"] == {"quality": int(quality or 1), "model": served}
    # Not the tenant's models: mid is skipped for tier 2, big serves.
    r = ask(stack, "nomid", "2")
    assert r.status_code == 200 and r.headers["x-kubegate-model"] == "big"


def test_budget_decides_what_fits(stack, echo_upstream, redis_server):
    # 0.015 USD: mini's worst case (0.001) fits, mid's (0.02) does not.
    r = ask(stack, "tight", "1")
    assert r.status_code == 200 and r.headers["x-kubegate-model"] == "mini"
    r = ask(stack, "tight", "2")
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "no_candidate_fits"
    assert "mid" in error["message"] and "x-kubegate-quality" in error["message"] and "max_tokens" in error["message"]
    assert "x-kubegate-budget-remaining-usd" in r.headers and "retry-after" in r.headers
    rec = record(redis_server, r.headers["x-kubegate-request-id"])
    assert rec["status"] == "refused" and rec["decisions"]["refusal"] == "no_candidate_fits"
    # 600 tokens and no max_tokens: mini may answer 1000 tokens, mid at most 200: the pricier mid fits and serves.
    r = ask(stack, "tok", "1", max_tokens=None)
    assert r.status_code == 200, r.text
    assert r.headers["x-kubegate-model"] == "mid" and upstream_model(echo_upstream) == "mid-echo"


def test_residency_never_leaves_the_region(stack, echo_upstream):
    # mini (cheapest) has no EU deployment: the EU tenant gets mid, in eu-west-1.
    for quality, served in [("1", "mid"), ("3", "big")]:
        r = ask(stack, "eu", quality)
        assert r.status_code == 200, r.text
        assert r.headers["x-kubegate-model"] == served and r.headers["x-kubegate-region"] == EU
    # Through a failing candidate too: flaky fails, the fallback is mid in the EU, never mini (US only).
    echo_upstream.clear()
    r = ask(stack, "eu", "1", model="auto-f")
    assert r.status_code == 200, r.text
    assert r.headers["x-kubegate-model"] == "mid" and r.headers["x-kubegate-region"] == EU
    assert "mini-echo" not in [x["body"].get("model") for x in echo_upstream.received()]


def test_failing_candidate_falls_back_to_the_next(stack, echo_upstream, redis_server):
    r = ask(stack, "rich", "1", model="auto-f")
    assert r.status_code == 200, r.text
    assert r.headers["x-kubegate-model"] == "mini" and upstream_model(echo_upstream) == "mini-echo"
    rec = record(redis_server, r.headers["x-kubegate-request-id"])
    # The choice (flaky) and what served after it failed (mini).
    assert rec["decisions"]["autoroute"] == {"quality": 1, "model": "flaky"} and rec["served_model"] == "mini"


def test_refusals_name_the_fix(stack):
    r = ask(stack, "rich", "4")
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "no_candidate_allowed" and "allowedModels" in error["message"]
    for bad in ("0", "high", "11"):
        r = ask(stack, "rich", bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == "header.x-kubegate-quality", r.text
    r = ask(stack, "rich", "2", model="mid")
    assert r.status_code == 400 and "cost-routed" in r.json()["error"]["message"]


def test_usage_shows_the_models_auto_chose(stack, redis_server):
    """``kubegate usage``: each budget's spend this period by served model (run last: after the others' requests)."""
    import io

    from gateway_operator.report.usage import read_usage, to_terminal
    from rich.console import Console

    from gateway_plugins.policy.store import keys_of, policy_keys, publish_policy_sync
    from tests.harness.proxy import SIGNER

    client = redis.Redis.from_url(redis_server.url)
    try:
        assert publish_policy_sync(client, stack.policy, SIGNER)
        lines = {u.budget: u for u in read_usage(redis_server.url, GW, public_key=SIGNER.public_key_b64)}
        # rich: mini twice (tier 1 and no header) and once after flaky failed, mid once, big once; 2 tokens each.
        assert lines["rich-b"].by_model == pytest.approx({"big": 0.008, "mid": 0.004, "mini": 0.0006})
        assert set(lines["eu-b"].by_model) == {"mid", "big"}  # never mini: it has no EU deployment
        assert lines["tight-b"].by_model == pytest.approx({"mini": 0.0002})
        out = io.StringIO()
        to_terminal(list(lines.values()), f"default/{GW}", Console(file=out, width=80))
        text = out.getvalue()
        assert "by served model" in text and "rich-b" in text and "mini" in text
    finally:
        client.delete(*policy_keys(keys_of(stack.policy))[:2])
        client.close()


def test_streams_and_messages_name_the_served_model(stack, echo_upstream):
    body = {"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "abcdefgh"}]}
    headers = {"authorization": f"Bearer {key('rich')}", "x-kubegate-quality": "2"}
    with httpx.stream(
        "POST", stack.base_url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers, timeout=60
    ) as r:
        text = "".join(r.iter_text())
        assert r.status_code == 200 and r.headers["x-kubegate-model"] == "mid", text
    assert upstream_model(echo_upstream) == "mid-echo"
    r = httpx.post(stack.base_url + "/v1/messages", json=body, headers=headers, timeout=60)
    assert r.status_code == 200 and r.headers["x-kubegate-model"] == "mid", r.text
