"""Names, labels and owner references shared by every child object."""

from __future__ import annotations

from typing import Any

MANAGED_BY = "kubegate-operator"
LABEL_GATEWAY = "kubegate.dev/gateway"
LABEL_COMPONENT = "kubegate.dev/component"
LABEL_TENANT = "kubegate.dev/tenant"


def labels(gateway: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "kubegate",
        LABEL_GATEWAY: gateway,
        LABEL_COMPONENT: component,
    }


def selector(gateway: str, component: str) -> dict[str, str]:
    return {LABEL_GATEWAY: gateway, LABEL_COMPONENT: component}


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """Controller reference so the garbage collector deletes the child with its owner."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(name: str, namespace: str, owner: dict[str, Any], lbls: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": lbls, "ownerReferences": [owner_reference(owner)], **extra}


def proxy_name(gateway: str) -> str:
    return f"{gateway}-proxy"


def config_name(gateway: str) -> str:
    return f"{gateway}-litellm-config"


def policy_name(gateway: str) -> str:
    return f"{gateway}-policy"


def redis_name(gateway: str) -> str:
    return f"{gateway}-redis"


def pii_secret_name(gateway: str) -> str:
    return f"{gateway}-kubegate-pii"


def signing_secret_name(gateway: str) -> str:
    """The Gateway's Ed25519 policy signing key: read by the operator only, never mounted anywhere."""
    return f"{gateway}-kubegate-policy-signing"


def log_signing_secret_name(gateway: str) -> str:
    """The Gateway's Ed25519 audit log (checkpoint) signing key: read by the operator only, never mounted anywhere."""
    return f"{gateway}-kubegate-audit-log-signing"


def audit_key_secret_name(gateway: str) -> str:
    """The Gateway's audit HMAC key: mounted in its proxies only (and read by `kubegate audit verify`)."""
    return f"{gateway}-kubegate-audit-key"


def redis_secret_name(gateway: str) -> str:
    """The managed Redis password: read by the Redis pod, the proxies and the operator."""
    return f"{gateway}-kubegate-redis"


def tenant_secret_name(tenant: str) -> str:
    return f"{tenant}-kubegate-key"


def restricted_security_context(uid: int, gid: int) -> dict[str, Any]:
    """Kubernetes' "restricted" profile on a read-only root, as the image's numeric user."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
