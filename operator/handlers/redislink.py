"""Reaching a Gateway's Redis from the operator: URL resolution and policy publication (never blocks for long)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import redis
from kubernetes import client

from gateway_plugins.policy import Policy
from gateway_plugins.policy.store import policy_keys, publish_policy_sync

log = logging.getLogger("kubegate.operator")
CONNECT_TIMEOUT = 1.0
IO_TIMEOUT = 2.0


class RedisUnavailable(Exception):
    """The URL cannot be determined (e.g. its Secret is missing); ``reason`` goes into a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def managed_url(gateway: str, namespace: str) -> str:
    return f"redis://{gateway}-redis.{namespace}.svc:6379/0"


def redis_url(api: client.ApiClient, gw: dict[str, Any]) -> str:
    ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
    spec = (gw.get("spec") or {}).get("redis") or {}
    if spec.get("mode", "managed") != "external":
        return managed_url(name, ns)
    ref = spec.get("urlSecretRef") or {}
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(ref["name"], ns)
    except client.ApiException as exc:
        if exc.status == 404:
            raise RedisUnavailable(
                "SecretNotFound", f"Secret {ref['name']!r} (spec.redis.urlSecretRef) not found"
            ) from None
        raise
    raw = (secret.data or {}).get(ref["key"])
    if raw is None:
        raise RedisUnavailable("SecretKeyNotFound", f"Secret {ref['name']!r} has no key {ref['key']!r}")
    return base64.b64decode(raw).decode().strip()


def connect(url: str) -> redis.Redis:
    # Short timeouts and no retries: an unreachable Redis must cost the reconcile at most a few seconds.
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=IO_TIMEOUT, retry_on_timeout=False
    )


def publish(url: str, policy: Policy) -> tuple[bool, str, str]:
    """(ok, reason, message) for the Gateway's ``PolicyPublished`` condition; the URL never appears in it."""
    conn = connect(url)
    try:
        if publish_policy_sync(conn, policy):
            return True, "Published", "policy published to Redis"
        current = conn.get(policy_keys(policy.gateway)[1])
        if current is not None and int(current) == policy.revision:
            return True, "Published", "policy published to Redis"
        return False, "NewerRevisionInRedis", "Redis holds a newer policy revision than the operator's"
    except (redis.RedisError, OSError) as exc:
        log.info("policy of %s not published: %s", policy.gateway, type(exc).__name__)
        return False, "RedisUnreachable", f"Redis unreachable ({type(exc).__name__}); proxies use the ConfigMap"
    finally:
        conn.close()
