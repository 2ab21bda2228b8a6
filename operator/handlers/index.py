"""kopf indexes of LLMGateways, ModelRoutes, Tenants and Budgets: each object parsed once per change, slimmed
(``reconcile.seen``); reconciles read these instead of listing the namespace. Coroutines, so kopf runs them on its
event loop without a thread hop per watch event."""

from __future__ import annotations

from typing import Any

import kopf
from gateway_operator.crd.models import GROUP, VERSION
from gateway_operator.reconcile import seen


@kopf.index(GROUP, VERSION, "modelroutes")
async def route_index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {namespace: seen.seen("modelroutes", body)}


@kopf.index(GROUP, VERSION, "tenants")
async def tenant_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return seen.tenant_keys(namespace, name, body)


@kopf.index(GROUP, VERSION, "budgets")
async def budget_index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {namespace: seen.seen("budgets", body)}


@kopf.index(GROUP, VERSION, "llmgateways")
async def gateway_index(namespace: str, name: str, meta: kopf.Meta, **_: Any) -> dict[Any, Any]:
    return {} if meta.get("deletionTimestamp") else {(namespace, name): True}
