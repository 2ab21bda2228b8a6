"""Reading what the operator published as a proxy would: verified with the Gateway's public key."""

from __future__ import annotations

import time

from kubernetes import client

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import Policy
from gateway_plugins.policy.signing import PolicyVerifier
from gateway_plugins.policy.store import load_document, policy_keys

GROUP, VERSION = "kubegate.dev", "v1alpha1"


def gateway_keys(ns: str, gw: str) -> tuple[str, str, str]:
    return policy_keys(GatewayKeys(ns, gw))


def verifier_of(custom: client.CustomObjectsApi, ns: str, gw: str, wait: float = 60.0) -> PolicyVerifier:
    """The Gateway's policy public key from its status; the document can be in Redis a moment before the status
    is written (same reconcile), so this waits for it (KeyError when it never comes)."""
    deadline = time.monotonic() + wait
    while True:
        status = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "llmgateways", gw).get("status") or {}
        if "policyPublicKey" in status or time.monotonic() > deadline:
            return PolicyVerifier.from_public_b64(status["policyPublicKey"])
        time.sleep(0.2)


def published(custom: client.CustomObjectsApi, ns: str, gw: str, raw: bytes) -> Policy:
    """The published document, verified (KeyError until the Gateway's status carries its public key)."""
    return load_document(raw, verifier_of(custom, ns, gw))
