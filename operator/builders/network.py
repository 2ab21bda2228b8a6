"""NetworkPolicies of a Gateway: who may reach its managed Redis and its proxies (rendered when
``spec.networkPolicy.enabled``, the default; enforced only where the cluster's network plugin does)."""

from __future__ import annotations

from typing import Any

from gateway_operator.builders.common import labels, metadata, proxy_name, redis_name, selector
from gateway_operator.builders.proxy import METRICS_PORT
from gateway_operator.crd import models as crd

# The operator pods as the chart labels them (charts/kubegate/templates/_helpers.tpl kubegate.operatorSelector).
OPERATOR_POD_LABELS = {"app.kubernetes.io/name": "kubegate", "app.kubernetes.io/component": "operator"}


def build_network_policies(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    """Managed Redis: ingress only from this Gateway's proxies and the operator. Proxies: ingress only on the API
    port (from anywhere: tenants call it; an Ingress controller or mesh sits in front as the cluster wants) and the
    metrics port."""
    spec = crd.LLMGatewaySpec.model_validate(gateway.get("spec") or {})
    if not spec.network_policy.enabled:
        return []
    name = gateway["metadata"]["name"]
    ns = gateway["metadata"]["namespace"]
    policies = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(proxy_name(name), ns, gateway, labels(name, "proxy")),
            "spec": {
                "podSelector": {"matchLabels": selector(name, "proxy")},
                "policyTypes": ["Ingress"],
                # The API port for clients, the metrics port for Prometheus: nothing else.
                "ingress": [
                    {"ports": [{"protocol": "TCP", "port": spec.port}, {"protocol": "TCP", "port": METRICS_PORT}]}
                ],
            },
        }
    ]
    if spec.redis.mode == "managed":
        ports, peers = [6379], []
        if spec.redis.high_availability is not None:
            # Sentinels and replicas talk to each other; clients ask the sentinels for the primary.
            ports, peers = [6379, 26379], [{"podSelector": {"matchLabels": selector(name, "redis")}}]
        operator_peer = {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": spec.network_policy.operator_namespace}
            },
            "podSelector": {"matchLabels": OPERATOR_POD_LABELS},
        }
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": metadata(redis_name(name), ns, gateway, labels(name, "redis")),
                "spec": {
                    "podSelector": {"matchLabels": selector(name, "redis")},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": selector(name, "proxy")}}, operator_peer, *peers],
                            "ports": [{"protocol": "TCP", "port": port} for port in ports],
                        }
                    ],
                },
            }
        )
    return policies
