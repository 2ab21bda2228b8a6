"""The tenant key Secret: generated once, owned by its Tenant; only the key's hash enters the policy."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from gateway_operator.builders.common import LABEL_TENANT, labels, metadata, pii_secret_name, tenant_secret_name

KEY_FIELD = "api-key"
PII_HASH_KEY_FIELD = "hash-key"
KEY_PREFIX = "kg-"


def new_tenant_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def build_tenant_key_secret(tenant: dict[str, Any], raw_key: str, rotation: str | None = None) -> dict[str, Any]:
    name = tenant["metadata"]["name"]
    gateway = tenant["spec"]["gateway"]
    lbls = {**labels(gateway, "tenant-key"), LABEL_TENANT: name}
    annotations = {"kubegate.dev/rotation": rotation} if rotation else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(
            tenant_secret_name(name), tenant["metadata"]["namespace"], tenant, lbls, annotations=annotations
        ),
        "data": {KEY_FIELD: base64.b64encode(raw_key.encode()).decode()},
    }


def new_pii_hash_key() -> str:
    return secrets.token_urlsafe(48)


def build_pii_hash_key_secret(gateway: dict[str, Any], raw_key: str) -> dict[str, Any]:
    """The Gateway's PII hash key (HMAC secret of ``hash`` tokens): one per Gateway so every replica and restart
    gives the same token for the same value; generated once, owned by the Gateway."""
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(pii_secret_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "pii-key")),
        "data": {PII_HASH_KEY_FIELD: base64.b64encode(raw_key.encode()).decode()},
    }
