"""The Sentinel primary (or a Cluster master) is SIGKILLed under load (two real proxies, 64 clients, spec.redis.sentinel.replicaAcks 1 on
a primary with two replicas): after the promotion no spend is lost or counted twice and every request's audit record
is in the verified chain. The refusal window itself is a time, measured by bench/bench_redis_failover.py."""

from __future__ import annotations

import asyncio

import pytest

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.harness.failover import assert_chain_verifies, assert_spend_and_records_kept, load_through_failover
from tests.harness.proxy import ProxyServer
from tests.harness.redis_topologies import MASTER, RedisClusterGroup, SentinelGroup
from tests.harness.rendered import cr, echo_route, render_proxy

GW, TENANT = "main", "load"
KEY = "sk-failover-load-0123456789"
COST_MICRO = 2000  # 2 completion tokens x 0.001 USD
BODY = {"model": "big", "messages": [{"role": "user", "content": "abcdefgh"}], "max_tokens": 2}


def _render(group: SentinelGroup, echo_base: str):
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
    objects = [
        cr("LLMGateway", GW, {"redis": redis}),
        echo_route(GW, "big", echo_base, upstream_model="big-echo", output_price="0.001"),
        cr("Tenant", TENANT, {"gateway": GW, "allowedModels": ["big"]}),
        # Hard and far from its limit: every refusal is the outage's.
        cr("Budget", "load-b", {"tenant": TENANT, "limitUSD": "100000", "period": "monthly"}),
    ]
    return render_proxy(objects, keys={TENANT: KEY}, secrets={("redis", "password"): group.password})


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
    proxies: list[ProxyServer] = []
    try:
        inputs = _render(group, echo_upstream.base_url)
        assert inputs.env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
        proxies = [ProxyServer(inputs.config, inputs.policy, env=inputs.env).start() for _ in range(2)]
        statuses: list[int] = []
        urls = [p.base_url for p in proxies]
        unexpected: list[str] = []
        asyncio.run(
            load_through_failover(urls, KEY, BODY, group.kill_primary, group.primary_port, statuses, 64, unexpected)
        )
        # Every answer is served or refused for the outage, nothing else.
        assert set(statuses) <= {200, 503}, (sorted(set(statuses)), unexpected)
        client = group.client()
        try:
            records = assert_spend_and_records_kept(client, inputs.policy, GW, statuses, COST_MICRO)
        finally:
            client.close()
    finally:
        for p in proxies:
            p.stop()
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
    proxies: list[ProxyServer] = []
    try:
        redis = {
            "mode": "external",
            "topology": "cluster",
            "cluster": {"nodes": [f"127.0.0.1:{p}" for p in group.ports[: group.masters]], "replicaAcks": 1},
            "usernameSecretRef": {"name": "redis", "key": "username"},
            "passwordSecretRef": {"name": "redis", "key": "password"},
        }
        objects = [
            cr("LLMGateway", GW, {"redis": redis}),
            echo_route(GW, "big", echo_upstream.base_url, upstream_model="big-echo", output_price="0.001"),
            cr("Tenant", TENANT, {"gateway": GW, "allowedModels": ["big"]}),
            cr("Budget", "load-b", {"tenant": TENANT, "limitUSD": "100000", "period": "monthly"}),
        ]
        credentials = {("redis", "username"): group.USER, ("redis", "password"): group.password}
        inputs = render_proxy(objects, keys={TENANT: KEY}, secrets=credentials)
        assert inputs.env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
        (budget,) = inputs.policy.budgets
        tenant_key = period_key(GatewayKeys("default", GW), budget, period_bounds(budget)[0])
        proxies = [ProxyServer(inputs.config, inputs.policy, env=inputs.env).start() for _ in range(2)]

        def kill_tenant_master() -> int:
            port = group.master_port_of(tenant_key)
            group.kill(port)
            return port

        statuses: list[int] = []
        urls = [p.base_url for p in proxies]
        unexpected: list[str] = []
        asyncio.run(
            load_through_failover(
                urls, KEY, BODY, kill_tenant_master, lambda: group.master_port_of(tenant_key), statuses, 64, unexpected
            )
        )
        assert set(statuses) <= {200, 503}, (sorted(set(statuses)), unexpected)
        client = group.client()
        try:
            records = assert_spend_and_records_kept(client, inputs.policy, GW, statuses, COST_MICRO)
        finally:
            client.close()
    finally:
        for p in proxies:
            p.stop()
    assert_chain_verifies(group.url_with_credentials, GW, records, tmp_path, capsys)
