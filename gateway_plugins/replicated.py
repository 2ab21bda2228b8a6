"""Writes a replica has confirmed: ``WAIT`` on the connection that wrote, for a Sentinel-managed Redis.

Redis replication is asynchronous: a primary that acknowledged a write and died before sending it on loses it
when Sentinel promotes the replica. With ``KUBEGATE_REDIS_REPLICA_ACKS=n`` the audit append and the budget settle
are each followed by ``WAIT n`` on the same connection (a pipeline: one round trip), and a write fewer than ``n``
replicas confirmed counts as failed, so it is written again: both writes are idempotent (the audit append skips
sequence numbers its chain head already has; a settle marks its reservation as settled in the same script).
``WAIT`` is not a consensus protocol: a write confirmed by a replica that Sentinel does not promote is still lost
(docs/redis.md). In a Redis Cluster the proxies do not wait (``WAIT`` would have to follow the key's node).
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError, RedisError

# How long one WAIT may block; under the client's read timeout (runtime.REDIS_READ_TIMEOUT), so a replica that is gone fails the write
# (and it is retried) rather than the connection.
WAIT_MS = 500


class NotReplicated(RedisError):
    """Fewer replicas than required confirmed a write (it may or may not survive a failover)."""


def waits(redis: Any, acks: int) -> bool:
    return acks > 0 and not hasattr(redis, "get_primaries")  # a Cluster client has get_primaries


def check(acked: Any, acks: int) -> None:
    if int(acked) < acks:
        raise NotReplicated(f"{int(acked)} of {acks} replicas confirmed the write within {WAIT_MS} ms")


async def eval_script(redis: Any, script: Any, keys: list[str], args: list[Any], acks: int) -> Any:
    """``script`` (limits.scripts.Script) then ``WAIT acks`` on one connection; NOSCRIPT loads it and tries again."""
    if not waits(redis, acks):
        return await script(redis, keys, args)
    for _ in range(2):
        if script.sha is None:
            script.sha = await redis.script_load(script.source)
        pipe = redis.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", acks, WAIT_MS)
        try:
            result, acked = await pipe.execute()
        except NoScriptError:
            script.sha = None
            continue
        check(acked, acks)
        return result
    raise NoScriptError("script not loaded")
