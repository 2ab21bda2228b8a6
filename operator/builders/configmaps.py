"""The LiteLLM config ConfigMap and the policy ConfigMap (gzip JSON in binaryData)."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import yaml
from gateway_operator.builders.common import config_name, labels, metadata, policy_name

from gateway_plugins.policy import Policy
from gateway_plugins.policy.signing import PolicySigner

CONFIG_KEY = "config.yaml"
POLICY_KEY = "policy.json.gz"
# The API server refuses objects above ~1 MiB; stay clearly below.
CONFIGMAP_LIMIT = 1024 * 1024


def build_config_configmap(gateway: dict[str, Any], litellm_config: dict[str, Any]) -> dict[str, Any]:
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "config")),
        "data": {CONFIG_KEY: yaml.safe_dump(litellm_config, sort_keys=True)},
    }


def encode_policy(policy: Policy, signer: PolicySigner) -> bytes:
    # mtime=0 and Ed25519's deterministic signatures: the same policy always gives the same bytes, so an
    # unchanged policy writes nothing.
    return signer.sign(gzip.compress(policy.model_dump_json(by_alias=True).encode(), compresslevel=9, mtime=0))


# Room left for the ConfigMap's metadata.
POLICY_MAX_BYTES = CONFIGMAP_LIMIT - 4096


class PolicyTooLarge(ValueError):
    """The compressed policy does not fit one ConfigMap; ``str()`` says by how much."""


def check_policy_size(policy: Policy, signer: PolicySigner) -> int:
    """Compressed size of ``policy``; PolicyTooLarge when it cannot go into one ConfigMap."""
    size = len(encode_policy(policy, signer))
    if size > POLICY_MAX_BYTES:
        raise PolicyTooLarge(
            f"policy is {size} bytes compressed, over the {POLICY_MAX_BYTES}-byte ConfigMap limit "
            f"({len(policy.tenants)} tenants, {len(policy.budgets)} budgets, {len(policy.models)} models)"
        )
    return size


def build_policy_configmap(gateway: dict[str, Any], policy: Policy, signer: PolicySigner) -> dict[str, Any]:
    name = gateway["metadata"]["name"]
    blob = encode_policy(policy, signer)
    if len(blob) > POLICY_MAX_BYTES:
        raise PolicyTooLarge(f"policy of LLMGateway {name!r} is {len(blob)} bytes compressed, over the limit")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(policy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "policy")),
        "binaryData": {POLICY_KEY: base64.b64encode(blob).decode()},
    }


def checkpoints_name(gateway: str) -> str:
    return f"{gateway}-audit-checkpoints"


def build_checkpoint_configmap(gateway: dict[str, Any], data: dict[str, str]) -> dict[str, Any]:
    """Audit chain heads the operator verified, outside Redis (``gateway_plugins.policy.audit.checkpoint``), and the
    audit log's state, signed checkpoint and public key (``gateway_plugins.policy.audit.transparency``)."""
    name = gateway["metadata"]["name"]
    meta = metadata(
        checkpoints_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "audit-checkpoints")
    )
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
