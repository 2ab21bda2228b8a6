"""The proxies' Redis memory gauges (gateway_plugins.redis_memory): read from INFO memory, a failure logged once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway_plugins import metrics, redis_memory
from gateway_plugins.settings import load_settings


class FakeRedis:
    def __init__(self, replies: list) -> None:
        self.replies, self.calls = replies, 0

    async def info(self, section: str) -> dict:
        assert section == "memory"
        reply = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        if isinstance(reply, Exception):
            raise reply
        return reply


def _value(gauge) -> float:
    return gauge._value.get()


def test_read_once_sets_both_gauges():
    fake = FakeRedis([{"used_memory": 1234, "maxmemory": 5678, "used_memory_human": "1.2K"}])
    assert asyncio.run(redis_memory.read_once(fake)) == (1234, 5678)
    assert (_value(metrics.REDIS_USED_MEMORY), _value(metrics.REDIS_MAXMEMORY)) == (1234, 5678)


def test_poll_logs_a_failure_streak_once_and_recovers(caplog):
    fake = FakeRedis([ConnectionError(), ConnectionError(), ConnectionError(), {"used_memory": 7, "maxmemory": 0}])

    async def run() -> None:
        task = asyncio.ensure_future(redis_memory.poll(fake, 0.001))
        while fake.calls < 5:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="kubegate.redis_memory"):
        asyncio.run(run())
    assert len([r for r in caplog.records if "INFO memory failed" in r.message]) == 1
    assert (_value(metrics.REDIS_USED_MEMORY), _value(metrics.REDIS_MAXMEMORY)) == (7, 0)


def test_poll_interval_setting(monkeypatch):
    monkeypatch.delenv("KUBEGATE_REDIS_MEMORY_POLL_SECONDS", raising=False)
    assert load_settings().redis_memory_poll_seconds == 30.0
    monkeypatch.setenv("KUBEGATE_REDIS_MEMORY_POLL_SECONDS", "0.5")
    assert load_settings().redis_memory_poll_seconds == 0.5
    monkeypatch.setenv("KUBEGATE_REDIS_MEMORY_POLL_SECONDS", "0")
    with pytest.raises(ValueError, match="KUBEGATE_REDIS_MEMORY_POLL_SECONDS"):
        load_settings()
