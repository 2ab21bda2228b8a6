"""Each KubegateHooks hook really runs inside the real LiteLLM proxy: one observable effect per hook.

One proxy for the module, rendered from CR objects (start-up dominates runtime), and one with a hand-made config for
the filter hook alone. Effects checked:
* ``async_pre_call_hook``: disallowed model refused (the front door answers 404 first); PII masked before the upstream sees it.
* ``async_filter_deployments``: a group whose out-of-region deployment carries 100x the weight still
  serves every call in-region (routing alone cannot do that: the group holds both).
* ``async_post_call_success_hook`` / ``async_post_call_streaming_iterator_hook``: a restore tenant gets
  the original e-mail back, non-streaming and streaming, while the upstream saw only the placeholder.
* ``async_post_call_response_headers_hook``: ``x-kubegate-request-id`` and ``x-kubegate-region``.
* ``async_log_success_event``: audit record ``success`` with deployment, region and tokens.
* ``async_post_call_failure_hook``: upstream 500 -> audit record ``upstream_error`` with http_status 500.
* ``async_log_failure_event``: that record also names the deployment that failed (only the log event
  carries it).
* metrics: ``kubegate_requests_total`` series for outcomes success, refused, upstream_error.
"""

from __future__ import annotations

import json
import re
import time

import openai
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import DeploymentMeta, KeyRef, ModelMeta, Policy, Tenant, hash_key
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import UPSTREAM_KEY, cr, echo_route, render_proxy

KEY = "sk-each-hook-plain-0123456789"
RESTORE_KEY = "sk-each-hook-restore-0123456789"
EMAIL = "jane.roe@example.org"
GATEWAY = "eachhook"
STREAM = GatewayKeys("default", GATEWAY).audit_stream
EU = ["eu-west-1"]
# What the renderer names deployment ``eu`` of ModelRoute ``echo`` in its regional group (the tenants' only region).
EU_DEPLOYMENT = "echo/eu@eu-west-1"


def _started(server: ProxyServer):
    try:
        yield server.start()
    except BaseException:
        print(server.logs())
        raise
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(echo_upstream, redis_server):
    """The Gateway rendered from CR objects: ``echo-model`` (eu-west-1 with weight 1, us-east-1 with weight 100)
    and ``other-model``; both tenants may use ``echo-model`` in eu-west-1 only."""
    echo = {"model": "echo", "apiBase": echo_upstream.base_url, "apiKeySecretRef": UPSTREAM_KEY}
    route = {
        "gateway": GATEWAY,
        "modelName": "echo-model",
        "free": True,
        "numRetries": 0,
        "deployments": [
            {"name": "eu", "region": "eu-west-1", "weight": 1, **echo},
            {"name": "us", "region": "us-east-1", "weight": 100, **echo},
        ],
    }
    tenant = {"gateway": GATEWAY, "allowedModels": ["echo-model"], "allowedRegions": ["eu-west-1"]}
    rendered = render_proxy(
        [
            cr("LLMGateway", GATEWAY, {}),
            cr("ModelRoute", "echo", route),
            echo_route(GATEWAY, "other-model", echo_upstream.base_url),
            cr("Tenant", "plain", tenant),
            cr("Tenant", "restore", {**tenant, "pii": {"entities": {"EMAIL_ADDRESS": "mask"}, "restore": True}}),
        ],
        keys={"plain": KEY, "restore": RESTORE_KEY},
    )
    yield from _started(ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env))


@pytest.fixture(scope="module")
def mixed_proxy(echo_upstream, redis_server):
    def deployment(dep_id: str, weight: int) -> dict:
        return {
            "model_name": "echo-mixed",
            "litellm_params": {
                "model": "openai/echo",
                "api_base": echo_upstream.base_url,
                "api_key": "up",
                "weight": weight,
            },
            "model_info": {"id": dep_id},
        }

    # Hand-made on purpose, not rendered: a regional group that also holds an out-of-region deployment (the renderer
    # never makes one), so that async_filter_deployments itself, not routing, must keep every call in region.
    config = {"model_list": [deployment("echo-eu", 1), deployment("echo-us", 100)]}
    policy = Policy(
        gateway="eachhook-mixed",
        revision=1,
        tenants=[
            Tenant(id="plain", keys=[KeyRef(sha256=hash_key(KEY))], allowed_models=["echo-model"], allowed_regions=EU),
        ],
        models=[ModelMeta(name="echo-model", regional_groups={"eu-west-1": "echo-mixed"})],
        deployments=[
            DeploymentMeta(id="echo-eu", model="echo-model", region="eu-west-1"),
            DeploymentMeta(id="echo-us", model="echo-model", region="us-east-1"),
        ],
    )
    yield from _started(ProxyServer(config, policy, redis_url=redis_server.url))


def _records(redis_server, request_id: str, timeout: float = 15.0) -> list[dict]:
    client = redis_server.client()
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = [
            json.loads(f[b"r"]) for _, f in client.xrange(STREAM) if json.loads(f[b"r"])["request_id"] == request_id
        ]
        if found:
            break
        time.sleep(0.1)
    return found


def test_pre_call_refuses_disallowed_model(proxy, openai_client):
    # The front door answers first, as OpenAI does for a model the key cannot see; the hook is the second line.
    with pytest.raises(openai.NotFoundError) as exc:
        openai_client(proxy, KEY).chat.completions.create(
            model="other-model", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 404 and exc.value.body["code"] == "model_not_found"


def test_filter_deployments_keeps_every_call_in_region(mixed_proxy, openai_client):
    client = openai_client(mixed_proxy, KEY)
    regions = set()
    for i in range(8):
        raw = client.chat.completions.with_raw_response.create(
            model="echo-model", messages=[{"role": "user", "content": f"where {i}"}]
        )
        regions.add(raw.headers.get("x-kubegate-region"))
    assert regions == {"eu-west-1"}


def test_success_hook_restores_and_headers_hook_and_log_success(proxy, openai_client, echo_upstream, redis_server):
    echo_upstream.clear()
    raw = openai_client(proxy, RESTORE_KEY).chat.completions.with_raw_response.create(
        model="echo-model", messages=[{"role": "user", "content": f"write to {EMAIL}"}]
    )
    assert raw.parse().choices[0].message.content == f"write to {EMAIL}"  # post_call_success restored it
    saw = json.dumps([r["body"] for r in echo_upstream.received()])
    assert EMAIL not in saw and "<EMAIL_ADDRESS_1>" in saw  # pre_call masked it
    request_id = raw.headers.get("x-kubegate-request-id")  # response-headers hook
    assert request_id and raw.headers.get("x-kubegate-region") == "eu-west-1"
    [record] = _records(redis_server, request_id)  # log_success_event finalized it
    assert record["status"] == "success" and record["http_status"] == 200
    assert record["deployment_id"] == EU_DEPLOYMENT and record["region"] == "eu-west-1"
    assert record["prompt_tokens"] > 0 and record["completion_tokens"] > 0
    assert record["pii_counts"].get("EMAIL_ADDRESS") == 1


def test_streaming_iterator_hook_restores(proxy, openai_client, echo_upstream):
    echo_upstream.clear()
    chunks = openai_client(proxy, RESTORE_KEY).chat.completions.create(
        model="echo-model", messages=[{"role": "user", "content": f"stream to {EMAIL} now"}], stream=True
    )
    assert "".join((c.choices[0].delta.content or "") for c in chunks if c.choices) == f"stream to {EMAIL} now"
    assert EMAIL not in json.dumps([r["body"] for r in echo_upstream.received()])


def test_failure_hook_and_log_failure_event(proxy, openai_client, echo_upstream, redis_server):
    echo_upstream.fail_next(500, count=10)
    try:
        with pytest.raises(openai.APIStatusError) as exc:
            openai_client(proxy, KEY).chat.completions.create(
                model="echo-model", messages=[{"role": "user", "content": "fail me"}]
            )
    finally:
        echo_upstream.fail_next(500, count=0)
    assert exc.value.status_code == 500
    client = redis_server.client()
    deadline = time.monotonic() + 15
    failed: list[dict] = []
    while time.monotonic() < deadline and not failed:
        failed = [json.loads(f[b"r"]) for _, f in client.xrange(STREAM)]
        failed = [r for r in failed if r["status"] == "upstream_error" and r["tenant"] == "plain"]
        time.sleep(0.1)
    assert len(failed) == 1, failed
    assert failed[0]["http_status"] == 500
    assert failed[0]["deployment_id"] == EU_DEPLOYMENT


def test_metrics_per_outcome(proxy):
    text = proxy.metrics()
    outcomes = set(re.findall(r'kubegate_requests_total\{[^}]*outcome="([a-z_]+)"', text))
    assert {"success", "refused", "upstream_error"} <= outcomes, outcomes
