"""Reading what the operator published as a proxy would: verified with the Gateway's public key."""

from __future__ import annotations

from kubernetes import client

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import Policy
from gateway_plugins.policy.signing import PolicyVerifier
from gateway_plugins.policy.store import load_document, policy_keys

GROUP, VERSION = "kubegate.dev", "v1alpha1"


def gateway_keys(ns: str, gw: str) -> tuple[str, str, str]:
    return policy_keys(GatewayKeys(ns, gw))


def verifier_of(custom: client.CustomObjectsApi, ns: str, gw: str) -> PolicyVerifier:
    status = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "gateways", gw).get("status") or {}
    return PolicyVerifier.from_public_b64(status["policyPublicKey"])


def published(custom: client.CustomObjectsApi, ns: str, gw: str, raw: bytes) -> Policy:
    return load_document(raw, verifier_of(custom, ns, gw))
