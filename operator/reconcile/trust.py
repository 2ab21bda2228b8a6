"""Create-once trust Secrets of a Gateway (signing keys, audit key, Redis password) and reading them back."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

from gateway_operator.builders import trust as b
from kubernetes import client

from gateway_plugins.policy.audit.note import NoteSigner
from gateway_plugins.policy.signing import PolicySigner

log = logging.getLogger("kubegate.operator")


@dataclass(frozen=True)
class GatewayTrust:
    signer: PolicySigner
    redis_password: str | None  # managed mode only
    log_vkey: str  # the audit log's checkpoint verifier key (C2SP vkey); the private half stays in its Secret


def _ensure(core: client.CoreV1Api, body: dict[str, Any], field: str) -> str:
    """The field's value in the named Secret, creating the Secret from ``body`` when it does not exist."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        secret = core.read_namespaced_secret(name, ns)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        try:
            core.create_namespaced_secret(ns, body)
            log.info("created Secret %s/%s", ns, name)
            return base64.b64decode(body["data"][field]).decode()
        except client.ApiException as exc2:
            if exc2.status != 409:
                raise
            secret = core.read_namespaced_secret(name, ns)  # created meanwhile: use that one, never replace it
    raw = (secret.data or {}).get(field)
    if raw is None:
        # Edited by hand into something unusable: regenerate in place rather than run without the material.
        core.patch_namespaced_secret(name, ns, {"data": body["data"]})
        log.warning("Secret %s/%s had no %r: regenerated", ns, name, field)
        return base64.b64decode(body["data"][field]).decode()
    return base64.b64decode(raw).decode()


def ensure_gateway_trust(core: client.CoreV1Api, gw: dict[str, Any]) -> GatewayTrust:
    fresh = PolicySigner.generate()
    signing = _ensure(core, b.build_signing_secret(gw, fresh), b.SIGNING_FIELD)
    signer = fresh if signing == fresh.private_key_b64 else PolicySigner.from_private_b64(signing)
    _ensure(core, b.build_audit_key_secret(gw, b.new_audit_key()), b.AUDIT_KEY_FIELD)
    log_signer = log_signer_from(
        _ensure(core, b.build_log_signing_secret(gw, NoteSigner.generate(b.log_origin(gw))), b.LOG_SIGNING_FIELD), gw
    )
    password = None
    if ((gw.get("spec") or {}).get("redis") or {}).get("mode", "managed") == "managed":
        password = _ensure(core, b.build_redis_secret(gw, b.new_redis_password()), b.REDIS_PASSWORD_FIELD)
    return GatewayTrust(signer=signer, redis_password=password, log_vkey=log_signer.vkey())


def log_signer_from(private_b64: str, gw: dict[str, Any]) -> NoteSigner:
    """The checkpoint signer of this Gateway's audit log: its key, named after the log's origin."""
    return NoteSigner.from_private_b64(b.log_origin(gw), private_b64)
