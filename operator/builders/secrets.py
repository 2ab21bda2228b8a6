"""The tenant key Secret: generated once, owned by its Tenant; only the key's hash enters the policy."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from gateway_operator.builders.common import LABEL_TENANT, labels, metadata, tenant_secret_name

KEY_FIELD = "api-key"
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
