"""Builders: children of a Gateway as plain dicts (no cluster)."""

from __future__ import annotations

import base64
import gzip
import json
import secrets

import yaml
from gateway_operator.builders.configmaps import POLICY_KEY, build_policy_configmap
from gateway_operator.builders.gateway import build_children
from gateway_operator.builders.proxy import CHECKSUM_ANNOTATION
from gateway_operator.builders.secrets import KEY_FIELD, build_tenant_key_secret, new_tenant_key
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway

from gateway_plugins.policy import hash_key, parse_policy

UID = "0f0e0d0c-0000-4000-8000-000000000001"


def _gateway(spec: dict | None = None) -> dict:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": "Gateway",
        "metadata": {"name": "main", "namespace": "ns", "uid": UID},
        "spec": spec or {},
    }


def _route() -> crd.ModelRoute:
    return crd.ModelRoute.model_validate(
        {
            "metadata": {"name": "r"},
            "spec": {
                "gateway": "main",
                "modelName": "m",
                "deployments": [
                    {"name": "a", "model": "x", "region": "eu-west-1", "apiKeySecretRef": {"name": "up", "key": "k"}}
                ],
            },
        }
    )


def _children(spec: dict | None = None) -> dict[str, dict]:
    gw = _gateway(spec)
    rendered = render_gateway(crd.Gateway.model_validate(gw), [_route()], [], [], tenant_key_hashes={}, revision=1)
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in build_children(gw, rendered)}


def test_every_child_is_owned_by_the_gateway():
    children = _children()
    assert set(children) >= {
        "Deployment/main-proxy",
        "Service/main",
        "ConfigMap/main-litellm-config",
        "ConfigMap/main-policy",
        "HorizontalPodAutoscaler/main-proxy",
        "PodDisruptionBudget/main-proxy",
        "Deployment/main-redis",
        "Service/main-redis",
    }
    for child in children.values():
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == UID and ref["controller"] is True


def test_proxy_deployment_env_and_checksum():
    children = _children({"masterKeySecretRef": {"name": "mk", "key": "key"}, "autoscaling": {"enabled": False}})
    dep = children["Deployment/main-proxy"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"]["value"] == "True"
    assert env["LITELLM_MASTER_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mk", "key": "key"}
    api_vars = [e for e in env.values() if e["name"].startswith("KG_KEY_")]
    assert api_vars[0]["valueFrom"]["secretKeyRef"] == {"name": "up", "key": "k"}
    config = yaml.safe_load(children["ConfigMap/main-litellm-config"]["data"]["config.yaml"])
    assert config["model_list"][0]["litellm_params"]["api_key"] == f"os.environ/{api_vars[0]['name']}"
    assert len(dep["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]) == 64
    assert dep["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler/main-proxy" not in children


def test_external_redis_has_no_managed_redis():
    children = _children({"redis": {"mode": "external", "urlSecretRef": {"name": "r", "key": "url"}}})
    assert "Deployment/main-redis" not in children
    env = {e["name"]: e for e in children["Deployment/main-proxy"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBEGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "r"


def test_policy_of_1000_tenants_and_1000_budgets_fits_a_configmap():
    tenants = [
        crd.Tenant.model_validate(
            {
                "metadata": {"name": f"tenant-{i:04d}"},
                "spec": {"gateway": "main", "allowedModels": ["m"], "allowedRegions": ["eu-west-1"], "pii": {}},
            }
        )
        for i in range(1000)
    ]
    budgets = [
        crd.Budget.model_validate(
            {"metadata": {"name": f"budget-{i:04d}"}, "spec": {"tenant": f"tenant-{i:04d}", "limitUSD": "100"}}
        )
        for i in range(1000)
    ]
    keys = {t.metadata.name: [hash_key(secrets.token_hex(16))] for t in tenants}
    gw = _gateway()
    rendered = render_gateway(
        crd.Gateway.model_validate(gw), [_route()], tenants, budgets, tenant_key_hashes=keys, revision=9
    )
    cm = build_policy_configmap(gw, rendered.policy)
    blob = base64.b64decode(cm["binaryData"][POLICY_KEY])
    assert len(json.dumps(cm)) < 1024 * 1024
    policy = parse_policy(gzip.decompress(blob))
    assert len(policy.tenants) == 1000 and len(policy.budgets) == 1000
    # Same policy, same bytes: an unchanged reconcile has nothing to write.
    assert build_policy_configmap(gw, rendered.policy) == cm


def test_tenant_key_secret_holds_the_key_and_is_owned_by_the_tenant():
    tenant = {
        "apiVersion": crd.API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": "t", "namespace": "ns", "uid": UID},
        "spec": {"gateway": "main"},
    }
    key = new_tenant_key()
    assert key != new_tenant_key()
    secret = build_tenant_key_secret(tenant, key)
    assert base64.b64decode(secret["data"][KEY_FIELD]).decode() == key
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Tenant"
