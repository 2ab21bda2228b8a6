"""``spec.masterKeySecretRef`` end to end: the environment the operator builds for the proxy Deployment, given to a
real proxy, opens LiteLLM's admin routes to that key and to nothing else.

The Deployment's env is taken from ``build_children`` (plain values as rendered, Secret references resolved the way
the kubelet would), so a builder that drops or renames a variable fails here, not in a cluster.
"""

from __future__ import annotations

import hashlib

import openai
import pytest
from gateway_operator.builders.gateway import build_children
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway

from gateway_plugins.policy.schema import KeyRef, hash_key
from tests.harness.proxy import SIGNER

MASTER = "sk-admin-0123456789abcdef0123456789"
TENANT_KEY = "kg-team-0123456789abcdef"
SECRETS = {("admin", "key"): MASTER}


def _gateway() -> dict:
    return {
        "apiVersion": "kubegate.dev/v1alpha1",
        "kind": "LLMGateway",
        "metadata": {"name": "main", "namespace": "default", "uid": "u"},
        "spec": {"masterKeySecretRef": {"name": "admin", "key": "key"}},
    }


def _proxy_env(gateway: dict, rendered) -> dict[str, str]:
    """The proxy container's env as the kubelet would resolve it: only the master-key variables are taken, the
    rest (Redis, audit key, policy file paths) is the harness's local equivalent."""
    children = build_children(gateway, rendered, SIGNER, master_key_sha256=hashlib.sha256(MASTER.encode()).hexdigest())
    (deployment,) = [c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"].endswith("proxy")]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "proxy"]
    env: dict[str, str] = {}
    for var in container["env"]:
        if var["name"] not in ("KUBEGATE_MASTER_KEY_SHA256", "LITELLM_MASTER_KEY"):
            continue
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = SECRETS[(ref["name"], ref["key"])]
    return env


@pytest.fixture(scope="module")
def proxy(echo_upstream, redis_server):
    from tests.harness.proxy import ProxyServer

    gw = _gateway()
    route = crd.ModelRoute.model_validate(
        {
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {
                "gateway": "main",
                "modelName": "echo-model",
                "deployments": [
                    {"name": "a", "model": "echo", "region": "eu-west-1", "apiBase": echo_upstream.base_url}
                ],
                "free": True,
            },
        }
    )
    tenant = crd.Tenant.model_validate(
        {"metadata": {"name": "team", "namespace": "default"}, "spec": {"gateway": "main", "allowedModels": ["*"]}}
    )
    rendered = render_gateway(
        crd.LLMGateway.model_validate(gw),
        [route],
        [tenant],
        [],
        tenant_key_hashes={"team": [KeyRef(sha256=hash_key(TENANT_KEY))]},
        revision=1,
    )
    for deployment in rendered.litellm_config["model_list"]:
        deployment["litellm_params"]["api_key"] = "x"
    env = _proxy_env(gw, rendered)
    assert set(env) == {"KUBEGATE_MASTER_KEY_SHA256", "LITELLM_MASTER_KEY"}
    server = ProxyServer(rendered.litellm_config, rendered.policy, redis_url=redis_server.url, env=env).start()
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
        ({}, 401, "invalid_api_key"),
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
