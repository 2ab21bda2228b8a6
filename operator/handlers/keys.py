"""Tenant key Secrets: created once, never overwritten (except once per rotation nonce); only hashes leave here."""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from gateway_operator.builders.common import LABEL_COMPONENT, pii_secret_name, tenant_secret_name
from gateway_operator.builders.secrets import (
    KEY_FIELD,
    build_pii_hash_key_secret,
    build_tenant_key_secret,
    new_pii_hash_key,
    new_tenant_key,
)
from kubernetes import client

from gateway_plugins.policy import hash_key

log = logging.getLogger("kubegate.operator")
ROTATE_ANNOTATION = "kubegate.dev/rotate-key"
ROTATION_HANDLED = "kubegate.dev/rotation"


def existing_key_secrets(core: client.CoreV1Api, ns: str) -> dict[str, client.V1Secret]:
    """Key Secrets of the namespace by name: one list call instead of one read per Tenant."""
    items = core.list_namespaced_secret(ns, label_selector=f"{LABEL_COMPONENT}=tenant-key").items
    return {s.metadata.name: s for s in items}


def ensure_tenant_key(core: client.CoreV1Api, tenant: dict[str, Any], known: dict[str, client.V1Secret]) -> str:
    """The hash of the Tenant's key, creating its Secret when it has none (``known``: from existing_key_secrets)."""
    ns, name = tenant["metadata"]["namespace"], tenant["metadata"]["name"]
    nonce = (tenant["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
    secret = known.get(tenant_secret_name(name))
    if secret is None:
        secret = _read(core, ns, tenant_secret_name(name))  # e.g. created without our labels
    if secret is not None:
        handled = (secret.metadata.annotations or {}).get(ROTATION_HANDLED)
        if nonce and nonce != handled:
            return _rotate_key(core, secret, nonce)
        return hash_key(base64.b64decode(secret.data[KEY_FIELD]).decode())
    key = new_tenant_key()
    try:
        core.create_namespaced_secret(ns, build_tenant_key_secret(tenant, key, rotation=nonce))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        # Created meanwhile (a concurrent reconcile, an earlier life of the operator): use that key, never replace it.
        return ensure_tenant_key(core, tenant, {})
    return hash_key(key)


def _read(core: client.CoreV1Api, ns: str, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, ns)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    return None


def _rotate_key(core: client.CoreV1Api, secret: client.V1Secret, nonce: str) -> str:
    """Replace the key and record the nonce on the Secret; resourceVersion makes a concurrent rotation fail."""
    key = new_tenant_key()
    body = {
        "metadata": {"resourceVersion": secret.metadata.resource_version, "annotations": {ROTATION_HANDLED: nonce}},
        "data": {KEY_FIELD: base64.b64encode(key.encode()).decode()},
    }
    core.patch_namespaced_secret(secret.metadata.name, secret.metadata.namespace, body)
    log.info("rotated key Secret %s/%s", secret.metadata.namespace, secret.metadata.name)
    return hash_key(key)


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
