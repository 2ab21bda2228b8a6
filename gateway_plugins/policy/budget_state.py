"""Budget state for the operator (status, Kubernetes Events) and for admission decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.schema import Budget, BudgetAction

MICRO = 1_000_000
STATE_RANK = {"ok": 0, "notify": 1, "downgrade": 2, "blocked": 3}


@dataclass(frozen=True, slots=True)
class BudgetState:
    spent_usd: float
    reserved_usd: float
    percent: float
    state: str  # ok | notify | downgrade | blocked
    period_start: datetime
    period_end: datetime


def state_for(budget: Budget, used_usd: float) -> tuple[str, float]:
    """Highest threshold reached by ``used_usd`` (spent + reserved) and the percent of the limit."""
    percent = used_usd / float(budget.limit_usd) * 100.0
    state = "ok"
    for t in budget.thresholds:
        if percent >= t.percent:
            name = "blocked" if t.action is BudgetAction.BLOCK else t.action.value
            if STATE_RANK[name] > STATE_RANK[state]:
                state = name
    return state, percent


async def read_budget_state(
    redis: Any, gateway: GatewayKeys, budget: Budget, now: datetime | None = None
) -> BudgetState:
    """ASYNC (redis.asyncio client). One HMGET on the current period key."""
    start, end = period_bounds(budget, now)
    spent, reserved = await redis.hmget(period_key(gateway, budget, start), "spent", "reserved")
    spent_usd = int(spent or 0) / MICRO
    reserved_usd = int(reserved or 0) / MICRO
    state, percent = state_for(budget, spent_usd)
    return BudgetState(spent_usd, reserved_usd, percent, state, start, end)
