"""Coalesce bursts of re-render requests: one run at a time per key, and one follow-up run for all who waited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _State:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0
    done: int = 0
    result: Any = None


class Coalescer:
    """``await run(key, fn)``: runs ``fn`` unless a run that started after this request has already finished.

    1,000 Tenants created in a burst would otherwise mean 1,000 full renders of their Gateway, each listing all
    of them (quadratic); here a burst costs two renders. A request's result is that of a run which started after
    the request was made, so nothing the request was about can be missed. Create one per event loop.
    """

    def __init__(self) -> None:
        self._states: dict[Hashable, _State] = {}

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> Any:
        state = self._states.setdefault(key, _State())
        state.requested += 1
        ticket = state.requested
        async with state.lock:
            if state.done >= ticket:
                return state.result
            started = state.requested
            result = await fn()  # on failure ``done`` stays behind: the next waiter runs again
            state.done, state.result = started, result
            return result
