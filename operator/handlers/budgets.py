"""kopf wiring of Budgets; the status refresh and notifications are in ``gateway_operator.reconcile.budgets``."""

from __future__ import annotations

from typing import Any

import kopf
from gateway_operator.crd.models import GROUP, VERSION
from gateway_operator.reconcile import budgets


@kopf.on.event(GROUP, VERSION, "budgets")
async def budget_changed(
    namespace: str, spec: dict[str, Any], type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A Budget names its Tenant, not its Gateway: re-render the Tenant's Gateway."""
    await budgets.budget_changed(namespace, spec, type, dict(body), memo)
