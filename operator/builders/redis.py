"""Managed Redis (mode: managed): a single-replica StatefulSet (append-only file on a PersistentVolumeClaim,
password from the Gateway's Secret) and its Service; with spec.redis.highAvailability, a Sentinel group
(gateway_operator.builders.redis_ha)."""

from __future__ import annotations

import re
from typing import Any

from gateway_operator.builders import redis_ha as ha_build
from gateway_operator.builders import redis_sizing as sizing
from gateway_operator.builders.common import (
    labels,
    metadata,
    redis_name,
    redis_secret_name,
    restricted_security_context,
    selector,
)
from gateway_operator.builders.trust import REDIS_PASSWORD_FIELD
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


def redis_settings(persistent: bool, maxmemory: int) -> list[tuple[str, str]]:
    """redis-server's settings, as (directive, value), besides its address and password.

    ``maxmemory`` (bytes, gateway_operator.builders.redis_sizing) with ``noeviction``: past it Redis refuses writes
    rather than evicting budget spend or audit records; the sizing keeps a full stream and a full cache under it.
    The AOF rewrite thresholds are Redis's defaults, spelt out because the volume's size assumes them.

    Persistent: the append-only file, fsync'd every second. A graceful restart (SIGTERM: rollouts, node drains,
    evictions) writes everything; only a kernel or node crash can lose up to the last second. ``always`` would
    fsync on every budget admit/settle, i.e. on the request path. RDB snapshots stay off: the AOF alone is the
    durable copy, rewritten by Redis in the background as it grows."""
    persistence = [("appendonly", "no")]
    if persistent:
        persistence = [
            ("appendonly", "yes"),
            ("appendfsync", "everysec"),
            ("auto-aof-rewrite-percentage", str(sizing.AOF_REWRITE_PERCENTAGE)),
            ("auto-aof-rewrite-min-size", str(sizing.AOF_REWRITE_MIN_BYTES)),
        ]
    return [("save", ""), *persistence, ("maxmemory", str(maxmemory)), ("maxmemory-policy", "noeviction")]


def redis_server_args(persistent: bool, maxmemory: int) -> list[str]:
    """The single server's arguments (after the image's working directory /data). ``$(REDIS_PASSWORD)`` is expanded
    by the kubelet from the container's env (the Gateway's Secret), so the password is in no object's spec."""
    args = [part for key, value in redis_settings(persistent, maxmemory) for part in (f"--{key}", value)]
    return [*args, "--requirepass", "$(REDIS_PASSWORD)"]


def redis_security_context(image: str) -> dict[str, Any]:
    """Strict for the official image, whose user and behaviour are known: redis-server writes only to /data (the
    volume), so the root filesystem can be read-only. Another image (a Valkey, a vendor build) may run as root and
    drop privileges itself, or write its config at start: it only gets what cannot break a container."""
    if not is_official_redis_image(image):
        return {"allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"}}
    return restricted_security_context(REDIS_UID, REDIS_GID)


def build_redis(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    spec = crd.LLMGatewaySpec.model_validate(gateway.get("spec") or {})
    if spec.redis.mode != "managed":
        return []
    name = gateway["metadata"]["name"]
    ns = gateway["metadata"]["namespace"]
    ha = spec.redis.high_availability
    persistence = spec.redis.persistence
    size = crd.redis_size(spec)
    # Request = limit for memory and CPU: Guaranteed QoS (the last pod evicted under node pressure). Any container
    # added here needs the same.
    resources = {"memory": size.memory, "cpu": size.cpu}
    security_context = redis_security_context(spec.redis.image)
    settings = redis_settings(persistence.enabled, size.maxmemory)
    volumes: list[dict[str, Any]] = []
    if ha is None:
        containers = [
            {
                "name": "redis",
                "image": spec.redis.image,
                "args": redis_server_args(persistence.enabled, size.maxmemory),
                "env": [
                    {
                        "name": "REDIS_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": redis_secret_name(name), "key": REDIS_PASSWORD_FIELD}},
                    }
                ],
                "ports": [{"name": "redis", "containerPort": 6379}],
                "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
                "resources": {"requests": dict(resources), "limits": dict(resources)},
                "securityContext": security_context,
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ]
    else:
        containers = ha_build.build_ha_containers(name, ns, ha, spec.redis.image, settings, resources, security_context)
        volumes.append({"name": "conf", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    pod_spec: dict[str, Any] = {
        "containers": containers,
        # Long enough for the final AOF flush of a large dataset on SIGTERM.
        "terminationGracePeriodSeconds": 60,
    }
    if ha is not None:
        pod_spec.update(ha_build.ha_pod_extras(selector(name, "redis")))
    if is_official_redis_image(spec.redis.image):
        # A fresh volume is root-owned: the group makes it writable for the image's non-root user.
        pod_spec["securityContext"] = {"fsGroup": REDIS_GID, "fsGroupChangePolicy": "OnRootMismatch"}
    statefulset_spec: dict[str, Any] = {
        "replicas": 1 if ha is None else ha.replicas,
        # The governing Service names the pods; the HA group needs per-pod names, so its own headless Service.
        "serviceName": redis_name(name) if ha is None else ha_build.nodes_service_name(name),
        "selector": {"matchLabels": selector(name, "redis")},
        "template": {"metadata": {"labels": labels(name, "redis")}, "spec": pod_spec},
    }
    if ha is not None:
        # All pods at once: a replica waiting for the primary's readiness would leave a lone pod with no sentinel
        # quorum; the start script finds the primary whatever the order.
        statefulset_spec["podManagementPolicy"] = "Parallel"
    if persistence.enabled:
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size.storage}},
        }
        if persistence.storage_class_name:
            claim_spec["storageClassName"] = persistence.storage_class_name
        statefulset_spec["volumeClaimTemplates"] = [
            {"metadata": {"name": "data", "labels": labels(name, "redis")}, "spec": claim_spec}
        ]
        # The claim outlives the Gateway's deletion by default (evidence is not deleted by accident).
        statefulset_spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Retain", "whenScaled": "Retain"}
    else:
        volumes.append({"name": "data", "emptyDir": {}})
    if volumes:
        pod_spec["volumes"] = sorted(volumes, key=lambda v: v["name"])
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(redis_name(name), ns, gateway, labels(name, "redis")),
        "spec": statefulset_spec,
    }
    if ha is not None:
        return [statefulset, *build_ha_services(gateway)]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(redis_name(name), ns, gateway, labels(name, "redis")),
        "spec": {
            "selector": selector(name, "redis"),
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    return [statefulset, service]


def build_ha_services(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    """The headless Service of the pods' names, and a PodDisruptionBudget: a drain takes one pod at a time, so the
    sentinels keep their quorum and a replica is there to promote."""
    name, ns = gateway["metadata"]["name"], gateway["metadata"]["namespace"]
    nodes = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(ha_build.nodes_service_name(name), ns, gateway, labels(name, "redis")),
        "spec": {
            "clusterIP": "None",
            # The sentinels and replicas look each other up while starting, before any is ready.
            "publishNotReadyAddresses": True,
            "selector": selector(name, "redis"),
            "ports": [
                {"name": "redis", "port": ha_build.REDIS_PORT, "targetPort": "redis"},
                {"name": "sentinel", "port": ha_build.SENTINEL_PORT, "targetPort": "sentinel"},
            ],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(redis_name(name), ns, gateway, labels(name, "redis")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name, "redis")}},
    }
    return [nodes, pdb]
