"""The Gateway's trust material Secrets: policy signing key, audit HMAC key, managed Redis password.

Each is generated once by the operator and owned by the Gateway; nothing in them ever enters a ConfigMap, a
status or a log. The operator reads the signing key to sign policies; only the public half reaches proxies.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from gateway_operator.builders.common import (
    audit_key_secret_name,
    labels,
    metadata,
    redis_secret_name,
    signing_secret_name,
)

from gateway_plugins.policy.signing import PolicySigner

SIGNING_FIELD = "ed25519-private-key"
PUBLIC_FIELD = "ed25519-public-key"
AUDIT_KEY_FIELD = "audit-key"
REDIS_PASSWORD_FIELD = "password"


def _secret(gateway: dict[str, Any], name: str, component: str, data: dict[str, str]) -> dict[str, Any]:
    gw = gateway["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(name, gateway["metadata"]["namespace"], gateway, labels(gw, component)),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def build_signing_secret(gateway: dict[str, Any], signer: PolicySigner) -> dict[str, Any]:
    data = {SIGNING_FIELD: signer.private_key_b64, PUBLIC_FIELD: signer.public_key_b64}
    return _secret(gateway, signing_secret_name(gateway["metadata"]["name"]), "policy-signing", data)


def build_audit_key_secret(gateway: dict[str, Any], key_b64: str) -> dict[str, Any]:
    return _secret(gateway, audit_key_secret_name(gateway["metadata"]["name"]), "audit-key", {AUDIT_KEY_FIELD: key_b64})


def build_redis_secret(gateway: dict[str, Any], password: str) -> dict[str, Any]:
    name = redis_secret_name(gateway["metadata"]["name"])
    return _secret(gateway, name, "redis-auth", {REDIS_PASSWORD_FIELD: password})


def new_audit_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def new_redis_password() -> str:
    # URL-safe: it may end up in a redis:// URL built in memory.
    return secrets.token_urlsafe(32)
