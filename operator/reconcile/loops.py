"""Periodic work of one operator run, as plain asyncio tasks (kopf timers would put a finalizer on every object).

- resync: every ``KUBEGATE_RESYNC_SECONDS`` (30) each live Gateway is reconciled with ``verify``: children deleted
  or edited by hand are put back, a ModelRoute's Secret that appeared is picked up. It writes only what changed.
- budgets: every ``KUBEGATE_BUDGET_REFRESH_SECONDS`` (30) each Gateway's Budgets get their spend from Redis.
- audit checkpoints: every ``KUBEGATE_AUDIT_CHECKPOINT_SECONDS`` (60) each Gateway's verified audit chain heads are
  copied to its checkpoint ConfigMap (``reconcile.checkpoints``); written only when a head moved.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway_operator.reconcile import budgets, checkpoints, seen
from gateway_operator.reconcile.coalesce import Coalescer
from gateway_operator.reconcile.gateway import rerender, snapshot
from gateway_operator.reconcile.watched import Watched, named_namespaces

log = logging.getLogger("kubegate.operator")
RESYNC_ENV = "KUBEGATE_RESYNC_SECONDS"
DEFAULT_RESYNC = 30.0


def resync_interval() -> float:
    return float(os.environ.get(RESYNC_ENV) or DEFAULT_RESYNC)


async def _every(
    what: str, interval: Callable[[], float], memo: Any, visit: Callable[[str, str], Awaitable[Any]]
) -> None:
    while True:
        # Read per round: tests shorten it through the environment after the module is imported.
        await asyncio.sleep(interval())
        for ns, name in sorted(memo.gateways):
            try:
                await visit(ns, name)
            except asyncio.CancelledError:
                raise
            except RuntimeError as exc:
                if "after shutdown" in str(exc):
                    return  # the operator's event loop is shutting down its thread pool: this run is over
                log.warning("%s of LLMGateway %s/%s failed: %s", what, ns, name, type(exc).__name__)
            except Exception as exc:  # one Gateway's failure must not stop the loop for the others
                log.warning("%s of LLMGateway %s/%s failed: %s", what, ns, name, type(exc).__name__)


def init(memo: Any, kwargs: Mapping[str, Any]) -> None:
    """Per operator run (each has its own event loop): shared by every object's (shallow-copied) memo.

    ``kwargs``: what kopf passes a startup handler (its indexes by name, its settings).
    """
    memo.indexes = {seen.GATEWAY_INDEX: kwargs[seen.GATEWAY_INDEX]}
    memo.rerenders = Coalescer()
    memo.gateways = set()
    clusterwide = bool(kwargs["settings"].peering.clusterwide)
    memo.watched = Watched(memo, asyncio.get_running_loop(), clusterwide=clusterwide, namespaces=named_namespaces())
    memo.loops = start(memo)


def start(memo: Any) -> list[asyncio.Task]:
    return [
        asyncio.create_task(
            _every("resync", resync_interval, memo, lambda ns, name: rerender(memo, ns, name, verify=True))
        ),
        asyncio.create_task(
            _every(
                "budget refresh",
                budgets.refresh_interval,
                memo,
                lambda ns, name: budgets.refresh_gateway(ns, name, snapshot(memo, ns)),
            )
        ),
        asyncio.create_task(_every("audit checkpoint", checkpoints.interval, memo, checkpoints.checkpoint_gateway)),
    ]


async def stop(memo: Any) -> None:
    if getattr(memo, "watched", None) is not None:
        # Joined before kopf exits: a daemon thread still in a request at interpreter exit can abort the process.
        await asyncio.to_thread(memo.watched.stop, 10.0)
    if getattr(memo, "rerenders", None) is not None:
        await memo.rerenders.stop()
    tasks = getattr(memo, "loops", None) or []
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
