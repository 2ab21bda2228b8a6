"""Tenant lifecycle: a suspended Tenant, or one whose trial ended, is refused on every route with 403
``tenant_suspended`` (OpenAI's or Anthropic's error shape), audited, on every replica once the policy changes; its
keys still authenticate, so resuming needs no new key."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import redis

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.store import keys_of, policy_keys, publish_policy_sync
from tests.dataplane.contract_stack import audit_records
from tests.harness.proxy import SIGNER
from tests.harness.rendered import cr, echo_route, render_proxy

KEY = "sk-test-lifecycle-0123456789"
GW = "life"


def _inputs(echo, revision: int, **tenant_spec):
    objects = [
        cr("LLMGateway", GW, {}),
        echo_route(GW, "echo-model", echo.base_url),
        cr("Tenant", "trial", {"gateway": GW, "allowedModels": ["*"], **tenant_spec}),
    ]
    return render_proxy(objects, keys={"trial": KEY}, revision=revision)


def _ask(proxy, path: str = "/v1/chat/completions", method: str = "POST") -> httpx.Response:
    body = {"model": "echo-model", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    if method == "GET":
        return httpx.get(proxy.base_url + path, headers=headers, timeout=30)
    return httpx.post(proxy.base_url + path, json=body, headers=headers, timeout=30)


def _wait_for(proxies, status: int, since: float) -> None:
    for proxy in proxies:
        while _ask(proxy).status_code != status:
            # Generous bound (the design target is 2 s: pub/sub plus a 1 s revision poll).
            assert time.monotonic() - since < 10, proxy.logs()
            time.sleep(0.1)


def test_suspending_and_resuming_reaches_every_replica(make_proxy, echo_upstream, redis_server):
    active = _inputs(echo_upstream, 1)
    proxies = [make_proxy(active.config, active.policy, redis_url=redis_server.url, env=active.env) for _ in range(2)]
    client = redis.Redis.from_url(redis_server.url)
    try:
        for proxy in proxies:
            assert _ask(proxy).status_code == 200
        assert publish_policy_sync(client, _inputs(echo_upstream, 2, suspended=True).policy, SIGNER)
        _wait_for(proxies, 403, time.monotonic())

        for path, method, shape in [
            ("/v1/chat/completions", "POST", "openai"),
            ("/v1/messages", "POST", "anthropic"),
            ("/v1/models", "GET", "openai"),
        ]:
            resp = _ask(proxies[0], path, method)
            assert resp.status_code == 403, (path, resp.text)
            body = resp.json()
            assert body["error"]["code"] == "tenant_suspended"
            assert "suspended" in body["error"]["message"]
            assert (body.get("type") == "error") == (shape == "anthropic")
            records = [r for r in audit_records(client, GatewayKeys("default", GW).audit_stream)]
            deadline = time.monotonic() + 10
            request_id = resp.headers["x-kubegate-request-id"]
            while not any(r["request_id"] == request_id for r in records) and time.monotonic() < deadline:
                time.sleep(0.1)
                records = audit_records(client, GatewayKeys("default", GW).audit_stream)
            (record,) = [r for r in records if r["request_id"] == request_id]
            assert record["status"] == "refused" and record["tenant"] == "trial"
            assert record["decisions"]["refusal"] == "tenant_suspended"
            assert record["decisions"]["tenant"] == "suspended"

        assert publish_policy_sync(client, _inputs(echo_upstream, 3, suspended=False).policy, SIGNER)
        _wait_for(proxies, 200, time.monotonic())  # the same key works again
    finally:
        client.delete(*policy_keys(keys_of(active.policy))[:2])


def test_a_trial_ends_at_its_expiry_without_a_policy_change(make_proxy, echo_upstream, redis_server):
    active = _inputs(echo_upstream, 1)
    proxy = make_proxy(active.config, active.policy, redis_url=redis_server.url, env=active.env)
    client = redis.Redis.from_url(redis_server.url)
    try:
        # The trial (ending in 6 s) reaches the proxy; from then on nothing changes but the time.
        ends = datetime.now(UTC) + timedelta(seconds=6)
        assert publish_policy_sync(client, _inputs(echo_upstream, 2, expiresAt=ends.isoformat()).policy, SIGNER)
        time.sleep(4)
        assert _ask(proxy).status_code == 200  # still on trial
        while (resp := _ask(proxy)).status_code == 200:
            assert datetime.now(UTC) < ends + timedelta(seconds=10), proxy.logs()
            time.sleep(0.2)
        assert datetime.now(UTC) >= ends, "refused before the trial ended"
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "tenant_suspended"
        assert "trial" in resp.json()["error"]["message"]
    finally:
        client.delete(*policy_keys(keys_of(active.policy))[:2])


def test_usage_shows_a_suspended_tenant_and_an_ended_trial(echo_upstream, redis_server):
    from gateway_operator.report.usage import read_usage

    objects = [
        cr("LLMGateway", "usage-life", {}),
        echo_route("usage-life", "echo-model", echo_upstream.base_url),
        cr("Tenant", "paused", {"gateway": "usage-life", "allowedModels": ["*"], "suspended": True}),
        cr("Tenant", "ended", {"gateway": "usage-life", "allowedModels": ["*"], "expiresAt": "2020-01-01T00:00:00Z"}),
        cr("Tenant", "trying", {"gateway": "usage-life", "allowedModels": ["*"], "expiresAt": "2099-01-01T00:00:00Z"}),
        cr("Budget", "paused-b", {"tenant": "paused", "limitUSD": "5"}),
    ]
    policy = render_proxy(objects, keys={}, revision=1).policy
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert publish_policy_sync(client, policy, SIGNER)
        lines = read_usage(redis_server.url, "usage-life", public_key=SIGNER.public_key_b64)
        assert {u.tenant: u.state for u in lines} == {"paused": "suspended", "ended": "expired", "trying": "no budget"}
    finally:
        client.delete(*policy_keys(keys_of(policy))[:2])
