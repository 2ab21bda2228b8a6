"""Redis memory against its ``maxmemory``, read by every proxy worker (``INFO memory``) for the metrics port.

The managed Redis refuses writes past ``maxmemory`` (``noeviction``): budgets, limits and audit writes would then
fail and fail-closed tenants be refused. ``kubegate_redis_used_memory_bytes`` over
``kubegate_redis_maxmemory_bytes`` is what the ``KubegateRedisMemoryHigh`` alert watches, well before that
(charts/kubegate/files/prometheus-rules.yaml). A Redis without a limit reports ``maxmemory`` 0.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway_plugins import metrics

log = logging.getLogger("kubegate.redis_memory")


async def read_once(redis: Any) -> tuple[int, int]:
    """(used_memory, maxmemory) in bytes; sets the gauges. In a Redis Cluster: those of the fullest primary (the
    first to refuse writes), not a sum that would hide one full node."""
    infos = await _primaries_memory(redis)
    used, limit = max(
        ((int(i.get("used_memory", 0)), int(i.get("maxmemory", 0))) for i in infos),
        key=lambda pair: (pair[0] / pair[1] if pair[1] else 0.0, pair[0]),
    )
    metrics.REDIS_USED_MEMORY.set(used)
    metrics.REDIS_MAXMEMORY.set(limit)
    return used, limit


async def _primaries_memory(redis: Any) -> list[dict]:
    if not hasattr(redis, "get_primaries"):  # a single server, or a Sentinel group's current primary
        return [await redis.info("memory")]
    from redis.asyncio.cluster import RedisCluster

    reply = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
    # One node answering comes back as its INFO; several as {node name: INFO}.
    return list(reply.values()) if all(isinstance(v, dict) for v in reply.values()) else [reply]


async def poll(redis: Any, interval: float) -> None:
    """Until cancelled: one ``INFO memory`` every ``interval`` seconds. A failure (Redis down, an ACL user without
    ``INFO``) is logged once per streak; the Redis-down alerts cover the outage itself."""
    failing = False
    while True:
        try:
            await read_once(redis)
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.warning("redis memory: INFO memory failed (%s); retrying every %gs", type(exc).__name__, interval)
            failing = True
        await asyncio.sleep(interval)
