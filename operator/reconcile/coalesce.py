"""Coalesce bursts of re-render requests: one run at a time per key, and one follow-up run for all who waited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _State:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0
    done: int = 0
    result: Any = None
    queued: bool = False  # a background run is waiting for the lock (it will start after every later request)


log = logging.getLogger("kubegate.operator")


class Coalescer:
    """``await run(key, fn)``: runs ``fn`` unless a run that started after this request has already finished.

    1,000 Tenants created in a burst would otherwise mean 1,000 full renders of their Gateway, each listing all
    of them (quadratic); here a burst costs two renders. A request's result is that of a run which started after
    the request was made, so nothing the request was about can be missed. Create one per event loop.
    """

    def __init__(self) -> None:
        self._states: dict[Hashable, _State] = {}
        self._background: set[asyncio.Task] = set()

    def request(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> None:
        """Fire and forget: a run of ``fn`` will start after this call (failures are logged, not raised).

        For watch events: 10,000 objects created at once are 10,000 events, and each waiting for a reconcile would
        keep its handler, its body and its kopf worker alive for as long as the reconciles take. At most one
        background run per key waits; a request made while one waits is covered by it.
        """
        state = self._states.setdefault(key, _State())
        if state.queued:
            return
        state.queued = True
        task = asyncio.create_task(self.run(key, fn, queued=True))
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("background reconcile failed: %s: %s", type(exc).__name__, str(exc)[:500])

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[Any]], *, queued: bool = False) -> Any:
        state = self._states.setdefault(key, _State())
        state.requested += 1
        ticket = state.requested
        async with state.lock:
            if queued:
                state.queued = False  # from here on, a new request needs a new run
            if state.done >= ticket:
                return state.result
            started = state.requested
            result = await fn()  # on failure ``done`` stays behind: the next waiter runs again
            state.done, state.result = started, result
            return result
