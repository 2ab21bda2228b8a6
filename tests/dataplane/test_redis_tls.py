"""``spec.redis.tls`` on a Cluster: a real 3-master Redis Cluster that speaks only TLS (cluster bus included), reached
with the address the operator renders (``rediss+cluster://``) by the proxy's asyncio client factory, certificates
verified (a client without the CA is refused)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from redis.exceptions import RedisClusterException

from gateway_plugins.limits.scripts import SETTLE_SCRIPT
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.redis_client import connect_sync
from gateway_plugins.runtime import make_redis
from tests.harness.redis_topologies import RedisClusterGroup
from tests.harness.rendered import cr, echo_route, render_proxy


@pytest.fixture(scope="module")
def tls_cluster():
    group = RedisClusterGroup(tls=True).start()
    yield group
    group.stop()


def test_the_proxy_client_speaks_tls_to_the_cluster(tls_cluster, echo_upstream):
    spec = tls_cluster.gateway_spec()
    inputs = render_proxy(
        [cr("LLMGateway", "main", {"redis": spec}), echo_route("main", "m", echo_upstream.base_url)],
        keys={},
        secrets=tls_cluster.secrets,
    )
    assert inputs.env["KUBEGATE_REDIS_URL"] == tls_cluster.url  # rediss+cluster://127.0.0.1:…
    keys = GatewayKeys("default", "main")
    # A private CA, given by ?ca= (without it: the system's bundle, which the next test shows refusing this one).
    url = f"{inputs.env['KUBEGATE_REDIS_URL']}?ca={tls_cluster.pki.ca_cert}"

    async def settle_once() -> list:
        client = make_redis(url, inputs.env["KUBEGATE_REDIS_PASSWORD"], inputs.env["KUBEGATE_REDIS_USERNAME"])
        try:
            start = datetime(2026, 1, 1, tzinfo=UTC)
            budget, lease = keys.budget("t", "b", start), keys.budget_leases("t", "b", start)
            args = [0, 1, "m1", "", "", 0, 2000, 0, 2]  # no served model, no list price (SETTLE's ARGV)
            script_keys = [keys.rate("t", "tpm", 1), budget, lease, keys.settled("t", "m1")]
            first = await SETTLE_SCRIPT(client, script_keys, args)
            again = await SETTLE_SCRIPT(client, script_keys, args)  # idempotent: counted once
            return [first, again, int(await client.hget(budget, "spent"))]
        finally:
            await client.aclose()

    assert asyncio.run(settle_once()) == [1, 0, 2000]


def test_a_client_without_the_ca_is_refused(tls_cluster):
    # The cluster client reports that no seed node could be reached (RedisClusterException), naming the TLS error.
    with pytest.raises(RedisClusterException, match="CERTIFICATE_VERIFY_FAILED"):
        connect_sync(tls_cluster.url_with_credentials.split("?")[0], socket_timeout=5).ping()


def test_a_private_ca_from_a_secret_reaches_the_proxy_and_the_operator(tls_cluster):
    """spec.redis.caSecretRef: the proxies verify against the mounted bundle (KUBEGATE_REDIS_CA_FILE, the mount's
    file mapped to the test CA's), the operator against the Secret's bundle carried in its in-memory URL."""
    from gateway_operator.builders.proxy import build_proxy_deployment
    from gateway_operator.crd.core import REDIS_CA_FILE
    from gateway_operator.reconcile.redislink import with_ca, with_password

    spec = tls_cluster.gateway_spec(caSecretRef={"name": "redis-ca", "key": "ca.pem"})
    gateway = {**cr("LLMGateway", "main", {"redis": spec}), "metadata": {"name": "main", "namespace": "d", "uid": "u"}}
    pod = build_proxy_deployment(gateway, {}, "sum", policy_public_key="pk")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEGATE_REDIS_CA_FILE"] == REDIS_CA_FILE
    (mount,) = [m for m in container["volumeMounts"] if REDIS_CA_FILE.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {"secretName": "redis-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]}

    async def proxy_ping() -> bool:
        client = make_redis(tls_cluster.url, tls_cluster.password, tls_cluster.USER, str(tls_cluster.pki.ca_cert))
        try:
            return await client.ping()
        finally:
            await client.aclose()

    assert asyncio.run(proxy_ping())
    operator_url = with_ca(
        with_password(tls_cluster.url, tls_cluster.password, tls_cluster.USER), tls_cluster.pki.ca_cert.read_text()
    )
    assert connect_sync(operator_url, socket_timeout=5).ping()
