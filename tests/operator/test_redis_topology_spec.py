"""spec.redis topologies: what the CRD refuses (naming the field and the fix), the address the operator renders for
the proxies, and how that address string is read (gateway_plugins.policy.redis_client). The clients themselves are tested
against real Sentinel and Cluster processes in tests/dataplane/test_redis_topologies_proxy.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gateway_operator.builders.redis_address import external_address
from gateway_operator.crd import models as crd
from gateway_operator.reconcile.redislink import with_ca, with_password
from pydantic import ValidationError
from redis.crc import key_slot

from gateway_plugins.policy.keys import GatewayKeys, cache_shard_of, cache_shards
from gateway_plugins.policy.redis_client import RedisAddressError, parse, redacted

SENTINEL = {"mode": "external", "topology": "sentinel", "sentinel": {"addresses": ["s0:26379"], "masterName": "m"}}
CLUSTER = {"mode": "external", "topology": "cluster", "cluster": {"nodes": ["c0:6379", "c1:6379"]}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mode": "managed", "topology": "cluster", "cluster": {"nodes": ["c:1"]}}, "needs spec.redis.mode: external"),
        ({"mode": "external", "topology": "sentinel"}, "spec.redis.sentinel: required with topology sentinel"),
        ({"mode": "external", "topology": "cluster"}, "spec.redis.cluster: required with topology cluster"),
        ({**CLUSTER, "sentinel": {"addresses": ["s:1"], "masterName": "m"}}, "spec.redis.sentinel: set only with"),
        ({**CLUSTER, "urlSecretRef": {"name": "r", "key": "u"}}, "spec.redis.urlSecretRef: not used with topology"),
        (
            {"mode": "external", "urlSecretRef": {"name": "r", "key": "u"}, "tls": True},
            "use rediss:// in urlSecretRef",
        ),
        ({**CLUSTER, "usernameSecretRef": {"name": "u", "key": "k"}}, "needs its password in passwordSecretRef"),
        ({"passwordSecretRef": {"name": "p", "key": "k"}}, "only for mode external"),
        ({**CLUSTER, "cluster": {"nodes": ["no-port"]}}, "cluster.nodes.0"),
        ({**SENTINEL, "sentinel": {"addresses": [], "masterName": "m"}}, "sentinel.addresses"),
        ({**CLUSTER, "highAvailability": {}}, "spec.redis.highAvailability: only for mode managed"),
        ({"highAvailability": {"replicas": 3, "replicaAcks": 3}}, "must be below replicas"),
        ({"highAvailability": {"replicas": 2}}, "highAvailability.replicas"),
        ({"caSecretRef": {"name": "ca", "key": "ca.crt"}}, "spec.redis.caSecretRef: only for mode external"),
        ({"clientCertSecretRef": {"name": "c"}}, "spec.redis.clientCertSecretRef: only for mode external"),
        ({**CLUSTER, "clientCertSecretRef": {"name": "c"}}, "clientCertSecretRef: a client certificate needs TLS"),
    ],
)
def test_invalid_topologies_are_refused_naming_the_field(spec: dict, message: str):
    with pytest.raises(ValidationError) as err:
        crd.RedisSpec.model_validate(spec)
    assert message in str(err.value), str(err.value)


def test_the_rendered_address_carries_no_credentials():
    secret = {"passwordSecretRef": {"name": "p", "key": "k"}, "usernameSecretRef": {"name": "u", "key": "k"}}
    assert external_address(crd.RedisSpec.model_validate({**CLUSTER, **secret})) == "redis+cluster://c0:6379,c1:6379"
    tls = crd.RedisSpec.model_validate({**SENTINEL, "tls": True, "sentinel": {**SENTINEL["sentinel"]}})
    assert external_address(tls) == "rediss+sentinel://s0:26379/m"
    auth = crd.RedisSpec.model_validate({**SENTINEL, "sentinel": {**SENTINEL["sentinel"], "authenticateSentinels": 1}})
    assert external_address(auth) == "redis+sentinel://s0:26379/m?sentinel_auth=1"
    assert external_address(crd.RedisSpec()) is None
    assert external_address(crd.RedisSpec.model_validate({"mode": "external"})) is None


def test_credentials_are_added_to_multi_host_addresses_in_memory():
    url = with_password("redis+cluster://c0:6379,c1:6379", "p@ss:w/rd", "kube gate")
    assert url == "redis+cluster://kube%20gate:p%40ss%3Aw%2Frd@c0:6379,c1:6379"
    target = parse(url)
    assert (target.username, target.password, target.nodes) == ("kube gate", "p@ss:w/rd", (("c0", 6379), ("c1", 6379)))
    assert redacted(url) == "redis+cluster://c0:6379,c1:6379"
    # The single-server URL keeps working as before (its user kept when none is given).
    assert with_password("redis://old:x@r:6379/0", "new") == "redis://old:new@r:6379/0"


def test_address_strings_parse_per_topology():
    s = parse("rediss+sentinel://:pw@a:26379,b:26380/mymaster/2?ca=/etc/ca.pem&sentinel_auth=true")
    assert (s.mode, s.master_name, s.db, s.tls, s.ca_file, s.sentinel_auth, s.password) == (
        "sentinel",
        "mymaster",
        2,
        True,
        "/etc/ca.pem",
        True,
        "pw",
    )
    assert s.nodes == (("a", 26379), ("b", 26380))
    assert parse("redis://r:6379/0").mode == "standalone"
    assert parse("rediss+cluster://a:1,b:2?ca=/etc/ssl/private ca.pem").ca_file == "/etc/ssl/private ca.pem"
    # Credentials given apart win over the string's.
    assert parse("redis+cluster://u:p@c:1", username="v", password="q").password == "q"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://x:1", "unknown Redis address scheme 'memcached'"),
        ("redis+sentinel://a:26379", "needs the master name"),
        ("redis+sentinel://a:26379/m/x", "database 'x' is not a number"),
        ("redis+cluster://a:6379/3", "Redis Cluster only has db 0"),
        ("redis+cluster://a", "'a' is not host:port"),
    ],
)
def test_bad_address_strings_say_what_is_wrong(url: str, message: str):
    with pytest.raises(RedisAddressError) as err:
        parse(url)
    assert message in str(err.value)


def test_key_layout_puts_each_scripts_keys_in_one_slot():
    def slot(k: str) -> int:
        return key_slot(k.encode())

    keys = GatewayKeys("ns", "gw")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tenant = [keys.rate("t", "rpm", 1), keys.rate("t", "tpm", 1), keys.budget("t", "b", start)]
    tenant.append(keys.budget_leases("t", "b", start))
    assert len({slot(k) for k in tenant}) == 1
    assert slot(keys.rate("u", "rpm", 1)) != slot(keys.rate("t", "rpm", 1))  # tenants spread
    audit = keys.audit_stream
    assert len({slot(k) for k in (audit, f"{audit}:heads", f"{audit}:trimmed", f"{audit}:exported")}) == 1
    assert slot(audit) != slot(keys.policy_document)
    assert len({slot(k) for k in (keys.policy_document, keys.policy_revision, keys.policy_channel)}) == 1
    shards = cache_shards(2**30)
    assert shards == 16 and cache_shards(1_000_000) == 1
    entries = [keys.cache_entry("t", f"{i:08x}" + "0" * 56, shards) for i in range(64)]
    for entry in entries:
        shard = cache_shard_of(entry)
        assert slot(entry) == slot(keys.cache_index(shard)) == slot(keys.cache_bytes(shard))
    assert len({cache_shard_of(e) for e in entries}) == shards  # one tenant's entries spread over every shard


def test_scan_patterns_find_every_key_of_a_gateway_and_no_other(redis_server):
    client = redis_server.client()
    keys, other = GatewayKeys("pat", "gw"), GatewayKeys("pat", "gw2")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    mine = [
        keys.policy_document,
        keys.rate("t", "rpm", 1),
        keys.budget("t", "b", start),
        keys.audit_stream,
        keys.cache_entry("t", "ab" * 32, 16),
        keys.cache_index(3),
    ]
    for k in [*mine, other.policy_document, other.rate("t", "rpm", 1), other.cache_entry("t", "ab" * 32, 16)]:
        client.set(k, 1)
    assert {k.decode() for k in client.scan_iter(keys.pattern)} == set(mine)
    assert [k.decode() for k in client.scan_iter(keys.cache_entry_pattern("t"))] == [mine[4]]
    assert [k.decode() for k in client.scan_iter(keys.budget_pattern("t", "b"))] == [mine[2]]


def test_a_ca_bundle_travels_with_the_address_and_never_reaches_redis_pys_url_parser():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB+/=\n-----END CERTIFICATE-----\n"
    cluster = parse(with_ca(with_password("rediss+cluster://c0:6379", "pw"), pem))
    assert (cluster.ca_data, cluster.password, cluster.ca_file) == (pem, "pw", None)
    standalone = parse(with_ca("rediss://:pw@r:6380/2?ssl_cert_reqs=required", pem))
    assert standalone.url == "rediss://:pw@r:6380/2?ssl_cert_reqs=required" and standalone.ca_data == pem
    assert parse("rediss://r:6380/0?ca=/etc/ca.pem").url == "rediss://r:6380/0"
    assert parse("rediss://r:6380/0?ca=/etc/ca.pem").ca_file == "/etc/ca.pem"
    # The proxies' mounted file wins over the address's parameter.
    assert parse("rediss+cluster://c0:6379?ca=/a.pem", ca_file="/b.pem").ca_file == "/b.pem"
