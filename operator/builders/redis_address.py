"""The address string (gateway_plugins.policy.redis_client) of a Gateway's external Sentinel group or Cluster.

Built from the CR's fields, without credentials: it goes into the proxy's environment in plain text, and the
operator adds the user and password from their Secrets only in memory (reconcile.redislink).
"""

from __future__ import annotations

from gateway_operator.crd import models as crd


def external_address(spec: crd.RedisSpec) -> str | None:
    """``redis[s]+sentinel://…/<master>`` or ``redis[s]+cluster://…``; None for a standalone or managed Redis
    (its URL is in a Secret or generated)."""
    if spec.mode != "external" or spec.topology == "standalone":
        return None
    scheme = "rediss" if spec.tls else "redis"
    if spec.topology == "sentinel":
        assert spec.sentinel is not None  # the CRD refuses topology sentinel without it
        query = "?sentinel_auth=1" if spec.sentinel.authenticate_sentinels else ""
        return f"{scheme}+sentinel://{','.join(spec.sentinel.addresses)}/{spec.sentinel.master_name}{query}"
    assert spec.cluster is not None
    return f"{scheme}+cluster://{','.join(spec.cluster.nodes)}"
