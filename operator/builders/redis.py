"""Managed Redis (mode: managed): a single-replica Deployment and its Service."""

from __future__ import annotations

from typing import Any

from gateway_operator.builders.common import labels, metadata, redis_name, selector
from gateway_operator.crd import models as crd


def build_redis(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    spec = crd.GatewaySpec.model_validate(gateway.get("spec") or {})
    if spec.redis.mode != "managed":
        return []
    name = gateway["metadata"]["name"]
    ns = gateway["metadata"]["namespace"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(redis_name(name), ns, gateway, labels(name, "redis")),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(name, "redis")},
            "template": {
                "metadata": {"labels": labels(name, "redis")},
                "spec": {
                    "containers": [
                        {
                            "name": "redis",
                            "image": spec.redis.image,
                            "args": ["--save", "", "--appendonly", "no"],
                            "ports": [{"name": "redis", "containerPort": 6379}],
                            "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(redis_name(name), ns, gateway, labels(name, "redis")),
        "spec": {
            "selector": selector(name, "redis"),
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    return [deployment, service]
