"""Writes a replica has confirmed: ``WAIT`` on the connection that wrote, for a Sentinel-managed Redis.

Redis replication is asynchronous: a primary that acknowledged a write and died before sending it on loses it
when Sentinel promotes the replica. With ``KUBEGATE_REDIS_REPLICA_ACKS=n`` the audit append and the budget settle
are each followed by ``WAIT n`` on the same connection (a pipeline: one round trip), and a write fewer than ``n``
replicas confirmed counts as failed, so it is written again: both writes are idempotent (the audit append skips
sequence numbers its chain head already has; a settle marks its reservation as settled in the same script).
``WAIT`` is not a consensus protocol: a write confirmed by a replica that Sentinel does not promote is still lost
(docs/redis.md). In a Redis Cluster the writes and their ``WAIT`` go on one connection to the node serving the
key's slot (``on_one_connection``).
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError, RedisError

# How long one WAIT may block; under the client's read timeout (runtime.REDIS_READ_TIMEOUT), so a replica that is gone fails the write
# (and it is retried) rather than the connection.
WAIT_MS = 500


class NotReplicated(RedisError):
    """Fewer replicas than required confirmed a write (it may or may not survive a failover)."""


def is_cluster(redis: Any) -> bool:
    return hasattr(redis, "get_primaries")  # redis-py's Cluster clients, not its single-server ones


async def on_one_connection(redis: Any, key: str, *commands: tuple[Any, ...]) -> list[Any]:
    """``commands`` pipelined on one connection, as ``WAIT`` needs (it counts only its own connection's writes);
    their replies, the first error reply raised. In a Redis Cluster the connection is to the node serving ``key``'s
    slot: the cluster client would route each command on its own. A node that moved the slot answers MOVED (raised:
    the write is retried, and the client's next routed command refreshes its slot map)."""
    if not is_cluster(redis):
        pipe = redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()
    from redis.asyncio.cluster import PipelineCommand

    await redis.initialize()
    node = redis.get_node_from_key(key)
    pipeline = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
    await node.execute_pipeline(pipeline)
    for command in pipeline:
        if isinstance(command.result, Exception):
            raise command.result
    return [command.result for command in pipeline]


def raise_queued_error(exec_reply: Any) -> None:
    """EXEC's replies hold a queued command's error as one of them, not raised."""
    for reply in exec_reply or []:
        if isinstance(reply, Exception):
            raise reply


def check(acked: Any, acks: int) -> None:
    if int(acked) < acks:
        raise NotReplicated(f"{int(acked)} of {acks} replicas confirmed the write within {WAIT_MS} ms")


async def eval_script(redis: Any, script: Any, keys: list[str], args: list[Any], acks: int) -> Any:
    """``script`` (limits.scripts.Script) then ``WAIT acks`` on one connection; NOSCRIPT loads it and tries again."""
    if acks <= 0:
        return await script(redis, keys, args)
    for _ in range(2):
        if script.sha is None:
            script.sha = await redis.script_load(script.source)
        try:
            result, acked = await on_one_connection(
                redis, keys[0], ("EVALSHA", script.sha, len(keys), *keys, *args), ("WAIT", acks, WAIT_MS)
            )
        except NoScriptError:
            script.sha = None
            continue
        check(acked, acks)
        return result
    raise NoScriptError("script not loaded")
