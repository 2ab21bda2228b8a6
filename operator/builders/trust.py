"""The Gateway's trust material Secrets: policy signing key, audit HMAC key, audit log signing key, managed Redis
password.

Each is generated once by the operator and owned by the Gateway; no secret half ever enters a ConfigMap, a status
or a log. The operator reads the signing keys to sign policies and audit log checkpoints; only public halves leave
it: the policy key to the proxies and ``status.policyPublicKey``, the log key (a C2SP vkey) to the checkpoint
ConfigMap and ``status.auditLogPublicKey``.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from gateway_operator.builders.common import (
    audit_key_secret_name,
    labels,
    log_signing_secret_name,
    metadata,
    redis_secret_name,
    signing_secret_name,
)

from gateway_plugins.policy.audit.note import NoteSigner, origin_for
from gateway_plugins.policy.signing import PolicySigner

SIGNING_FIELD = "ed25519-private-key"
PUBLIC_FIELD = "ed25519-public-key"
AUDIT_KEY_FIELD = "audit-key"
LOG_SIGNING_FIELD = "ed25519-private-key"
LOG_VKEY_FIELD = "vkey"
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


def log_origin(gateway: dict[str, Any]) -> str:
    """The audit log's origin and signing key name: ``kubegate.dev/<namespace>/<gateway>/<uid prefix>``."""
    meta = gateway["metadata"]
    return origin_for(meta["namespace"], meta["name"], meta.get("uid") or "")


def build_log_signing_secret(gateway: dict[str, Any], signer: NoteSigner) -> dict[str, Any]:
    data = {LOG_SIGNING_FIELD: signer.private_key_b64, LOG_VKEY_FIELD: signer.vkey()}
    name = log_signing_secret_name(gateway["metadata"]["name"])
    return _secret(gateway, name, "audit-log-signing", data)


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
