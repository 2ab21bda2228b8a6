"""The runtime's Redis client against a real redis-server that restarts: the first admit after the
restart is served (stale pooled connection replaced), and a Redis that stays down is a 503 refusal."""

from __future__ import annotations

import asyncio
import time

import pytest
from litellm.proxy._types import ProxyException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway_plugins import limits
from gateway_plugins.runtime import REDIS_RETRIES, make_redis
from tests.limits.conftest import TinyRedis
from tests.limits.test_limits_unit import admit, make_ctx, make_policy, make_rt, req


@pytest.fixture
def server():
    s = TinyRedis()
    s.start()
    yield s
    s.stop()


def test_retry_is_bounded_and_never_replays_timeouts():
    client = make_redis("redis://127.0.0.1:1/0")
    retry = client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == REDIS_RETRIES
    # A read timeout may come after the script ran: replaying it would double count.
    assert RedisConnectionError in retry._supported_errors
    assert RedisTimeoutError not in retry._supported_errors


async def test_first_admit_after_restart_is_served(server):
    policy = make_policy(rpm=1000)
    client = make_redis(server.url)
    try:
        rt = make_rt(client, policy)
        await admit(make_ctx(policy), req(), rt)  # pools one connection
        assert len(client.connection_pool._available_connections) == 1
        server.stop()
        server.start()  # same port, empty: the pooled socket is dead
        ctx = make_ctx(policy)
        await admit(ctx, req(), rt)
        assert "limits" not in ctx.decisions  # admitted through Redis, not fail-open
        assert ctx.reservation is not None
    finally:
        await client.aclose()


async def test_redis_down_still_refuses(server):
    policy = make_policy(rpm=1000)
    client = make_redis(server.url)
    try:
        rt = make_rt(client, policy)
        await admit(make_ctx(policy), req(), rt)
        server.stop()
        ctx = make_ctx(policy)
        with pytest.raises(ProxyException) as exc:
            await admit(ctx, req(), rt)
        assert exc.value.code == "503"
        assert ctx.decisions["limits"] == "unavailable"
    finally:
        await client.aclose()


class ReplyDropper:
    """A TCP relay to a real Redis that, once armed, breaks the client's connection instead of passing on the next
    array reply: Redis ran the command (a script), its client never hears back."""

    def __init__(self, port: int) -> None:
        self.port, self.armed, self.connections = port, False, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src, dst, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self.armed and data.startswith(b"*"):
                        self.armed = False
                        writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True), return_exceptions=True)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_an_admit_resent_after_its_reply_was_lost_is_counted_once(server):
    """redis-py resends a command whose connection broke; when the break came after Redis ran the admit script, the
    resend finds the admission's mark and gets its reply: one reservation, not two under one lease."""
    from gateway_plugins.policy.budget_state import read_budget_state
    from gateway_plugins.policy.keys import GatewayKeys
    from gateway_plugins.policy.periods import period_bounds

    policy = make_policy(rpm=1000)
    budget = policy.policy.budgets[0]
    relay = ReplyDropper(server.port)
    client = make_redis(await relay.start())
    try:
        rt = make_rt(client, policy)
        first = make_ctx(policy)
        await admit(first, req(100), rt)  # loads the script; reserves 0.1 USD
        relay.armed = True
        resent = make_ctx(policy)
        await admit(resent, req(200), rt)  # ran, reply lost, resent on a new connection: admitted
        assert not relay.armed and relay.connections == 2
        assert "limits" not in resent.decisions and resent.reservation is not None
        state = await read_budget_state(client, GatewayKeys("default", "gw"), budget)
        assert state.reserved_usd == pytest.approx(0.3)
        assert int(await client.get(GatewayKeys("default", "gw").rate("t1", "rpm", int(time.time() // 60)))) == 2
        for ctx in (first, resent):
            ctx.status, ctx.cost_usd = "success", 0.01
            await limits.settle(ctx, rt)
        state = await read_budget_state(client, GatewayKeys("default", "gw"), budget)
        assert state.reserved_usd == 0 and state.spent_usd == pytest.approx(0.02)
        assert await client.zcard(GatewayKeys("default", "gw").budget_leases("t1", "b1", period_bounds(budget)[0])) == 0
    finally:
        await client.aclose()
        await relay.stop()


async def test_an_outage_queues_one_bounded_release_drain_not_a_task_per_refusal(server, monkeypatch, release_queue):
    """Every admit fails while Redis is down, nearly all without reaching it: their releases wait in one bounded
    queue worked by one task (no connection storm against the Redis that is down), and go out once it is back."""
    from gateway_plugins.limits import releases

    monkeypatch.setattr(releases, "MAX_PENDING", 10)
    queue = release_queue
    policy = make_policy(rpm=1000)
    client = make_redis(server.url)
    try:
        rt = make_rt(client, policy)
        await admit(make_ctx(policy), req(), rt)
        server.stop()
        tasks_before = len(asyncio.all_tasks())
        for _ in range(50):
            with pytest.raises(ProxyException):
                await admit(make_ctx(policy), req(), rt)
        assert len(queue.pending) == 10 and queue.dropped == 40
        assert len(asyncio.all_tasks()) <= tasks_before + 1
        server.start()
        await asyncio.wait_for(queue.drained(), 30)
        assert not queue.pending and queue.dropped == 0
    finally:
        await client.aclose()
