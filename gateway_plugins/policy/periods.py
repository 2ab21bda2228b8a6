"""Calendar-aligned budget periods in the budget's time zone (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import Budget, BudgetPeriod


def period_bounds(budget: Budget, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the period containing ``now``, as aware datetimes."""
    zone = ZoneInfo(budget.timezone)
    local = (now or datetime.now(UTC)).astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if budget.period is BudgetPeriod.DAILY:
        start, end = day, day + timedelta(days=1)
    elif budget.period is BudgetPeriod.WEEKLY:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    # Attach the zone after the arithmetic so DST days keep their wall-clock midnight.
    return start.replace(tzinfo=zone), end.replace(tzinfo=zone)


def period_key(keys: GatewayKeys, budget: Budget, start: datetime) -> str:
    return keys.budget(budget.tenant, budget.name, start)


def lease_key(keys: GatewayKeys, budget: Budget, start: datetime) -> str:
    return keys.budget_leases(budget.tenant, budget.name, start)
