"""Budget state for the operator (status, Kubernetes Events) and for admission decisions.

A Budget limits USD, tokens or both; its use is the larger of the two ratios, so thresholds (notify, downgrade,
block) act on whichever limit is nearer.
"""

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
    spent_tokens: int = 0
    reserved_tokens: int = 0
    # The same spend at list prices, when the Gateway has volume discounts (None: none were ever counted).
    spent_list_usd: float | None = None


def used_ratio(budget: Budget, used_usd: float, used_tokens: int = 0) -> float:
    """Share of the limit used: the larger of the USD and token ratios (of the limits the budget has)."""
    ratio = 0.0
    if budget.limit_usd is not None:
        ratio = used_usd / float(budget.limit_usd)
    if budget.limit_tokens is not None:
        ratio = max(ratio, used_tokens / budget.limit_tokens)
    return ratio


def state_for(budget: Budget, used_usd: float, used_tokens: int = 0) -> tuple[str, float]:
    """Highest threshold reached by ``used_usd`` / ``used_tokens`` (spent + reserved) and the percent of the limit
    (of the nearer one when the budget has both)."""
    percent = used_ratio(budget, used_usd, used_tokens) * 100.0
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
    spent, reserved, spent_tok, reserved_tok, spent_list = await redis.hmget(
        period_key(gateway, budget, start), "spent", "reserved", "spent_tokens", "reserved_tokens", "spent_list"
    )
    spent_usd = int(spent or 0) / MICRO
    reserved_usd = int(reserved or 0) / MICRO
    spent_tokens = int(spent_tok or 0)
    state, percent = state_for(budget, spent_usd, spent_tokens)
    listed = int(spent_list) / MICRO if spent_list is not None else None
    return BudgetState(
        spent_usd, reserved_usd, percent, state, start, end, spent_tokens, int(reserved_tok or 0), listed
    )


MODEL_FIELD = b"m:"


async def read_model_spend(
    redis: Any, gateway: GatewayKeys, budget: Budget, now: datetime | None = None
) -> dict[str, float]:
    """ASYNC. The current period's spend per served public model (USD), largest first: the ``m:<model>`` fields the
    settle script counts (``gateway_plugins.limits.scripts``). One HGETALL of a hash of a few fields per model."""
    start, _ = period_bounds(budget, now)
    fields = await redis.hgetall(period_key(gateway, budget, start))
    out = {k[len(MODEL_FIELD) :].decode(): int(v) / MICRO for k, v in fields.items() if k.startswith(MODEL_FIELD)}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
