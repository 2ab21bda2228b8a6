"""``spec.masterKeySecretRef`` end to end: the environment the operator builds for the proxy Deployment, given to a
real proxy, opens LiteLLM's admin routes to that key and to nothing else.

The proxy's env is taken from the built Deployment (tests/harness/rendered.py: Secret references resolved the way
the kubelet would), so a builder that drops or renames a variable fails here, not in a cluster.
"""

from __future__ import annotations

import hashlib

import openai
import pytest

from tests.harness.rendered import UPSTREAM_KEY, cr, render_proxy

MASTER = "sk-admin-0123456789abcdef0123456789"
TENANT_KEY = "kg-team-0123456789abcdef"


@pytest.fixture(scope="module")
def proxy(echo_upstream, redis_server):
    from tests.harness.proxy import ProxyServer

    objects = [
        cr("LLMGateway", "main", {"masterKeySecretRef": {"name": "admin", "key": "key"}}),
        cr(
            "ModelRoute",
            "echo",
            {
                "gateway": "main",
                "modelName": "echo-model",
                "deployments": [
                    {
                        "name": "a",
                        "model": "echo",
                        "region": "eu-west-1",
                        "apiBase": echo_upstream.base_url,
                        "apiKeySecretRef": UPSTREAM_KEY,
                    }
                ],
                "free": True,
            },
        ),
        cr("Tenant", "team", {"gateway": "main", "allowedModels": ["*"]}),
    ]
    s = render_proxy(
        objects,
        keys={"team": TENANT_KEY},
        secrets={("admin", "key"): MASTER},
        master_key_sha256=hashlib.sha256(MASTER.encode()).hexdigest(),
    )
    assert {"KUBEGATE_MASTER_KEY_SHA256", "LITELLM_MASTER_KEY"} <= set(s.env)
    server = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
    try:
        yield server
    finally:
        server.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_master_key_opens_an_admin_route(proxy):
    resp = proxy.get("/model/info", headers=_bearer(MASTER))
    assert resp.status_code == 200, resp.text
    assert "echo-model" in {m["model_name"] for m in resp.json()["data"]}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_api_key"),
        (_bearer(MASTER + "x"), 401, "invalid_api_key"),
        (_bearer(TENANT_KEY), 403, "route_not_allowed"),
    ],
    ids=["no-key", "near-miss-key", "tenant-key"],
)
def test_admin_route_stays_closed_to_anything_else(proxy, headers, status, code):
    resp = proxy.get("/model/info", headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


def test_master_key_is_not_a_tenant_key(proxy):
    # The admin key opens LiteLLM's admin API, never a tenant route: no request escapes budget, residency or PII.
    admin = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=MASTER, max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError):
        admin.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "hi"}])
    team = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=60)
    assert team.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "hi"}]).choices
