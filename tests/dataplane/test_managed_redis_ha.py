"""The managed Redis with spec.redis.highAvailability, run from exactly what the operator renders: the StatefulSet's
containers (their start script, environment and config) as local processes, pod names mapped to loopback ports
(tests/harness/managed_redis_ha.py). The group forms by itself, fails over when the primary's pod is lost under
load without losing spend or audit records, and a lost pod comes back as a replica, also when it comes back empty
before the sentinels noticed it was gone. The refusal window is a time: bench/bench_redis_failover.py --managed."""

from __future__ import annotations

import secrets

import pytest

from tests.harness.failover import assert_chain_verifies, failover_under_load, render_load
from tests.harness.managed_redis_ha import RenderedRedisGroup
from tests.harness.procs import wait_until
from tests.harness.rendered import cr

GW, NS = "main", "default"


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
    secret = {(f"{GW}-kubegate-redis", "password"): group.password}
    inputs = render_load(_gateway({"highAvailability": {}}), echo_upstream.base_url, secret)
    # The proxies get the sentinels' address and the replica acknowledgements as rendered; only the pods' names
    # become loopback ports.
    assert inputs.env["KUBEGATE_REDIS_URL"].startswith(f"redis+sentinel://{GW}-redis-0.{GW}-redis-nodes.{NS}.svc:")
    assert inputs.env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
    env = {**inputs.env, "KUBEGATE_REDIS_URL": group.localize(inputs.env["KUBEGATE_REDIS_URL"])}
    first_primary = group.ordinal_of(group.primary_port())
    assert first_primary == 0  # a group that never ran starts on its first pod
    # Ends once 40 requests were served after the promotion: the proxies found the new primary by themselves.
    records = failover_under_load(inputs, group.kill_primary, group.primary_port, group.client, gateway=GW, env=env)
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
