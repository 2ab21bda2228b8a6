"""spec.redis.caSecretRef and clientCertSecretRef, the operator's side, on a real API server and a real TLS-only Redis
Cluster that asks every client for a certificate: the operator reads the bundle from its Secret and verifies the
Cluster's certificate with it (without the field it uses the system bundle, which refuses this private CA), and
presents the certificate of the kubernetes.io/tls Secret (without it the Cluster refuses the handshake)."""

from __future__ import annotations

import base64

import pytest
from gateway_operator.reconcile import redislink
from kubernetes import client
from redis.exceptions import RedisClusterException

from tests.harness.redis_topologies import RedisClusterGroup


@pytest.fixture(scope="module")
def tls_cluster():
    group = RedisClusterGroup(tls=True, client_certs=True).start()
    yield group
    group.stop()


def _secret(core, ns: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=encoded))


def test_the_operator_verifies_a_private_ca_from_the_secret(admin_api, namespace, tls_cluster):
    core = client.CoreV1Api(admin_api)
    acl = {key: value for (_, key), value in tls_cluster.secrets.items()}
    _secret(core, namespace, tls_cluster.SECRET, acl)
    _secret(core, namespace, "redis-ca", {"ca.pem": tls_cluster.pki.ca_cert.read_text()})
    redis_spec = tls_cluster.gateway_spec()
    gateway = {"metadata": {"name": "main", "namespace": namespace}, "spec": {"redis": redis_spec}}
    with pytest.raises(RedisClusterException, match="CERTIFICATE_VERIFY_FAILED"):
        redislink.connect(redislink.redis_url(admin_api, gateway)).ping()

    redis_spec["caSecretRef"] = {"name": "redis-ca", "key": "ca.pem"}
    with pytest.raises(RedisClusterException):  # the Cluster asks for a client certificate
        redislink.connect(redislink.redis_url(admin_api, gateway)).ping()

    pki = tls_cluster.pki
    tls = {"tls.crt": pki.client_cert.read_text(), "tls.key": pki.client_key.read_text()}
    _secret(core, namespace, "redis-client", tls)
    redis_spec["clientCertSecretRef"] = {"name": "redis-client"}
    url = redislink.redis_url(admin_api, gateway)
    assert "PRIVATE KEY" not in url  # the key is in a file only this process reads, not in the URL
    conn = redislink.connect(url)
    try:
        assert conn.ping()
    finally:
        conn.close()

    core.patch_namespaced_secret("redis-client", namespace, {"data": {"tls.key": None}})
    with pytest.raises(redislink.RedisUnavailable, match=r"has no key 'tls\.key'"):
        redislink.redis_url(admin_api, gateway)
    del redis_spec["clientCertSecretRef"]

    redis_spec["caSecretRef"] = {"name": "redis-ca", "key": "missing.pem"}
    with pytest.raises(redislink.RedisUnavailable, match=r"has no key 'missing\.pem'"):
        redislink.redis_url(admin_api, gateway)
