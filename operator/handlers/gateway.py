"""kopf wiring of LLMGateways; the work is in ``gateway_operator.reconcile``.

There are no kopf timers (a timer makes kopf put a finalizer on every object, so a stopped operator would block
the deletion of Gateways, Budgets and their namespace); periodic work runs in ``reconcile.loops``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import kopf
from gateway_operator.crd.models import GROUP, VERSION
from gateway_operator.reconcile import gateway as rec
from gateway_operator.reconcile import loops
from kubernetes import client


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


@kopf.on.startup()
async def startup(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf passes its Gateway index by name; it stays live, and resource handlers run only once it is filled.
    loops.init(memo, kwargs)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await loops.stop(memo)


@kopf.on.event(GROUP, VERSION, "llmgateways")
async def gateway_seen(namespace: str, name: str, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The set of live Gateways the periodic loops visit (kopf's namespace scoping applies to it), and the watch
    of their namespace's ModelRoutes, Tenants and Budgets."""
    memo.watched.ensure(namespace)
    if rec.gateway_seen(memo, namespace, name, type, bool(body.metadata.get("deletionTimestamp"))):
        await asyncio.to_thread(rec.orphans, namespace, name)


@kopf.on.resume(GROUP, VERSION, "llmgateways")
@kopf.on.create(GROUP, VERSION, "llmgateways")
@kopf.on.update(GROUP, VERSION, "llmgateways")
async def gateway_reconcile(namespace: str, name: str, uid: str, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    try:
        # Spec changes and restarts verify every child (drift repair); coalesced with related-object events.
        await rec.rerender(memo, namespace, name, verify=True)
    except client.ApiException as exc:
        patch.status["conditions"] = rec.failed_conditions(exc, uid)
        raise kopf.TemporaryError(f"reconcile failed: HTTP {exc.status}", delay=10) from None
