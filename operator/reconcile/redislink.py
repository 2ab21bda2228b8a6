"""Reaching a Gateway's Redis from the operator: URL resolution and policy publication (never blocks for long)."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import tempfile
from typing import Any
from urllib.parse import quote, unquote

import redis
from gateway_operator.builders.common import redis_secret_name
from gateway_operator.builders.redis_address import external_address
from gateway_operator.builders.redis_ha import sentinel_address
from gateway_operator.builders.trust import REDIS_PASSWORD_FIELD
from gateway_operator.crd import models as crd
from kubernetes import client

from gateway_plugins.policy import Policy
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.redis_client import connect_sync
from gateway_plugins.policy.signing import PolicySigner
from gateway_plugins.policy.store import keys_of, policy_keys, publish_policy_sync

log = logging.getLogger("kubegate.operator")
CONNECT_TIMEOUT = 1.0
IO_TIMEOUT = 2.0


class RedisUnavailable(Exception):
    """The URL cannot be determined (e.g. its Secret is missing); ``reason`` goes into a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def managed_url(gateway: str, namespace: str, ha: crd.RedisHighAvailabilitySpec | None = None) -> str:
    """Without credentials: this is what ConfigMaps and env values may show; the password comes from a Secret.
    With high availability, the pods' sentinels (which require the same password)."""
    if ha is not None:
        return sentinel_address(gateway, namespace, ha)
    return f"redis://{gateway}-redis.{namespace}.svc:6379/0"


def with_password(url: str, password: str, username: str | None = None) -> str:
    """The URL with ``password`` (and ``username``, else the URL's own) as its credentials (in memory only: never
    written to an object or a log). Works for the multi-host Sentinel and Cluster addresses too."""
    scheme, _, rest = url.partition("://")
    netloc, sep, tail = rest.partition("/")
    creds, _, hosts = netloc.rpartition("@")
    user = username if username is not None else unquote(creds.partition(":")[0])
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{hosts}{sep}{tail}"


def _secret_value(api: client.ApiClient, ns: str, name: str, key: str, field: str) -> str:
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            raise RedisUnavailable("SecretNotFound", f"Secret {name!r} ({field}) not found") from None
        raise
    raw = (secret.data or {}).get(key)
    if raw is None:
        raise RedisUnavailable("SecretKeyNotFound", f"Secret {name!r} has no key {key!r}")
    return base64.b64decode(raw).decode().strip()


def redis_url(api: client.ApiClient, gw: dict[str, Any]) -> str:
    """The URL the operator connects with, credentials included (managed: the generated password)."""
    ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
    spec = (gw.get("spec") or {}).get("redis") or {}
    if spec.get("mode", "managed") != "external":
        password = _secret_value(api, ns, redis_secret_name(name), REDIS_PASSWORD_FIELD, "managed Redis password")
        return with_password(managed_url(name, ns, crd.RedisSpec.model_validate(spec).high_availability), password)
    address = external_address(crd.RedisSpec.model_validate(spec))
    if address is not None:
        url = address
    else:
        ref = spec.get("urlSecretRef") or {}
        url = _secret_value(api, ns, ref["name"], ref["key"], "spec.redis.urlSecretRef")
    pref, uref = spec.get("passwordSecretRef"), spec.get("usernameSecretRef")
    username = _secret_value(api, ns, uref["name"], uref["key"], "spec.redis.usernameSecretRef") if uref else None
    if pref:
        password = _secret_value(api, ns, pref["name"], pref["key"], "spec.redis.passwordSecretRef")
        url = with_password(url, password, username)
    elif username is not None:
        raise RedisUnavailable("InvalidSpec", "spec.redis.usernameSecretRef needs spec.redis.passwordSecretRef")
    cref = spec.get("caSecretRef")
    if cref:
        url = with_ca(url, _secret_value(api, ns, cref["name"], cref["key"], "spec.redis.caSecretRef"))
    tref = spec.get("clientCertSecretRef")
    if tref:
        field = "spec.redis.clientCertSecretRef"
        cert, key = (_secret_value(api, ns, tref["name"], k, field) for k in ("tls.crt", "tls.key"))
        url = with_client_cert(url, cert, key)
    return url


def with_ca(url: str, pem: str) -> str:
    """The URL with a CA bundle to verify the server against (``ca_data``, read by redis_client.parse); in memory
    only, like the password, though a CA is no secret."""
    return _with_params(url, ca_data=pem)


def _with_params(url: str, **params: str) -> str:
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@functools.cache
def _cert_dir() -> str:
    return tempfile.mkdtemp(prefix="kubegate-redis-cert-")  # mode 0700: this process only


def with_client_cert(url: str, cert_pem: str, key_pem: str) -> str:
    """The URL with a client certificate and its key (``cert``/``key``, read by redis_client.parse). Python's TLS
    loads them only from files: they are written once per content into a directory only this process may read,
    named by their hash, never logged (the URL is shown only redacted)."""
    digest = hashlib.sha256(f"{cert_pem}\0{key_pem}".encode()).hexdigest()[:32]
    paths = []
    for suffix, pem in (("crt", cert_pem), ("key", key_pem)):
        path = os.path.join(_cert_dir(), f"{digest}.{suffix}")
        if not os.path.exists(path):
            fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(pem if pem.endswith("\n") else pem + "\n")
            os.replace(f"{path}.tmp", path)
        paths.append(path)
    return _with_params(url, cert=paths[0], key=paths[1])


def connect(url: str) -> redis.Redis:
    # Short timeouts and no retries: an unreachable Redis must cost the reconcile at most a few seconds.
    return connect_sync(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=IO_TIMEOUT, retry_on_timeout=False)


class Link:
    """One connection to a Gateway's Redis for one reconcile; ``revision`` is what Redis holds (None: unknown)."""

    def __init__(self, conn: redis.Redis | None, revision: int | None, failure: tuple[str, str] | None) -> None:
        self.conn, self.revision, self.failure = conn, revision, failure

    def publish(self, policy: Policy, signer: PolicySigner) -> tuple[bool, str, str]:
        """(ok, reason, message) for the Gateway's ``PolicyPublished`` condition; the URL never appears in it."""
        if self.conn is None:
            return (False, *self.failure) if self.failure else (False, "RedisUnreachable", "no Redis")
        try:
            if publish_policy_sync(self.conn, policy, signer):
                return True, "Published", "policy published to Redis"
            current = self.conn.get(policy_keys(keys_of(policy))[1])
            if current is not None and int(current) == policy.revision:
                return True, "Published", "policy published to Redis"
            return False, "NewerRevisionInRedis", "Redis holds a newer policy revision than the operator's"
        except (redis.RedisError, OSError) as exc:
            return False, *_unreachable(policy.gateway, exc)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _unreachable(gateway: str, exc: BaseException) -> tuple[str, str]:
    log.info("Redis of %s unreachable: %s", gateway, type(exc).__name__)
    return "RedisUnreachable", f"Redis unreachable ({type(exc).__name__}); proxies use the ConfigMap"


def open_link(api: client.ApiClient, gw: dict[str, Any]) -> Link:
    """Resolve, connect and read the published revision; failures become the condition, never an exception."""
    name = gw["metadata"]["name"]
    try:
        conn = connect(redis_url(api, gw))
    except RedisUnavailable as exc:
        return Link(None, None, (exc.reason, str(exc)))
    try:
        raw = conn.get(policy_keys(GatewayKeys(gw["metadata"]["namespace"], name))[1])
    except redis.AuthenticationError:
        conn.close()
        return Link(None, None, ("RedisAuthFailed", "Redis refused the credentials from the Gateway's Secret"))
    except (redis.RedisError, OSError) as exc:
        conn.close()
        return Link(None, None, _unreachable(name, exc))
    return Link(conn, int(raw) if raw is not None else None, None)
