"""Tenant key Secrets: created once, never overwritten (except once per rotation nonce); only hashes leave here.

Rotation keeps the old key valid for the Tenant's ``keyRotationGracePeriod``: its hash and expiry are recorded on the
Secret (annotations; a hash, never a key) and rendered into the policy with ``not_after``, which the proxies enforce
to the second. A key Secret deleted by hand cannot be rebuilt (only its hash was ever kept): a new key is issued,
reported as a Warning Event and in the Tenant's status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway_operator.builders.common import LABEL_COMPONENT, pii_secret_name, tenant_secret_name
from gateway_operator.builders.secrets import (
    KEY_FIELD,
    build_pii_hash_key_secret,
    build_tenant_key_secret,
    new_pii_hash_key,
    new_tenant_key,
)
from gateway_operator.crd.models import parse_duration
from kubernetes import client

from gateway_plugins.policy import KeyRef, hash_key, key_id_for

log = logging.getLogger("kubegate.operator")
ROTATE_ANNOTATION = "kubegate.dev/rotate-key"
ROTATION_HANDLED = "kubegate.dev/rotation"
PREVIOUS_HASH = "kubegate.dev/previous-key-sha256"
PREVIOUS_EXPIRES = "kubegate.dev/previous-key-expires"  # Unix time
COMPONENT = "kubegate-operator"


@dataclass
class TenantKeys:
    """What a Tenant's key Secret yields: the keys for the policy, and what its status should say."""

    refs: list[KeyRef]
    recreated: bool = False
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeySecret:
    """What the operator uses of a tenant key Secret: the key's hash (the key itself is not kept)."""

    name: str
    namespace: str
    resource_version: str | None
    annotations: dict[str, str]
    key_sha256: str | None  # None: the Secret has no key field
    owner_uid: str | None = None


def _hash_field(data: dict[str, str] | None) -> str | None:
    raw = (data or {}).get(KEY_FIELD)
    return hash_key(base64.b64decode(raw).decode()) if raw is not None else None


def _from_model(secret: client.V1Secret) -> KeySecret:
    meta = secret.metadata
    owner = (meta.owner_references or [None])[0]
    return KeySecret(
        meta.name,
        meta.namespace,
        meta.resource_version,
        meta.annotations or {},
        _hash_field(secret.data),
        owner.uid if owner is not None else None,
    )


# namespace -> key Secrets by name, as last listed and then created or rotated by this process.
_known: dict[str, dict[str, KeySecret]] = {}
_known_lock = threading.Lock()
PAGE = 500


def existing_key_secrets(api: client.ApiClient, ns: str, *, refresh: bool = True) -> dict[str, KeySecret]:
    """Key Secrets of the namespace by name: a list call instead of one read per Tenant.

    ``refresh=False`` (re-renders driven by watch events) answers from what this process last listed, created or
    rotated, so a burst of 10,000 new Tenants does not list 10,000 Secrets per re-render; a ``verify`` reconcile
    (resync, resume) lists again and so notices a Secret deleted or edited by hand. Read as plain JSON, page by
    page: the client's model classes cost seconds and hundreds of MiB for 10,000 Secrets.
    """
    with _known_lock:
        cached = _known.get(ns)
    if cached is not None and not refresh:
        return cached
    core = client.CoreV1Api(api)
    found: dict[str, KeySecret] = {}
    token = None
    while True:
        response = core.list_namespaced_secret(
            ns, label_selector=f"{LABEL_COMPONENT}=tenant-key", limit=PAGE, _continue=token, _preload_content=False
        )
        page = json.loads(response.data)
        for item in page["items"]:
            meta = item["metadata"]
            owners = meta.get("ownerReferences") or [{}]
            found[meta["name"]] = KeySecret(
                meta["name"],
                meta["namespace"],
                meta.get("resourceVersion"),
                meta.get("annotations") or {},
                _hash_field(item.get("data")),
                owners[0].get("uid"),
            )
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            break
    with _known_lock:
        _known[ns] = found
    return found


def _remember(secret: KeySecret) -> None:
    with _known_lock:
        _known.setdefault(secret.namespace, {})[secret.name] = secret


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _keys_from(current: str, annotations: dict[str, str], now: float) -> TenantKeys:
    refs = [KeyRef(sha256=current)]
    status: dict[str, Any] = {"current": key_id_for(current)}
    previous, expires = annotations.get(PREVIOUS_HASH), annotations.get(PREVIOUS_EXPIRES)
    if previous and expires and expires.isdigit() and now < int(expires) and previous != current:
        refs.append(KeyRef(sha256=previous, not_after=int(expires)))
        status.update(previous=key_id_for(previous), previousExpiresAt=_iso(int(expires)))
    else:
        # Merge-patched status: null removes the fields once the grace period is over.
        status.update(previous=None, previousExpiresAt=None)
    return TenantKeys(refs=refs, status=status)


def known_tenant_keys(
    tenant: dict[str, Any], known: dict[str, KeySecret], now: float | None = None
) -> TenantKeys | None:
    """The Tenant's keys from a known Secret when nothing needs a request (no rotation pending), else None."""
    secret = known.get(tenant_secret_name(tenant["metadata"]["name"]))
    uid = tenant["metadata"].get("uid")
    if secret is None or secret.key_sha256 is None or (secret.owner_uid and uid and secret.owner_uid != uid):
        return None
    nonce = (tenant["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
    if nonce and nonce != secret.annotations.get(ROTATION_HANDLED):
        return None
    return _keys_from(secret.key_sha256, secret.annotations, time.time() if now is None else now)


def ensure_tenant_key(
    core: client.CoreV1Api,
    tenant: dict[str, Any],
    known: dict[str, KeySecret],
    now: float | None = None,
    *,
    read_first: bool = False,
) -> TenantKeys:
    """The Tenant's keys, creating its Secret when it has none (``known``: from existing_key_secrets).

    A Secret ``known`` does not hold is created straight away, without a read first (10,000 new Tenants would
    otherwise cost 10,000 reads more): one that exists anyway (made without our labels, by an earlier life of the
    operator, by a concurrent reconcile) makes the create fail with 409, and is then read and used, never replaced.
    """
    now = time.time() if now is None else now
    ns, name = tenant["metadata"]["namespace"], tenant["metadata"]["name"]
    nonce = (tenant["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
    secret = known.get(tenant_secret_name(name))
    uid = tenant["metadata"].get("uid")
    if secret is not None and secret.owner_uid and uid and secret.owner_uid != uid:
        secret, read_first = None, True  # a Secret of an earlier Tenant of this name: read what is there now
    if secret is None and read_first:
        read = _read(core, ns, tenant_secret_name(name))
        secret = _from_model(read) if read is not None else None
        if secret is not None:
            _remember(secret)
    if secret is not None:
        if secret.key_sha256 is None:
            raise KeyError(f"Secret {secret.name} has no {KEY_FIELD!r}")
        handled = secret.annotations.get(ROTATION_HANDLED)
        if nonce and nonce != handled:
            return _rotate_key(core, tenant, secret, nonce, now)
        return _keys_from(secret.key_sha256, secret.annotations, now)
    key = new_tenant_key()
    try:
        _remember(_from_model(core.create_namespaced_secret(ns, build_tenant_key_secret(tenant, key, rotation=nonce))))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        # It exists: use that key, never replace it (read_first: a Secret deleted meanwhile is created again).
        return ensure_tenant_key(core, tenant, {}, now, read_first=True)
    result = _keys_from(hash_key(key), {}, now)
    previous_id = ((tenant.get("status") or {}).get("keys") or {}).get("current")
    if previous_id:
        # This Tenant had a key (its id is in status) and its Secret is gone: deleted by hand or by a tool.
        result.recreated = True
        message = (
            f"key Secret {tenant_secret_name(name)} was deleted; a new key {key_id_for(hash_key(key))} was issued and "
            f"the old key {previous_id} no longer works (a key cannot be rebuilt from its hash): clients must read "
            "the new key from the Secret"
        )
        result.status["secretRecreatedAt"] = _iso(int(now))
        result.status["secretRecreated"] = message
        post_event(core, tenant, "KeySecretRecreated", message)
        log.warning("Tenant %s/%s: %s", ns, name, message)
    return result


def post_event(core: client.CoreV1Api, obj: dict[str, Any], reason: str, message: str) -> None:
    meta = obj["metadata"]
    stamp = _iso(int(time.time()))
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind", "Tenant"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1000],
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        core.create_namespaced_event(meta["namespace"], body)
    except client.ApiException as exc:  # the status says it too: an Event is best effort
        log.info("Event %s on %s not posted: HTTP %s", reason, meta["name"], exc.status)


def _read(core: client.CoreV1Api, ns: str, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, ns)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    return None


def _rotate_key(
    core: client.CoreV1Api, tenant: dict[str, Any], secret: KeySecret, nonce: str, now: float
) -> TenantKeys:
    """Replace the key, keeping the old one's hash valid for the grace period; resourceVersion makes a concurrent
    rotation fail."""
    key = new_tenant_key()
    old = secret.key_sha256
    spec = tenant.get("spec") or {}
    grace = parse_duration(spec.get("keyRotationGracePeriod", "10m"))
    annotations = {ROTATION_HANDLED: nonce, PREVIOUS_HASH: old, PREVIOUS_EXPIRES: str(int(now) + grace)}
    body = {
        "metadata": {"resourceVersion": secret.resource_version, "annotations": annotations},
        "data": {KEY_FIELD: base64.b64encode(key.encode()).decode()},
    }
    _remember(_from_model(core.patch_namespaced_secret(secret.name, secret.namespace, body)))
    log.info("rotated key Secret %s/%s (old key valid %d s more)", secret.namespace, secret.name, grace)
    return _keys_from(hash_key(key), annotations, now)


def ensure_pii_hash_key(core: client.CoreV1Api, gateway: dict[str, Any]) -> None:
    """Create the Gateway's PII hash key Secret once; an existing one (any content) is never replaced."""
    ns = gateway["metadata"]["namespace"]
    if _read(core, ns, pii_secret_name(gateway["metadata"]["name"])) is not None:
        return
    try:
        core.create_namespaced_secret(ns, build_pii_hash_key_secret(gateway, new_pii_hash_key()))
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def master_key_sha256(core: client.CoreV1Api, ns: str, name: str, key: str) -> tuple[str | None, str | None]:
    """(SHA-256 hex of the admin key, None) or (None, why it is unavailable): the proxy gets only the hash."""
    secret = _read(core, ns, name)
    if secret is None:
        return None, f"spec.masterKeySecretRef: Secret {name!r} not found; admin routes stay closed"
    raw = (secret.data or {}).get(key)
    if raw is None:
        return None, f"spec.masterKeySecretRef: Secret {name!r} has no key {key!r}; admin routes stay closed"
    return hashlib.sha256(base64.b64decode(raw).decode().strip().encode()).hexdigest(), None
