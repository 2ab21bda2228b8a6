"""The Sentinel primary (or a Cluster master) is SIGKILLed under load (two real proxies, 64 clients, replicaAcks 1
on a primary with two replicas): after the promotion no spend is lost or counted twice and every request's audit
record is in the verified chain. The refusal window itself is a time, measured by bench/bench_redis_failover.py."""

from __future__ import annotations

import pytest

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.harness.failover import assert_chain_verifies, failover_under_load, render_load
from tests.harness.redis_topologies import MASTER, RedisClusterGroup, SentinelGroup
from tests.harness.rendered import cr

GW = "main"


def _render(redis: dict, echo_base: str, secrets: dict):
    inputs = render_load(cr("LLMGateway", GW, {"redis": redis}), echo_base, secrets)
    assert inputs.env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
    return inputs


@pytest.fixture
def sentinel_group():
    group = SentinelGroup(replicas=2).start()
    yield group
    group.stop()


@pytest.fixture
def cluster_group():
    group = RedisClusterGroup(replicas=2, node_timeout_ms=2000).start()
    yield group
    group.stop()


def test_killing_the_primary_loses_no_spend_and_no_audit_record(sentinel_group, echo_upstream, tmp_path, capsys):
    group = sentinel_group
    redis = {
        "mode": "external",
        "topology": "sentinel",
        "sentinel": {
            "addresses": [f"127.0.0.1:{p}" for p in group.sentinel_ports],
            "masterName": MASTER,
            "replicaAcks": 1,
        },
        "passwordSecretRef": {"name": "redis", "key": "password"},
    }
    inputs = _render(redis, echo_upstream.base_url, {("redis", "password"): group.password})
    records = failover_under_load(inputs, group.kill_primary, group.primary_port, group.client, gateway=GW)
    assert_chain_verifies(group.url_with_credentials, GW, records, tmp_path, capsys)


def test_a_cluster_master_lost_under_load_loses_no_spend_and_no_audit_record(
    cluster_group, echo_upstream, tmp_path, capsys
):
    """The same on a Redis Cluster (three masters with two replicas each, spec.redis.cluster.replicaAcks 1): the
    master of the tenant's slot (its limits, budget and reservations) is SIGKILLed and a replica takes over
    (cluster-node-timeout 2 s). The proxies follow the new slot map; failed settles are retried and audit records
    spooled as with Sentinel. Without the acknowledgements a settle the master had answered but not yet sent on was
    lost in about one run in five."""
    group = cluster_group
    redis = group.gateway_spec()
    redis["cluster"]["replicaAcks"] = 1
    inputs = _render(redis, echo_upstream.base_url, group.secrets)
    (budget,) = inputs.policy.budgets
    tenant_key = period_key(GatewayKeys("default", GW), budget, period_bounds(budget)[0])

    def kill_tenant_master() -> int:
        port = group.master_port_of(tenant_key)
        group.kill(port)
        return port

    records = failover_under_load(
        inputs, kill_tenant_master, lambda: group.master_port_of(tenant_key), group.client, gateway=GW
    )
    assert_chain_verifies(group.url_with_credentials, GW, records, tmp_path, capsys)
