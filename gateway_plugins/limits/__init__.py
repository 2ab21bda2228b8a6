"""Budgets, downgrades and rate limits (one Redis round trip per request before the call).

STUB: the budgets issue replaces these bodies; the signatures are the contract with ``hooks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.runtime import Runtime


async def admit(ctx: RequestContext, data: dict, rt: Runtime) -> None:
    """Check rate limits, reserve the budget estimate and apply downgrades (sets ``ctx.model``).

    Raises an OpenAI-style 429 (``rate_limit_exceeded`` / ``budget_exceeded``) when refused.
    """
    ctx.model = ctx.requested_model


async def settle(ctx: RequestContext, rt: Runtime) -> None:
    """Replace the reservation by the real cost (``ctx.cost_usd``) once the call has ended."""
