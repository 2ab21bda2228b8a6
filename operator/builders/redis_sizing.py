"""How big the managed Redis must be for what it holds (pure): ``maxmemory``, the container's memory and CPU, the
volume.

What a Gateway's Redis holds is bounded by two caps of its spec and a small rest:

* the audit stream, trimmed to ``spec.audit.streamMaxLen`` records in the transaction that appends them
  (``gateway_plugins.audit.writer``);
* the response cache, whose entries may take ``spec.cache.maxTotalBytes`` of values (``gateway_plugins.cache``);
* rate-limit counters, budget spend and reservations, policy documents, chain heads, Lua scripts and client buffers:
  ``BASE_MEMORY_BYTES``.

``maxmemory`` is their sum with ``noeviction``: Redis refuses a write instead of evicting spend or audit records,
and the sum is what a full stream and a full cache take, so at the caps nothing is refused. The container's memory
(request = limit, CPU likewise: Guaranteed QoS, the last pod evicted under node pressure) adds room for the fork of
an AOF rewrite (copy-on-write pages) and allocator fragmentation. The volume holds the append-only file, which
Redis rewrites once it has doubled (``auto-aof-rewrite-percentage 100``): before the rewrite finishes, the old base
and its increments (twice the data) and the new base (the data again) are on disk at once.

An override (``spec.redis.resources.memory``, ``spec.redis.persistence.size``) smaller than these caps need is
refused (``Ready=False InvalidSpec`` naming the fields) rather than met by lowering the stream cap: the audit trail's
retention is a compliance setting, and shortening it silently would trade it for a sizing typo. A refused spec
leaves every child as last applied, so no tenant is refused because of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from kubernetes.utils import parse_quantity

MI = 1024 * 1024
GI = 1024 * MI

# Redis memory per audit record, measured in issue #26: `kubegate dev` with the quickstart's team-eu (PII masking
# on), 8 minutes of mixed chat and streaming: ~1,045 bytes per served request, ~711 per one refused by the rate
# limit. The served figure bounds both.
MEASURED_RECORD_MEMORY_BYTES = 1_045
# Records vary with tenant, model and deployment names, decisions (downgrades, fallbacks, cache results) and PII
# entity types: sized 25 % above the measurement. tests/dataplane/test_redis_sizing.py fills a Redis sized this way
# and checks the measured cost stays under it (810 bytes there: short names, no PII).
RECORD_MEMORY_BYTES = 1_300
# Append-only file per request (audit record, budget admit/settle and limit counters), issue #26 as above:
# ~2.1 KB served, ~900 B refused (1,763 B in tests/dataplane/test_redis_sizing.py: no PII, cache on). It sets how often the AOF is rewritten (docs/operations.md), not its peak size,
# which the data held bounds.
MEASURED_AOF_BYTES_PER_REQUEST = 2_100
# A cache entry costs its value (which `maxTotalBytes` counts) plus its key, its index entry (the key again) and its
# expiry: 376 bytes more per entry on 514-byte echo answers (1.73x), measured by tests/dataplane/test_redis_sizing.py.
# Counted as twice the values, which holds for answers of ~400 bytes and more at that key length; a chat
# completion's JSON envelope alone is about that.
CACHE_OVERHEAD_FACTOR = Decimal("2")
# An empty redis-server uses ~1 MB; per Tenant its limit counters, budget and reservation keys are a few hundred
# bytes (10,000 Tenants: a few MB); Lua scripts, policy documents (up to a few MiB each) and the buffers of every
# proxy connection make the rest.
BASE_MEMORY_BYTES = 64 * MI
# Container memory above maxmemory: pages copied on write while the AOF rewrite's child runs, and fragmentation
# (RSS above used_memory). A quarter of maxmemory, at least 64 MiB.
HEADROOM_FRACTION = Decimal("0.25")
HEADROOM_MIN_BYTES = 64 * MI
# Peak disk: the old base and its increments (twice the data, the rewrite trigger) plus the new base (the data).
AOF_COPIES = 3
# Filesystem overhead of the volume (ext4 reserves 5 % for root, plus metadata) and the AOF manifest.
DISK_MARGIN = Decimal("1.1")
AOF_REWRITE_PERCENTAGE = 100
AOF_REWRITE_MIN_BYTES = 64 * MI
# One core: commands run on one thread; the rewrite's child gets what the main thread leaves.
DEFAULT_CPU = "1"


@dataclass(frozen=True, slots=True)
class RedisSize:
    """The managed Redis's size: ``maxmemory`` (bytes), the container's memory and CPU (request = limit), the
    volume; ``data_bytes`` is what the caps let it hold."""

    data_bytes: int
    maxmemory: int
    memory: str
    cpu: str
    storage: str


class RedisTooSmall(ValueError):
    """An override smaller than the caps need; the message names the fields and the smallest value that fits."""


def to_bytes(quantity: str) -> int:
    return math.ceil(parse_quantity(quantity))


def mebibytes(n: int) -> str:
    """``n`` bytes rounded up to whole MiB, as a quantity."""
    return f"{-(-n // MI)}Mi"


def gibibytes(n: int) -> str:
    return f"{-(-n // GI)}Gi"


def data_bytes(stream_max_len: int, cache_max_bytes: int) -> int:
    """What a full audit stream, a full cache and the rest take in Redis."""
    cache = math.ceil(Decimal(cache_max_bytes) * CACHE_OVERHEAD_FACTOR)
    return BASE_MEMORY_BYTES + stream_max_len * RECORD_MEMORY_BYTES + cache


def container_memory(maxmemory: int) -> int:
    return maxmemory + max(int(Decimal(maxmemory) * HEADROOM_FRACTION), HEADROOM_MIN_BYTES)


def maxmemory_for(memory: int) -> int:
    """The largest maxmemory whose container memory fits in ``memory`` (the inverse of container_memory)."""
    fraction = int(Decimal(memory) / (1 + HEADROOM_FRACTION))
    return max(0, min(memory - HEADROOM_MIN_BYTES, fraction))


def volume_bytes(data: int) -> int:
    return math.ceil(Decimal(data) * AOF_COPIES * DISK_MARGIN)


def size(
    stream_max_len: int,
    cache_max_bytes: int,
    *,
    memory: str | None = None,
    cpu: str | None = None,
    storage: str | None = None,
) -> RedisSize:
    """The size for these caps; ``memory``, ``cpu`` and ``storage`` override the derived values. Raises
    RedisTooSmall when an override cannot hold the caps."""
    data = data_bytes(stream_max_len, cache_max_bytes)
    problems = []
    if memory is None:
        maxmemory = data
        memory = mebibytes(container_memory(data))
    else:
        maxmemory = maxmemory_for(to_bytes(memory))
        if maxmemory < data:
            problems.append(
                f"spec.redis.resources.memory: {memory} holds {maxmemory:,} bytes of data, but "
                f"spec.audit.streamMaxLen ({stream_max_len:,} records) and spec.cache.maxTotalBytes "
                f"({cache_max_bytes:,}) need {data:,}: set at least {mebibytes(container_memory(data))} or lower "
                "the caps"
            )
    needed = volume_bytes(data)
    if storage is None:
        storage = gibibytes(needed)
    elif to_bytes(storage) < needed:
        problems.append(
            f"spec.redis.persistence.size: {storage} cannot hold the append-only file of spec.audit.streamMaxLen "
            f"({stream_max_len:,} records) and spec.cache.maxTotalBytes ({cache_max_bytes:,}) through a rewrite "
            f"({needed:,} bytes): set at least {gibibytes(needed)} or lower the caps"
        )
    if problems:
        raise RedisTooSmall("; ".join(problems))
    return RedisSize(data, maxmemory, memory, cpu or DEFAULT_CPU, storage)
