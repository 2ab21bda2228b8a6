"""Data-residency routing: a restricted tenant's request only ever reaches deployments in its regions.

STUB: the residency issue replaces these bodies; the signatures are the contract with ``hooks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.policy.store import CompiledPolicy


def route(ctx: RequestContext, data: dict, policy: CompiledPolicy) -> None:
    """Rewrite ``data['model']`` to the in-region LiteLLM group(s) for ``ctx.model``."""
    ctx.route_group = ctx.model
    data["model"] = ctx.model
