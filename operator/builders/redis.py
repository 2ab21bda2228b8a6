"""Managed Redis (mode: managed): a single-replica Deployment and its Service."""

from __future__ import annotations

import re
from typing import Any

from gateway_operator.builders.common import labels, metadata, redis_name, restricted_security_context, selector
from gateway_operator.crd import models as crd

# The official redis alpine image's user (`adduser -S -G redis -u 999 redis`, group `redis` gid 1000; see the
# image history in docker-library/repo-info repos/redis/remote/7.4-alpine.md). Its entrypoint runs redis-server
# directly when started as non-root; only as root would it chown /data and drop privileges itself. (The Debian
# variants' group is 999; the group only matters for files, and the one writable path is an emptyDir.)
REDIS_UID, REDIS_GID = 999, 1000
# The official image under any registry or mirror: redis:..., library/redis..., mirror.example.com/library/redis...
_OFFICIAL = re.compile(r"^(?:[^/]*[.:][^/]*/)?(?:library/)?redis(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$")


def is_official_redis_image(image: str) -> bool:
    return _OFFICIAL.match(image) is not None


def redis_security_context(image: str) -> dict[str, Any]:
    """Strict for the official image, whose user and behaviour are known: persistence is off (--save ""
    --appendonly no), so redis-server writes nothing and the root filesystem can be read-only (/data, its
    working directory, is still an emptyDir so a manual SAVE lands somewhere writable). Another image (a
    Valkey, a vendor build) may run as root and drop privileges itself, or write its config at start: it only
    gets what cannot break a container."""
    if not is_official_redis_image(image):
        return {"allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"}}
    return restricted_security_context(REDIS_UID, REDIS_GID)


def build_redis(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    spec = crd.LLMGatewaySpec.model_validate(gateway.get("spec") or {})
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
                            "securityContext": redis_security_context(spec.redis.image),
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
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
