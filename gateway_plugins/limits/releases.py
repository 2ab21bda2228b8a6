"""Releasing what admits whose reply never came may have reserved (limits.scripts.RELEASE), after Redis is back.

Such an admit ended in a refusal (or a fail-open request without a reservation), so no settle will come for it.
During an outage every request's admit fails like that, most of them without reaching Redis at all: one retrying
task per request would hammer a Redis that is down (thousands of connection attempts a second) and hold as many
tasks. So one task per process works through a bounded queue, backing off while Redis fails and sending the
releases one after another once it answers. What falls out of the queue (full, or older than the leases' grace)
is released anyway when its lease lapses.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from gateway_plugins import replicated
from gateway_plugins.limits.scripts import RELEASE_SCRIPT
from gateway_plugins.policy.redis_client import STORE_ERRORS

log = logging.getLogger("kubegate.limits")

MAX_PENDING = 4096
# Past this a release is dropped: the lease lapses by itself soon after (limits.LEASE_GRACE_SECONDS).
KEEP_SECONDS = 60.0
MAX_PAUSE = 2.0


class Releases:
    def __init__(self) -> None:
        # (give up at, client, replica acks, keys, args), oldest first
        self.pending: collections.deque[tuple[float, Any, int, list[str], list[Any]]] = collections.deque()
        self.dropped = 0
        self.task: asyncio.Task | None = None

    def add(self, redis: Any, acks: int, keys: list[str], args: list[Any]) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append((time.monotonic() + KEEP_SECONDS, redis, acks, keys, args))
        task = self.task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self.task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        pause = 0.0
        while self.pending:
            await asyncio.sleep(pause)
            while self.pending and self.pending[0][0] < time.monotonic():
                self.pending.popleft()
                self.dropped += 1
            if not self.pending:
                break
            _, redis, acks, keys, args = self.pending[0]
            try:
                released = await replicated.eval_script(redis, RELEASE_SCRIPT, keys, args, acks)
            except STORE_ERRORS:
                pause = min(MAX_PAUSE, max(0.2, pause * 2))
                continue
            self.pending.popleft()
            pause = 0.0
            if int(released):
                log.warning("released the reservation of an admit whose reply was lost")
        if self.dropped:
            log.warning("%d reservation releases dropped; their leases lapse by themselves", self.dropped)
            self.dropped = 0

    async def drained(self) -> None:
        """Until the queue is empty (tests)."""
        if self.task is not None:
            await self.task


RELEASES = Releases()
