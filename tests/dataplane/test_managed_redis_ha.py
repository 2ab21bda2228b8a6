"""The managed Redis with spec.redis.highAvailability, run from exactly what the operator renders: the StatefulSet's
containers (their start script, environment and config) as local processes, pod names mapped to loopback ports
(tests/harness/managed_redis_ha.py). The group forms by itself, fails over when the primary's pod is lost under
load without losing spend or audit records, and a lost pod comes back as a replica, also when it comes back empty
before the sentinels noticed it was gone. The refusal window is a time: bench/bench_redis_failover.py --managed."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from tests.harness.failover import assert_chain_verifies, assert_spend_and_records_kept, load_through_failover
from tests.harness.managed_redis_ha import RenderedRedisGroup
from tests.harness.procs import wait_until
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import cr, echo_route, render_proxy

GW, NS, TENANT = "main", "default", "load"
KEY = "sk-managed-ha-load-0123456789"
COST_MICRO = 2000  # 2 completion tokens x 0.001 USD
BODY = {"model": "big", "messages": [{"role": "user", "content": "abcdefgh"}], "max_tokens": 2}


def _gateway(redis: dict) -> dict:
    gateway = cr("LLMGateway", GW, {"redis": redis}, namespace=NS)
    return {**gateway, "metadata": {**gateway["metadata"], "uid": "test-uid"}}


@pytest.fixture
def group(request):
    redis = {"highAvailability": request.param.get("ha", {}), "persistence": request.param.get("persistence", {})}
    g = RenderedRedisGroup(_gateway(redis), secrets.token_urlsafe(24)).start()
    yield g
    g.stop()


@pytest.mark.parametrize("group", [{}], indirect=True)
def test_losing_the_primary_pod_under_load_loses_no_spend_and_no_audit_record(group, echo_upstream, tmp_path, capsys):
    objects = [
        _gateway({"highAvailability": {}}),
        echo_route(GW, "big", echo_upstream.base_url, upstream_model="big-echo", output_price="0.001"),
        cr("Tenant", TENANT, {"gateway": GW, "allowedModels": ["big"]}),
        # Hard and far from its limit: every refusal is the outage's.
        cr("Budget", "load-b", {"tenant": TENANT, "limitUSD": "100000", "period": "monthly"}),
    ]
    inputs = render_proxy(objects, keys={TENANT: KEY}, secrets={(f"{GW}-kubegate-redis", "password"): group.password})
    # The proxies get the sentinels' address and the replica acknowledgements as rendered; only the pods' names
    # become loopback ports.
    assert inputs.env["KUBEGATE_REDIS_URL"].startswith(f"redis+sentinel://{GW}-redis-0.{GW}-redis-nodes.{NS}.svc:")
    assert inputs.env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
    env = {**inputs.env, "KUBEGATE_REDIS_URL": group.localize(inputs.env["KUBEGATE_REDIS_URL"])}
    first_primary = group.ordinal_of(group.primary_port())
    assert first_primary == 0  # a group that never ran starts on its first pod
    proxies = [ProxyServer(inputs.config, inputs.policy, env=env).start() for _ in range(2)]
    try:
        statuses: list[int] = []
        urls = [p.base_url for p in proxies]
        unexpected: list[str] = []
        # Ends once 40 requests were served after the promotion: the proxies found the new primary by themselves.
        asyncio.run(
            load_through_failover(urls, KEY, BODY, group.kill_primary, group.primary_port, statuses, 64, unexpected)
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
    # The lost pod comes back (same claim, new emptyDir) and follows the new primary.
    group.start_pod(first_primary)
    group.wait_formed()
    new_primary = group.ordinal_of(group.primary_port())
    assert new_primary != first_primary
    replication = group.node(first_primary).info("replication")
    assert replication["role"] == "slave" and replication["master_port"] == group.redis_ports[new_primary]
    assert_chain_verifies(group.url_with_credentials, GW, records, tmp_path, capsys)


@pytest.mark.parametrize("group", [{"persistence": {"enabled": False}}], indirect=True)
def test_a_primary_back_without_its_data_waits_for_the_failover_instead_of_wiping_its_replicas(group):
    primary = group.client()
    primary.mset({f"spend-{i}": i for i in range(100)})
    lost = group.ordinal_of(group.primary_port())
    for i in range(group.replicas):
        if i != lost:
            wait_until(lambda i=i: group.node(i).get("spend-99") == b"99", timeout=10, what="replication")
    # Back at once with a new emptyDir, before the sentinels' down-after period: they still name it the primary.
    group.kill_pod(lost)
    group.start_pod(lost)
    assert group.ordinal_of(group.primary_port(via=(lost + 1) % group.replicas)) == lost
    group.wait_formed()
    new_primary = group.ordinal_of(group.primary_port())
    assert new_primary != lost
    for i in range(group.replicas):
        wait_until(lambda i=i: group.node(i).get("spend-99") == b"99", timeout=30, what=f"pod {i} holding the data")
    assert group.node(lost).info("replication")["role"] == "slave"
