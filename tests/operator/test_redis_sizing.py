"""The managed Redis's size, derived from what it holds (pure; #26 item 0): defaults, overrides, too-small overrides,
and the StatefulSet that carries it (Guaranteed QoS, maxmemory with noeviction, the volume)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gateway_operator.builders import redis_sizing as sizing
from gateway_operator.builders.redis import build_redis
from gateway_operator.crd import models as crd
from gateway_operator.render.problems import field_errors
from kubernetes.utils import parse_quantity
from pydantic import ValidationError

MI, GI = 1024**2, 1024**3


def _gateway(spec: dict) -> dict:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": "LLMGateway",
        "metadata": {"name": "main", "namespace": "ns", "uid": "u"},
        "spec": spec,
    }


def _statefulset(spec: dict) -> dict:
    statefulset, _service = build_redis(_gateway(spec))
    return statefulset


def _arg(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _invalid(spec: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        crd.LLMGateway.model_validate(_gateway(spec))
    return field_errors(caught.value)


def test_default_size_is_derived_from_the_stream_and_cache_caps():
    size = sizing.size(1_000_000, 64 * MI)
    data = 64 * MI + 1_000_000 * 1_300 + 2 * 64 * MI  # base + records + cache (values and their keys)
    assert size.data_bytes == size.maxmemory == data
    assert parse_quantity(size.memory) == -(-int(data * 1.25) // MI) * MI  # fork and fragmentation headroom
    assert size.cpu == "1"
    assert parse_quantity(size.storage) >= data * 3 * 1.1  # old base + increments + the rewrite's new base
    assert (size.memory, size.storage) == ("1790Mi", "5Gi")


def test_smaller_caps_give_a_smaller_redis_and_the_base_stays():
    small = sizing.size(1000, 0)
    assert small.maxmemory == 64 * MI + 1000 * 1_300
    # Below 256 MiB of maxmemory the headroom is its 64 MiB floor; rounded up to whole MiB.
    assert small.memory == sizing.mebibytes(small.maxmemory + 64 * MI) == "130Mi"
    assert small.storage == "1Gi"
    sizes = [sizing.size(n, 64 * MI).maxmemory for n in (1000, 10_000, 100_000, 1_000_000)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert sizing.size(1000, 1 * GI).maxmemory > sizing.size(1000, 64 * MI).maxmemory


def test_the_statefulset_is_guaranteed_qos_with_maxmemory_noeviction_and_a_derived_volume():
    statefulset = _statefulset({})
    pod = statefulset["spec"]["template"]["spec"]
    size = sizing.size(1_000_000, 64 * MI)
    containers = pod["containers"] + pod.get("initContainers", [])
    for container in containers:
        resources = container["resources"]
        # Guaranteed QoS: every container has cpu and memory requests equal to its limits.
        assert resources["requests"] == resources["limits"] == {"memory": size.memory, "cpu": size.cpu}
    (redis,) = pod["containers"]
    args = redis["args"]
    assert _arg(args, "--maxmemory") == str(size.maxmemory)
    assert _arg(args, "--maxmemory-policy") == "noeviction"
    assert _arg(args, "--appendonly") == "yes"
    # The rewrite thresholds the volume's size assumes are spelt out.
    assert _arg(args, "--auto-aof-rewrite-percentage") == "100"
    assert _arg(args, "--auto-aof-rewrite-min-size") == str(64 * MI)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"] == {"storage": "5Gi"}
    assert parse_quantity(redis["resources"]["limits"]["memory"]) > size.maxmemory


def test_the_caps_of_the_spec_drive_the_rendered_size():
    statefulset = _statefulset({"audit": {"streamMaxLen": 10_000}, "cache": {"maxTotalBytes": 0}})
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert _arg(redis["args"], "--maxmemory") == str(64 * MI + 10_000 * 1_300)
    assert redis["resources"]["limits"]["memory"] == "141Mi"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"] == {"storage": "1Gi"}


def test_overrides_set_memory_cpu_and_volume_and_maxmemory_follows_the_memory():
    spec = {"redis": {"resources": {"memory": "4Gi", "cpu": "2"}, "persistence": {"size": "20Gi"}}}
    statefulset = _statefulset(spec)
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert redis["resources"]["requests"] == redis["resources"]["limits"] == {"memory": "4Gi", "cpu": "2"}
    maxmemory = int(_arg(redis["args"], "--maxmemory"))
    assert maxmemory == int(4 * GI * 0.8)  # the headroom is a quarter of maxmemory
    assert sizing.container_memory(maxmemory) <= 4 * GI
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"] == {"storage": "20Gi"}


def test_maxmemory_for_inverts_container_memory():
    for memory in (130 * MI, 320 * MI, 1 * GI, 1750 * MI, 64 * GI):
        maxmemory = sizing.maxmemory_for(memory)
        assert sizing.container_memory(maxmemory) <= memory < sizing.container_memory(maxmemory + 1024)


def test_a_memory_override_too_small_for_the_caps_is_refused_naming_the_fields_and_the_minimum():
    message = _invalid({"redis": {"resources": {"memory": "512Mi"}}})
    assert "spec.redis.resources.memory: 512Mi" in message
    assert "spec.audit.streamMaxLen (1,000,000 records)" in message and "spec.cache.maxTotalBytes" in message
    minimum = re.search(r"set at least (\w+)", message).group(1)
    assert minimum == "1790Mi"
    # The minimum named is enough, and lowering a cap instead works too.
    crd.LLMGateway.model_validate(_gateway({"redis": {"resources": {"memory": minimum}}}))
    crd.LLMGateway.model_validate(
        _gateway({"redis": {"resources": {"memory": "512Mi"}}, "audit": {"streamMaxLen": 150_000}})
    )


def test_the_old_default_volume_size_is_read_as_unset_so_upgrades_grow_it():
    # Every LLMGateway stored under the previous CRD carries its default, 1Gi: it gets the derived size.
    claim = _statefulset({"redis": {"persistence": {"size": "1Gi"}}})["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"] == {"storage": "5Gi"}


def test_a_volume_too_small_for_the_caps_is_refused_naming_the_fields_and_the_minimum():
    message = _invalid({"redis": {"persistence": {"size": "2Gi"}}})
    assert "spec.redis.persistence.size: 2Gi" in message and "spec.audit.streamMaxLen" in message
    minimum = re.search(r"set at least (\w+)", message).group(1)
    assert minimum == "5Gi"
    crd.LLMGateway.model_validate(_gateway({"redis": {"persistence": {"size": minimum}}}))
    # A generous memory override does not make the volume bigger: the caps bound what is on disk.
    crd.LLMGateway.model_validate(
        _gateway({"redis": {"resources": {"memory": "64Gi"}, "persistence": {"size": minimum}}})
    )


def test_both_too_small_are_named_in_one_message():
    message = _invalid({"redis": {"resources": {"memory": "256Mi"}, "persistence": {"size": "100Mi"}}})
    assert "spec.redis.resources.memory" in message and "spec.redis.persistence.size" in message


def test_no_volume_or_an_external_redis_is_not_checked_against_the_caps():
    # emptyDir: no claim to size; external: the operator runs no Redis.
    crd.LLMGateway.model_validate(_gateway({"redis": {"persistence": {"enabled": False, "size": "1Gi"}}}))
    statefulset = _statefulset({"redis": {"persistence": {"enabled": False, "size": "1Gi"}}})
    assert "volumeClaimTemplates" not in statefulset["spec"]
    external = {
        "mode": "external",
        "urlSecretRef": {"name": "r", "key": "url"},
        "resources": {"memory": "1Mi"},
        "persistence": {"size": "1Mi"},
    }
    crd.LLMGateway.model_validate(_gateway({"redis": external}))
    assert build_redis(_gateway({"redis": external})) == []


def test_constants_name_their_measured_source():
    # The issue's measurements, and the margins above them the sizing uses.
    assert sizing.MEASURED_RECORD_MEMORY_BYTES == 1_045 < sizing.RECORD_MEMORY_BYTES
    assert sizing.MEASURED_AOF_BYTES_PER_REQUEST == 2_100
    source = Path(sizing.__file__).read_text()
    for name in ("MEASURED_RECORD_MEMORY_BYTES", "RECORD_MEMORY_BYTES", "CACHE_OVERHEAD_FACTOR"):
        comment = source[: source.index(f"\n{name} =")].rsplit("\n\n", 1)[-1]
        assert "measured" in comment.lower() or "issue #26" in comment, name
