"""Every route LiteLLM registers, taken from its own app, swept with no key, a wrong key and a tenant key.

Only the contract's routes answer a tenant key; probes answer anyone; everything else (admin API,
provider-native and pass-through routes such as Gemini's ``:generateContent``, files, batches, UI,
``/metrics``) refuses: 401 without a valid key, 403 (405 for a wrong method on a contract path) with a
tenant key. Each refused or served request with a tenant key leaves exactly one audit record; those without a
valid key are counted, exactly, in the summary records (#23: a flood must not evict tenants' records).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway_plugins.contract.routes import MODEL, PROBE_ROUTES, is_tenant_path, tenant_endpoint
from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import GW, KEYS, render
from tests.harness.proxy import ProxyServer

# This process imports LiteLLM's proxy app to read its route table: never let it fetch a price map.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
STREAM = GatewayKeys("default", GW).audit_stream
WINDOW = 2.0  # the proxy's summary window for refusals without a valid key
BODIES = {
    "/v1/chat/completions": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    "/chat/completions": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "echo", "prompt": "hi"},
    "/completions": {"model": "echo", "prompt": "hi"},
    "/v1/embeddings": {"model": "echo", "input": "hi"},
    "/embeddings": {"model": "echo", "input": "hi"},
    "/v1/responses": {"model": "echo", "input": "hi"},
    "/responses": {"model": "echo", "input": "hi"},
    "/v1/messages": {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages/count_tokens": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
}


def litellm_routes() -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(method, path) of every HTTP route, the mount prefixes and the websocket paths of LiteLLM's app."""
    from fastapi.routing import _iter_included_route_candidates  # flattens FastAPI's included routers
    from litellm.proxy.proxy_server import app
    from starlette.routing import Mount, WebSocketRoute

    pairs, mounts, sockets = set(), [], []
    for route in _iter_included_route_candidates(app.routes):
        if isinstance(route, Mount):
            mounts.append(route.path)
        elif isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
            sockets.append(route.path)
        else:
            for method in getattr(route, "methods", None) or ():
                pairs.add((method, route.path))
    # The OpenAPI document is a second view of the same table: nothing in it may be missing above.
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                pairs.add((method.upper(), path))
    return sorted(pairs), mounts, sockets


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    s = render(echo_upstream.base_url)
    env = {**s.env, "KUBEGATE_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS": str(WINDOW)}
    p = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=env).start()
    yield p
    p.stop()


def test_every_registered_route_refuses_all_but_the_contract(proxy, redis_server):
    pairs, mounts, _ = litellm_routes()
    assert len(pairs) > 300, "the sweep must see LiteLLM's whole route table"
    assert ("POST", "/models/{model_name:path}:generateContent") in pairs
    targets = [(m, concrete(p)) for m, p in pairs] + [("GET", m.rstrip("/") + "/x") for m in mounts]
    targets += [("GET", "/metrics"), ("POST", "/v1/responses"), ("POST", "/v1/messages")]
    time.sleep(WINDOW + 1)  # the summary of anonymous requests made before this test is written first
    rds = redis_server.client()
    last = rds.xrevrange(STREAM, count=1)
    after_id = b"(" + last[0][0] if last else b"-"
    audited = anonymous = 0
    wrong = []
    with httpx.Client(base_url=proxy.base_url, timeout=30) as http:
        for method, path in targets:
            for who, key in (("none", None), ("wrong", "sk-not-a-key"), ("tenant", KEYS["plain"])):
                headers = {"authorization": f"Bearer {key}"} if key else {}
                body = BODIES.get(path) if method == "POST" else None
                resp = http.request(method, path, headers=headers, json=body)
                if path in PROBE_ROUTES:
                    continue
                if who == "tenant":
                    audited += 1
                else:
                    anonymous += 1
                endpoint = tenant_endpoint(method, path)
                if endpoint is MODEL and who == "tenant":
                    # ``GET /v1/models/{model}`` of a model that is not the tenant's: OpenAI's 404
                    ok = resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
                elif endpoint is not None and who == "tenant":
                    ok = resp.status_code == 200
                elif who != "tenant":
                    ok = resp.status_code == 401
                else:
                    expected = 405 if is_tenant_path(path) else 403
                    ok = resp.status_code == expected and (
                        method == "HEAD"  # no body in a HEAD response
                        or resp.json()["error"]["code"] in ("route_not_allowed", "method_not_allowed")
                    )
                if not ok:
                    wrong.append((who, method, path, resp.status_code))
    assert not wrong, wrong[:20]

    def records() -> list[dict]:
        return [json.loads(f[b"r"]) for _, f in rds.xrange(STREAM, min=after_id)]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = records()
        summarised = sum(r["decisions"]["summary"]["total"] for r in got if r["status"] == "summary")
        if summarised >= anonymous and sum(r["tenant"] != "unauthenticated" for r in got) >= audited:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # and nothing more arrives
    got = records()
    assert sum(r["tenant"] != "unauthenticated" for r in got) == audited  # exactly one record each
    summaries = [r["decisions"]["summary"] for r in got if r["status"] == "summary"]
    assert sum(s["total"] for s in summaries) == anonymous  # every anonymous refusal counted exactly once
    samples = [r for r in got if r["tenant"] == "unauthenticated" and r["status"] != "summary"]
    assert 0 < len(samples) <= 2 * len(summaries)  # missing and invalid key, from loopback: <= 2 per window


def test_websocket_routes_refuse_tenant_keys(proxy):
    _, _, sockets = litellm_routes()
    assert sockets, "LiteLLM registers realtime websocket routes"
    for path in sockets:
        resp = httpx.get(
            proxy.base_url + concrete(path),
            headers={
                "authorization": f"Bearer {KEYS['plain']}",
                "connection": "upgrade",
                "upgrade": "websocket",
                "sec-websocket-version": "13",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            timeout=10,
        )
        assert resp.status_code in (403, 404), (path, resp.status_code)
        assert resp.status_code != 101
