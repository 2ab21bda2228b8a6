"""One contract: every CR field changes what the operator renders (LiteLLM config, policy or child manifests).

The fields are walked from the pydantic models, so a field added without a mutation here fails the first test, and
a field whose mutation leaves every rendered byte unchanged (a dead field) fails the second.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from typing import Any

import pytest
from gateway_operator.builders.gateway import build_children
from gateway_operator.crd import models as crd
from gateway_operator.crd.core import CoreV1
from gateway_operator.render import render_gateway
from gateway_operator.render.plans import apply_plans
from pydantic import BaseModel

from gateway_plugins.policy.signing import PolicySigner

SECRET = {"name": "up", "key": "k"}
SIGNER = PolicySigner.generate()


def _base() -> dict[str, dict[str, Any]]:
    dep = {"name": "a", "model": "gpt-4o", "region": "eu-west-1", "apiKeySecretRef": dict(SECRET)}
    return {
        "LLMGateway": {
            "masterKeySecretRef": {"name": "mk", "key": "key"},
            "pod": {"env": [{"name": "EXTRA", "value": "1"}], "volumes": [{"name": "ca", "emptyDir": {}}]},
            "tracing": {
                "otlpEndpoint": "http://collector.observability:4318",
                "headersSecretRef": {"name": "otel", "key": "headers"},
            },
            "volumeDiscounts": [{"fromUSD": "1000", "percent": "5"}],
        },
        "ModelRoute": {"gateway": "main", "modelName": "gpt", "deployments": [dep], "free": True},
        "Tenant": {"gateway": "main", "allowedModels": ["gpt"], "pii": {}, "cache": {}},
        "Budget": {"tenant": "team", "limitUSD": "5", "thresholds": [{"percent": 100, "action": "block"}]},
        # Tenant "planned" (gateway and plan only) takes all of it; Tenant "team" none (it names no plan).
        "TenantPlan": {
            "allowedModels": ["gpt"],
            "pii": {},
            "cache": {},
            "budget": {"limitUSD": "5", "thresholds": [{"percent": 100, "action": "block"}]},
        },
    }


EXTERNAL_WITH_PASSWORD = {
    "mode": "external",
    "urlSecretRef": {"name": "r", "key": "u"},
    "passwordSecretRef": {"name": "p", "key": "k"},
}
SENTINEL = {
    "mode": "external",
    "topology": "sentinel",
    "sentinel": {"addresses": ["s0.example:26379"], "masterName": "m"},
    "passwordSecretRef": {"name": "p", "key": "k"},
}
CLUSTER = {
    "mode": "external",
    "topology": "cluster",
    "cluster": {"nodes": ["c0.example:6379"]},
    "passwordSecretRef": {"name": "p", "key": "k"},
}

# Dotted alias path (list items as ``0``) -> a different valid value.
MUTATIONS: dict[str, dict[str, Any]] = {
    "LLMGateway": {
        "image": "registry.example/proxy:2",
        "replicas": 3,
        "autoscaling.enabled": False,
        "autoscaling.minReplicas": 3,
        "autoscaling.maxReplicas": 5,
        "autoscaling.targetCPUUtilization": 50,
        "resources.requests": {"cpu": "1"},
        "resources.limits": {"memory": "3Gi"},
        "workers": 2,
        "redis.mode": "external",
        "redis.urlSecretRef.name": "redis-url",
        "redis.urlSecretRef.key": "url",
        "redis.image": "redis:7.4-alpine",
        "masterKeySecretRef.name": "other",
        "masterKeySecretRef.key": "other",
        "serviceType": "LoadBalancer",
        "port": 8080,
        "piiModel": "en_core_web_lg",
        "networkPolicy.enabled": False,
        "networkPolicy.operatorNamespace": "ops",
        "redis.passwordSecretRef.name": "redis-pass",
        "redis.passwordSecretRef.key": "pw",
        "redis.usernameSecretRef.name": "redis-user2",
        "redis.usernameSecretRef.key": "user2",
        "redis.topology": "cluster",
        "redis.sentinel.addresses": ["s1.example:26379", "s2.example:26379"],
        "redis.sentinel.masterName": "other",
        "redis.sentinel.authenticateSentinels": True,
        "redis.sentinel.replicaAcks": 1,
        "redis.cluster.nodes": ["c1.example:6379", "c2.example:6379"],
        "redis.cluster.replicaAcks": 1,
        "redis.tls": True,
        "redis.persistence.enabled": False,
        "redis.persistence.size": "20Gi",
        "redis.resources.memory": "4Gi",
        "redis.resources.cpu": "2",
        "redis.persistence.storageClassName": "fast",
        "redis.highAvailability.replicas": 5,
        "redis.caSecretRef.name": "private-ca",
        "redis.caSecretRef.key": "bundle.pem",
        "redis.clientCertSecretRef.name": "proxy-client-cert",
        "redis.highAvailability.replicaAcks": 2,
        "audit.streamMaxLen": 5000,
        "audit.spoolMaxRecords": 500,
        "pod.env.0.name": "HTTPS_PROXY",
        "pod.env.0.value": "http://proxy.example:3128",
        "pod.env.0.valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
        "pod.envFrom": [{"configMapRef": {"name": "extra"}}],
        "pod.serviceAccountName": "llm-proxy",
        "pod.imagePullSecrets": ["regcred"],
        "pod.nodeSelector": {"pool": "llm"},
        "pod.tolerations": [{"key": "llm", "operator": "Exists", "effect": "NoSchedule"}],
        "pod.affinity": {"nodeAffinity": {}},
        "pod.topologySpreadConstraints": [],
        "pod.priorityClassName": "high",
        "pod.labels": {"team": "ml"},
        "pod.annotations": {"example.com/owner": "ml"},
        "pod.securityContext": {"fsGroup": 65532},
        "pod.containerSecurityContext": {"runAsUser": 1000700000},
        "pod.volumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
        "pod.volumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/certs/corp-ca.crt", "subPath": "ca.crt"}],
        "requestLimits.maxBodyBytes": 2048,
        "requestLimits.maxMessages": 5,
        "requestLimits.maxParts": 5,
        "requestLimits.maxStringChars": 100,
        "requestLimits.maxTools": 5,
        "requestLimits.maxN": 2,
        "requestLimits.maxJsonDepth": 8,
        "cache.ttlSeconds": 60,
        "cache.maxEntryBytes": 1024,
        "cache.maxTotalBytes": 1_048_576,
        "tracing.otlpEndpoint": "https://otlp.example/otel",
        "tracing.sampleRatio": 0.25,
        "tracing.headersSecretRef.name": "otel2",
        "tracing.headersSecretRef.key": "h2",
        "volumeDiscounts.0.fromUSD": "2000",
        "volumeDiscounts.0.percent": "7.5",
    },
    "ModelRoute": {
        "gateway": "other",
        "modelName": "gpt-2",
        "deployments.0.name": "b",
        "deployments.0.provider": "anthropic",
        "deployments.0.model": "gpt-4o-mini",
        "deployments.0.apiBase": "https://upstream.example",
        "deployments.0.apiKeySecretRef.name": "up2",
        "deployments.0.apiKeySecretRef.key": "k2",
        "deployments.0.region": "us-east-1",
        "deployments.0.weight": 3,
        "deployments.0.rpm": 10,
        "deployments.0.tpm": 1000,
        "deployments.0.inputCostPerToken": "0.000002",
        "deployments.0.outputCostPerToken": "0.000003",
        "deployments.0.azure.apiVersion": "2025-01-01-preview",
        "deployments.0.bedrock.region": "us-west-2",
        "deployments.0.bedrock.accessKeyIdSecretRef.name": "aws2",
        "deployments.0.bedrock.accessKeyIdSecretRef.key": "id2",
        "deployments.0.bedrock.secretAccessKeySecretRef.name": "aws3",
        "deployments.0.bedrock.secretAccessKeySecretRef.key": "secret3",
        "deployments.0.vertex.project": "other-project",
        "deployments.0.vertex.location": "us-central1",
        "deployments.0.vertex.credentialsSecretRef.name": "gcp2",
        "deployments.0.vertex.credentialsSecretRef.key": "json2",
        "routingStrategy": "least-busy",
        "free": False,
        "fallbacks": ["other-model"],
        "numRetries": 5,
        "timeoutSeconds": 30,
        "maxOutputTokens": 100,
        # On a cost-routed route (test_each_field_changes_the_render makes the base one for these).
        "candidates.0.model": "mini-model",
        "candidates.0.tier": 2,
    },
    "Tenant": {
        "gateway": "other",
        "allowedModels": ["*"],
        "allowedRegions": ["eu-west-1"],
        "rateLimits.rpm": 10,
        "rateLimits.tpm": 1000,
        "pii.entities": {"EMAIL_ADDRESS": "redact"},
        "pii.scoreThreshold": 0.8,
        "pii.language": "de",
        "pii.languages": ["en", "de"],
        "pii.allowList": ["ACME"],
        "pii.restore": True,
        "pii.failOpen": True,
        "pii.allowUninspectableContent": True,
        "pii.maxTextChars": 1000,
        "pii.timeoutMs": 500,
        "pii.nlpModel": "de_core_news_sm",
        "failOpen": True,
        "cache.enabled": False,
        "cache.ttlSeconds": 60,
        "cache.maxEntryBytes": 1024,
        "cache.allowNonZeroTemperature": True,
        "cache.allowTools": True,
        "cache.skipUserScoped": True,
        "hostedTools": ["web_search", "code_execution"],
        "suspended": True,
        "expiresAt": "2030-01-31T00:00:00Z",
        "plan": "basic",
    },
    "Budget": {
        "tenant": "nobody",
        "limitUSD": "6.5",
        "limitTokens": 1_000_000,
        "period": "daily",
        "timezone": "Europe/Berlin",
        "thresholds.0.percent": 90,
        "thresholds.0.action": "notify",
        "downgrade": {"gpt": "gpt-mini"},
        "failOpen": True,
    },
    "TenantPlan": {
        "allowedModels": ["*"],
        "allowedRegions": ["eu-west-1"],
        "rateLimits.rpm": 60,
        "rateLimits.tpm": 6000,
        "budget.limitUSD": "6.5",
        "budget.limitTokens": 1_000_000,
        "budget.period": "daily",
        "budget.timezone": "Europe/Berlin",
        "budget.thresholds.0.percent": 90,
        "budget.thresholds.0.action": "notify",
        "budget.downgrade": {"gpt": "gpt-mini"},
        "budget.failOpen": True,
    },
}

# A plan's PII and cache blocks are the Tenant's own types: the same mutations.
MUTATIONS["TenantPlan"].update({k: v for k, v in MUTATIONS["Tenant"].items() if k.startswith(("pii.", "cache."))})

# A provider block's fields are compared against the same provider with other values.
PROVIDER_BASES = [
    ("azure", "azure", {"apiVersion": "2024-10-21"}),
    (
        "bedrock",
        "bedrock",
        {
            "region": "eu-central-1",
            "accessKeyIdSecretRef": {"name": "a", "key": "i"},
            "secretAccessKeySecretRef": {"name": "a", "key": "s"},
        },
    ),
    (
        "vertex_ai",
        "vertex",
        {"project": "my-project", "location": "europe-west4", "credentialsSecretRef": {"name": "g", "key": "j"}},
    ),
]

# Fields the operator itself acts on rather than rendering for the proxies: each names the test that proves it works.
OPERATOR_SIDE: dict[str, dict[str, str]] = {
    "LLMGateway": {
        **{
            f"budgetWebhook.{f}": "tests/operator/test_notify_webhook.py"
            for f in ("url", "urlSecretRef.name", "urlSecretRef.key", "format", "secretRef.name", "secretRef.key")
        },
        # The operator exports the segments and moves the mark the proxies' trim respects.
        "audit.export.enabled": "tests/operator/test_operator_status.py (exports_segments)",
        # The operator keeps only these witnesses' valid cosignatures and reports the quorum in status.
        "audit.witnesses.keys": "tests/operator/test_operator_status.py (exports_segments)",
        "audit.witnesses.quorum": "tests/operator/test_operator_status.py (exports_segments)",
        # The operator uploads the segments to the bucket (credentials from the Secrets) and reports it in status.
        **{
            f"audit.export.s3.{f}": "tests/operator/test_operator_status.py (exports_segments_to_a_bucket)"
            for f in (
                "endpoint",
                "bucket",
                "region",
                "prefix",
                "pathStyle",
                "accessKeyIdSecretRef.name",
                "accessKeyIdSecretRef.key",
                "secretAccessKeySecretRef.name",
                "secretAccessKeySecretRef.key",
                "objectLock.mode",
                "objectLock.retentionDays",
            )
        },
        **{
            f"audit.export.s3.caSecretRef.{f}": "tests/operator/test_operator_status.py (exports_segments_to_a_bucket); "
            "tests/dataplane/test_audit_export_s3.py (a_private_ca)"
            for f in ("name", "key")
        },
    },
    "Tenant": {"keyRotationGracePeriod": "tests/operator/test_operator_status.py (rotation with a grace period)"},
    "Budget": {
        f"webhook.{f}": "tests/operator/test_notify_webhook.py"
        for f in ("url", "urlSecretRef.name", "urlSecretRef.key", "format", "secretRef.name", "secretRef.key")
    },
}

SPECS: dict[str, type[BaseModel]] = {
    "LLMGateway": crd.LLMGatewaySpec,
    "ModelRoute": crd.ModelRouteSpec,
    "Tenant": crd.TenantSpec,
    "Budget": crd.BudgetSpec,
    "TenantPlan": crd.TenantPlanSpec,
}


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the BaseModel inside ``annotation``, whether it is a list of it)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _model_of(args[0]) if len(args) == 1 else (None, False)
    if origin is list:
        inner, _ = _model_of(typing.get_args(annotation)[0])
        return inner, inner is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        inner, is_list = _model_of(info.annotation)
        # A core/v1 piece is copied whole into the pod template: one mutation of the whole; each of its fields
        # reaching the pod is tests/operator/test_pod_volumes.py's round trip.
        if inner is None or issubclass(inner, CoreV1):
            paths.append(path)
        else:
            paths.extend(leaf_paths(inner, path + (".0." if is_list else ".")))
    return paths


def _set(obj: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        obj = obj[int(part)] if isinstance(obj, list) else obj.setdefault(part, {})
    obj[parts[-1]] = value


def _render(specs: dict[str, dict]) -> str:
    def obj(kind: str, name: str) -> dict:
        return {
            "apiVersion": crd.API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "uid": "u"},
            "spec": specs[kind],
        }

    gw = obj("LLMGateway", "main")
    gateway = crd.LLMGateway.model_validate(gw)
    other = {
        "free": True,
        "gateway": "main",
        "modelName": "other-model",
        "deployments": [{"name": "o", "model": "x", "region": "eu-west-1"}],
    }
    mini = {**other, "modelName": "mini-model"}
    routes = [
        crd.ModelRoute.model_validate(obj("ModelRoute", "route")),
        crd.ModelRoute.model_validate({**obj("ModelRoute", "z-other"), "spec": other}),
        crd.ModelRoute.model_validate({**obj("ModelRoute", "z-mini"), "spec": mini}),
    ]
    planned = {**obj("Tenant", "planned"), "spec": {"gateway": "main", "plan": "basic"}}
    tenants = [crd.Tenant.model_validate(obj("Tenant", "team")), crd.Tenant.model_validate(planned)]
    tenants, plan_budgets, _ = apply_plans(tenants, [crd.TenantPlan.model_validate(obj("TenantPlan", "basic"))])
    budgets = [crd.Budget.model_validate(obj("Budget", "budget")), *plan_budgets]
    hashes = {"team": ["a" * 64], "planned": ["b" * 64]}
    rendered = render_gateway(gateway, routes, tenants, budgets, tenant_key_hashes=hashes, revision=1)
    children = build_children(gw, rendered, SIGNER, master_key_sha256="c" * 64)
    return json.dumps(
        {"policy": rendered.policy.model_dump(mode="json"), "config": rendered.litellm_config, "children": children},
        sort_keys=True,
        default=str,
    )


def test_every_field_has_a_mutation():
    for kind, model in SPECS.items():
        assert sorted(leaf_paths(model)) == sorted([*MUTATIONS[kind], *OPERATOR_SIDE.get(kind, {})]), kind


@pytest.mark.parametrize(("kind", "path"), [(k, p) for k, paths in MUTATIONS.items() for p in paths])
def test_each_field_changes_the_render(kind: str, path: str):
    base = _base()
    gateway = base["LLMGateway"]
    if path.startswith("redis.urlSecretRef"):
        # Only meaningful in external mode: one ref against another.
        gateway["redis"] = {"mode": "external", "urlSecretRef": {"name": "r", "key": "u"}}
    if path.startswith("redis.passwordSecretRef"):
        gateway["redis"] = {
            "mode": "external",
            "urlSecretRef": {"name": "r", "key": "u"},
            "passwordSecretRef": {"name": "p", "key": "k"},
        }
    if path.startswith("redis.usernameSecretRef"):
        gateway["redis"] = {**EXTERNAL_WITH_PASSWORD, "usernameSecretRef": {"name": "u", "key": "k"}}
    if path.startswith("redis.sentinel"):
        gateway["redis"] = copy.deepcopy(SENTINEL)
    if path.startswith(("redis.cluster", "redis.tls")):
        gateway["redis"] = copy.deepcopy(CLUSTER)
    if path == "redis.topology":
        gateway["redis"] = {"mode": "external", "urlSecretRef": {"name": "r", "key": "u"}}
    if path.startswith("redis.caSecretRef"):
        gateway["redis"] = {**EXTERNAL_WITH_PASSWORD, "caSecretRef": {"name": "ca", "key": "ca.crt"}}
    if path.startswith("redis.clientCertSecretRef"):
        gateway["redis"] = {**EXTERNAL_WITH_PASSWORD, "clientCertSecretRef": {"name": "client-cert"}}
    if path.startswith("redis.highAvailability"):
        gateway["redis"] = {"highAvailability": {}}
    if path.startswith("autoscaling.") and path != "autoscaling.enabled":
        gateway["autoscaling"] = {"enabled": True}
    if path == "replicas":
        gateway["autoscaling"] = {"enabled": False}
    dep = base["ModelRoute"]["deployments"][0]
    if path.startswith("candidates."):
        # A cost-routed route has candidates instead of deployments.
        base["ModelRoute"] = {
            "gateway": "main",
            "modelName": "auto",
            "candidates": [{"model": "other-model", "tier": 1}],
        }
    if path == "free":
        dep["model"] = "in-house-llm"  # in no price map: served only on a free route
    for provider, block, params in PROVIDER_BASES:
        if path.startswith(f"deployments.0.{block}."):
            dep.update(provider=provider, **{block: copy.deepcopy(params)})
    mutated = copy.deepcopy(base)
    _set(mutated[kind], path, MUTATIONS[kind][path])
    if path == "redis.topology":  # standalone -> cluster: the URL's Secret gives way to the seed nodes
        mutated[kind]["redis"] = {**copy.deepcopy(CLUSTER), "topology": "cluster"}
    assert SPECS[kind].model_validate(mutated[kind])  # the mutation itself is valid
    assert _render(base) != _render(mutated), f"{kind}.spec.{path} does not change what is rendered"
