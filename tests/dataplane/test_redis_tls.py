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
from tests.harness.procs import wait_until
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


@pytest.fixture(scope="module")
def mtls_cluster():
    group = RedisClusterGroup(tls=True, client_certs=True).start()
    yield group
    group.stop()


def test_a_redis_that_asks_for_client_certificates_gets_the_one_from_the_secret(mtls_cluster, echo_upstream):
    """spec.redis.clientCertSecretRef: the kubernetes.io/tls Secret is mounted into the proxy and named in its
    environment; a real proxy, its mounted files mapped to the test's, presents the certificate to a Cluster with
    ``tls-auth-clients yes`` and serves a budgeted request charged there. Without the certificate Redis refuses the
    handshake."""
    from gateway_operator.builders.proxy import build_proxy_deployment
    from gateway_operator.crd.core import REDIS_CA_FILE, REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE
    from openai import OpenAI

    from gateway_plugins.policy.periods import period_bounds, period_key
    from tests.harness.proxy import ProxyServer

    pki = mtls_cluster.pki
    spec = mtls_cluster.gateway_spec(
        caSecretRef={"name": "redis-ca", "key": "ca.pem"}, clientCertSecretRef={"name": "redis-client"}
    )
    gateway = cr("LLMGateway", "main", {"redis": spec})
    deployment = build_proxy_deployment(
        {**gateway, "metadata": {"name": "main", "namespace": "default", "uid": "u"}}, {}, "sum", policy_public_key="pk"
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["KUBEGATE_REDIS_CERT_FILE"], env["KUBEGATE_REDIS_KEY_FILE"]) == (
        REDIS_CLIENT_CERT_FILE,
        REDIS_CLIENT_KEY_FILE,
    )
    (mount,) = [m for m in container["volumeMounts"] if REDIS_CLIENT_CERT_FILE.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] and volume["secret"] == {
        "secretName": "redis-client",
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
    }

    key = "sk-mtls-tenant-0123456789"
    inputs = render_proxy(
        [
            gateway,
            echo_route("main", "big", echo_upstream.base_url, upstream_model="big-echo", output_price="0.001"),
            cr("Tenant", "t", {"gateway": "main", "allowedModels": ["big"]}),
            cr("Budget", "t-b", {"tenant": "t", "limitUSD": "10", "period": "daily"}),
        ],
        keys={"t": key},
        secrets=mtls_cluster.secrets,
    )
    mounted = {
        REDIS_CA_FILE: pki.ca_cert,
        REDIS_CLIENT_CERT_FILE: pki.client_cert,
        REDIS_CLIENT_KEY_FILE: pki.client_key,
    }
    proxy_env = {name: str(mounted.get(value, value)) for name, value in inputs.env.items()}
    assert {proxy_env[f"KUBEGATE_REDIS_{k}_FILE"] for k in ("CA", "CERT", "KEY")} == {str(p) for p in mounted.values()}
    proxy = ProxyServer(inputs.config, inputs.policy, env=proxy_env).start()
    try:
        api = OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
        api.chat.completions.create(model="big", messages=[{"role": "user", "content": "abcdefgh"}], max_tokens=2)
    finally:
        proxy.stop()
    (budget,) = inputs.policy.budgets
    spend = period_key(GatewayKeys("default", "main"), budget, period_bounds(budget)[0])
    client = mtls_cluster.client()
    try:
        wait_until(lambda: client.hget(spend, "spent") == b"2000", timeout=30, what="the request charged")
    finally:
        client.close()

    async def ping(cert: bool) -> bool:
        files = (str(pki.client_cert), str(pki.client_key)) if cert else (None, None)
        client = make_redis(mtls_cluster.url, mtls_cluster.password, mtls_cluster.USER, str(pki.ca_cert), *files)
        try:
            return await client.ping()
        finally:
            await client.aclose()

    assert asyncio.run(ping(cert=True))
    with pytest.raises(RedisClusterException):
        asyncio.run(ping(cert=False))


def test_a_client_certificate_needs_tls_and_its_key():
    from gateway_plugins.policy.redis_client import RedisAddressError, parse

    with pytest.raises(RedisAddressError, match="a client certificate needs TLS"):
        parse("redis+cluster://127.0.0.1:7000?cert=/c&key=/k")
    with pytest.raises(RedisAddressError, match="needs its key"):
        parse("rediss://127.0.0.1:6379/0?cert=/c")
    target = parse("rediss+sentinel://s:26379/m?cert=/c&key=/k")
    assert (target.cert_file, target.key_file) == ("/c", "/k")
