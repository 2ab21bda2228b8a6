"""kopf index of LLMGateways (ModelRoutes, Tenants and Budgets come through ``reconcile.watched`` instead)."""

from __future__ import annotations

from typing import Any

import kopf
from gateway_operator.crd.models import GROUP, VERSION


@kopf.index(GROUP, VERSION, "llmgateways")
async def gateway_index(namespace: str, name: str, meta: kopf.Meta, **_: Any) -> dict[Any, Any]:
    return {} if meta.get("deletionTimestamp") else {(namespace, name): True}
