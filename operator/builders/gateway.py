"""All children of one Gateway, in apply order."""

from __future__ import annotations

from typing import Any

from gateway_operator.builders.configmaps import build_config_configmap, build_policy_configmap
from gateway_operator.builders.network import build_network_policies
from gateway_operator.builders.proxy import (
    build_hpa,
    build_metrics_service,
    build_pdb,
    build_proxy_deployment,
    build_proxy_service,
)
from gateway_operator.builders.redis import build_redis
from gateway_operator.render import RenderedGateway

from gateway_plugins.policy.signing import PolicySigner


def build_children(
    gateway: dict[str, Any],
    rendered: RenderedGateway,
    signer: PolicySigner,
    *,
    with_policy: bool = True,
    master_key_sha256: str | None = None,
) -> list[dict[str, Any]]:
    """``signer``: the Gateway's policy signing key (its public half goes into the proxy pods).
    ``with_policy=False``: leave the policy ConfigMap as it is (the new policy cannot be published).
    ``master_key_sha256``: hash of the admin key in spec.masterKeySecretRef (None: admin routes closed)."""
    children = [
        *build_redis(gateway),
        build_config_configmap(gateway, rendered.litellm_config),
        *([build_policy_configmap(gateway, rendered.policy, signer)] if with_policy else []),
        build_proxy_deployment(
            gateway,
            rendered.api_key_env,
            rendered.model_list_checksum,
            policy_public_key=signer.public_key_b64,
            master_key_sha256=master_key_sha256,
        ),
        build_proxy_service(gateway),
        build_metrics_service(gateway),
        build_pdb(gateway),
    ]
    children.extend(build_network_policies(gateway))
    hpa = build_hpa(gateway)
    if hpa is not None:
        children.append(hpa)
    return children
