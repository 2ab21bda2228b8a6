"""ModelRoutes, Tenants and Budgets as the operator sees them: informers (``kube.informer``) fill a ``seen.Store``
in their threads, and each change asks the operator's event loop for a re-render of its Gateway.

Scope follows kopf's: with ``--all-namespaces`` one cluster-wide informer per kind; with ``--namespace`` (RBAC may
then allow nothing cluster-wide) informers per namespace, started with the operator for each namespace named
exactly, and for a glob pattern's namespaces when kopf first reports an LLMGateway there (objects in such a
namespace without any LLMGateway are then not watched; nothing could render them anyway).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection
from typing import Any

import click
from gateway_operator.crd.models import GROUP, VERSION
from gateway_operator.kube.client import api_client
from gateway_operator.kube.informer import Informer
from gateway_operator.reconcile import budgets, seen
from gateway_operator.reconcile.gateway import plan_changed, related_changed
from kubernetes import client

log = logging.getLogger("kubegate.operator")


def named_namespaces() -> set[str]:
    """The namespaces this ``kopf run`` names exactly (``--namespace``, not a glob), from its command line."""
    ctx = click.get_current_context(silent=True)
    patterns = list((ctx.params.get("namespaces") if ctx is not None else None) or ())
    if os.environ.get("KOPF_RUN_NAMESPACE"):  # kopf's legacy single-namespace mode
        patterns.append(os.environ["KOPF_RUN_NAMESPACE"])
    # kopf's pattern syntax: commas list several globs, "!" negates, "*" and "?" match; anything else is one name.
    return {p for p in patterns if isinstance(p, str) and p and not any(c in p for c in "!*?,")}


class Watched:
    def __init__(
        self,
        memo: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        clusterwide: bool,
        namespaces: Collection[str] = (),
        store: seen.Store | None = None,
        api: Callable[[], client.ApiClient] = api_client,
    ) -> None:
        self.store = store if store is not None else seen.Store()
        self._memo, self._loop, self._clusterwide, self._api = memo, loop, clusterwide, api
        self._informers: dict[str | None, list[Informer]] = {}
        self._tasks: set[asyncio.Task] = set()
        for namespace in [None] if clusterwide else sorted(namespaces):
            self.ensure(namespace)

    def ensure(self, namespace: str | None) -> list[Informer]:
        """The informers covering ``namespace``, started if they are not yet."""
        scope = None if self._clusterwide else namespace
        informers = self._informers.get(scope)
        if informers is None:
            informers = self._informers[scope] = [
                Informer(
                    GROUP, VERSION, plural, scope, self._on_event(plural), self._on_listed(plural, scope), self._api
                )
                for plural in seen.PLURALS
            ]
            for informer in informers:
                informer.start()
        return informers

    async def ready(self, namespace: str) -> None:
        """Until every kind of ``namespace`` has been listed once: a reconcile before that would render a Gateway
        without its Tenants (and drop their keys from the policy)."""
        for informer in self.ensure(namespace):
            while not informer.listed.is_set():
                await asyncio.sleep(0.05)

    def stop(self, join_timeout: float = 0) -> None:
        """Stop every informer; with ``join_timeout``, also wait that long for each thread to end."""
        informers = [i for scope in self._informers.values() for i in scope]
        for informer in informers:
            informer.stop()
        for task in self._tasks:
            task.cancel()
        for informer in informers:
            informer.join(join_timeout)

    def _on_event(self, plural: str):
        def on_event(kind: str | None, body: dict[str, Any]) -> None:  # in the informer's thread
            meta = body.get("metadata") or {}
            previous = self.store.get(plural, meta.get("namespace") or "", meta.get("name") or "")
            entry = seen.seen(plural, body, previous)
            if kind == "DELETED":
                self.store.delete(plural, entry)
            else:
                self.store.put(plural, entry)
            try:
                self._loop.call_soon_threadsafe(self._dispatch, plural, kind, entry.raw)
            except RuntimeError:  # the operator run that started this informer is over (its loop is closed)
                self.stop()

        return on_event

    def _on_listed(self, plural: str, scope: str | None):
        def on_listed(listed: set[tuple[str, str]]) -> None:
            for entry in self.store.missing(plural, scope, listed):
                self._on_event(plural)("DELETED", entry.raw)

        return on_listed

    def _dispatch(self, plural: str, kind: str | None, raw: dict[str, Any]) -> None:
        """On the event loop: what the change asks for (a re-render, a GatewayNotFound status)."""
        ns, spec = raw["metadata"].get("namespace") or "", raw.get("spec") or {}
        if plural == "budgets":
            work = budgets.budget_changed(ns, spec, kind, raw, self._memo)
        elif plural == "tenantplans":
            work = plan_changed(ns, raw["metadata"]["name"], kind, self._memo)
        else:
            work = related_changed(plural, ns, spec, kind, raw, self._memo)
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("handling a watch event failed: %s: %s", type(exc).__name__, str(exc)[:300])
