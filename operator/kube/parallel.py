"""Independent API requests several at a time (the API server serves them concurrently; one at a time, 10,000 key
Secrets or statuses take minutes of round trips)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
WORKERS = 8


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, in order, ``WORKERS`` at a time; the first exception is raised after all ran."""
    items = list(items)
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="kubegate-api") as pool:
        return list(pool.map(fn, items))
