"""kopf indexes of ModelRoutes, Tenants and Budgets: each object parsed once per change, slimmed
(``reconcile.seen``); reconciles read these instead of listing the namespace."""

from __future__ import annotations

from typing import Any

import kopf
from gateway_operator.crd.models import GROUP, VERSION
from gateway_operator.reconcile import seen


@kopf.index(GROUP, VERSION, "modelroutes")
def route_index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {namespace: seen.seen("modelroutes", body)}


@kopf.index(GROUP, VERSION, "tenants")
def tenant_index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {namespace: seen.seen("tenants", body)}


@kopf.index(GROUP, VERSION, "tenants")
def tenant_gateway_index(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): spec.get("gateway")}


@kopf.index(GROUP, VERSION, "budgets")
def budget_index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {namespace: seen.seen("budgets", body)}


@kopf.index(GROUP, VERSION, "llmgateways")
def gateway_index(namespace: str, name: str, meta: kopf.Meta, **_: Any) -> dict[Any, Any]:
    return {} if meta.get("deletionTimestamp") else {(namespace, name): True}
