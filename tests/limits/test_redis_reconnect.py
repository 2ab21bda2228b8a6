"""The runtime's Redis client against a real redis-server that restarts: the first admit after the
restart is served (stale pooled connection replaced), and a Redis that stays down is a 503 refusal."""

from __future__ import annotations

import pytest
from litellm.proxy._types import ProxyException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
