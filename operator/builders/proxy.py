"""Proxy Deployment, Service, HPA and PodDisruptionBudget of a Gateway."""

from __future__ import annotations

from typing import Any

from gateway_operator.builders.common import config_name, labels, metadata, policy_name, proxy_name, selector
from gateway_operator.builders.configmaps import CONFIG_KEY, POLICY_KEY
from gateway_operator.crd import models as crd

CHECKSUM_ANNOTATION = "kubegate.dev/checksum-models"


def _env(spec: crd.GatewaySpec, gateway: str, api_key_env: dict[str, crd.SecretKeyRef]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
        {"name": "KUBEGATE_GATEWAY", "value": gateway},
        {"name": "KUBEGATE_POLICY_FILE", "value": f"/etc/kubegate/policy/{POLICY_KEY}"},
    ]
    refs = dict(sorted(api_key_env.items()))
    if spec.master_key_secret_ref is not None:
        refs["LITELLM_MASTER_KEY"] = spec.master_key_secret_ref
    if spec.redis.mode == "external" and spec.redis.url_secret_ref is not None:
        refs["KUBEGATE_REDIS_URL"] = spec.redis.url_secret_ref
    else:
        env.append({"name": "KUBEGATE_REDIS_URL", "value": f"redis://{gateway}-redis:6379/0"})
    for var, ref in refs.items():
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def build_proxy_deployment(
    gateway: dict[str, Any], api_key_env: dict[str, crd.SecretKeyRef], model_list_checksum: str
) -> dict[str, Any]:
    spec = crd.GatewaySpec.model_validate(gateway.get("spec") or {})
    name = gateway["metadata"]["name"]
    port = spec.port
    probe = {"httpGet": {"path": "/health/liveliness", "port": "http"}, "periodSeconds": 10}
    container = {
        "name": "proxy",
        "image": spec.image,
        "args": [
            "--config",
            f"/etc/kubegate/config/{CONFIG_KEY}",
            "--port",
            str(port),
            "--num_workers",
            str(spec.workers),
        ],
        "ports": [{"name": "http", "containerPort": port}],
        "env": _env(spec, name, api_key_env),
        "resources": spec.resources.model_dump(),
        "readinessProbe": {**probe, "httpGet": {"path": "/health/readiness", "port": "http"}},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "startupProbe": {**probe, "failureThreshold": 30, "periodSeconds": 5},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/kubegate/config", "readOnly": True},
            {"name": "policy", "mountPath": "/etc/kubegate/policy", "readOnly": True},
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(name, "proxy")},
        "template": {
            "metadata": {
                "labels": labels(name, "proxy"),
                # Only model-list changes roll pods; tenants and budgets arrive live through the policy.
                "annotations": {CHECKSUM_ANNOTATION: model_list_checksum},
            },
            "spec": {
                "containers": [container],
                "volumes": [
                    {"name": "config", "configMap": {"name": config_name(name)}},
                    {"name": "policy", "configMap": {"name": policy_name(name)}},
                ],
            },
        },
    }
    if not spec.autoscaling.enabled:
        deployment_spec["replicas"] = spec.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(proxy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": deployment_spec,
    }


def build_proxy_service(gateway: dict[str, Any]) -> dict[str, Any]:
    spec = crd.GatewaySpec.model_validate(gateway.get("spec") or {})
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": {
            "type": spec.service_type,
            "selector": selector(name, "proxy"),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http"}],
        },
    }


def build_hpa(gateway: dict[str, Any]) -> dict[str, Any] | None:
    spec = crd.GatewaySpec.model_validate(gateway.get("spec") or {})
    if not spec.autoscaling.enabled:
        return None
    name = gateway["metadata"]["name"]
    auto = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(proxy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": proxy_name(name)},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": auto.target_cpu_utilization},
                    },
                }
            ],
        },
    }


def build_pdb(gateway: dict[str, Any]) -> dict[str, Any]:
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(proxy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name, "proxy")}},
    }
