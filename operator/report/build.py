"""Aggregate audit records into a report (pure: records and budgets in, numbers out)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway_plugins.policy.budget_state import used_ratio
from gateway_plugins.policy.periods import period_bounds
from gateway_plugins.policy.schema import Budget


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: str
    tenant: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    # The same at list prices: above cost_usd when a volume discount applied (audit decisions.discount.list_cost_usd).
    list_usd: float | None = None


@dataclass(frozen=True, slots=True)
class BudgetRow:
    namespace: str
    budget: str
    tenant: str
    period_start: str
    period_end: str
    limit_usd: float | None  # None: the Budget limits tokens only
    spent_usd: float
    percent: float  # of the nearer limit when the Budget has both
    partial: bool  # the report range does not cover the whole period so far
    limit_tokens: int | None = None  # None: the Budget limits USD only
    spent_tokens: int = 0  # prompt_tokens + completion_tokens of the period's records


@dataclass(frozen=True, slots=True)
class RegionRow:
    tenant: str
    region: str
    requests: int
    restricted: int  # of which the tenant had a residency restriction
    in_region: int  # of which were served inside the allowed regions


@dataclass(frozen=True, slots=True)
class CacheRow:
    tenant: str
    hits: int
    misses: int
    saved_usd: float  # what the hits' entries cost when they were filled


@dataclass
class Report:
    since: datetime
    until: datetime
    records: int
    usage: list[UsageRow]
    budgets: list[BudgetRow]
    refusals: dict[str, int]
    refusals_by_tenant: dict[tuple[str, str], int]
    pii: dict[str, int]
    pii_by_tenant: dict[tuple[str, str], int]
    regions: list[RegionRow]
    outside_region: int
    integrity: str
    statuses: dict[str, int] = field(default_factory=dict)
    cache: list[CacheRow] = field(default_factory=list)

    @property
    def total_saved(self) -> float:
        return sum(r.saved_usd for r in self.cache)

    @property
    def total_cost(self) -> float:
        return sum(r.cost_usd for r in self.usage)

    @property
    def total_list(self) -> float:
        """Cost at list prices (equal to ``total_cost`` unless a volume discount applied)."""
        return sum(r.cost_usd if r.list_usd is None else r.list_usd for r in self.usage)

    @property
    def total_requests(self) -> int:
        return sum(r.requests for r in self.usage)

    def cost_by_tenant_day(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for r in self.usage:
            out[r.tenant][r.day] += r.cost_usd
        return {t: dict(days) for t, days in out.items()}

    def cost_by_model(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for r in self.usage:
            out[r.model] += r.cost_usd
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _served(rec: dict[str, Any]) -> str:
    return rec.get("served_model") or rec.get("model") or rec.get("requested_model") or "unknown"


def budget_rows(
    records: list[dict[str, Any]], budgets: list[tuple[str, Budget]], since: datetime, until: datetime
) -> list[BudgetRow]:
    """Spend of each Budget's period that contains ``until``, from the records (as the report can see them)."""
    rows = []
    for namespace, budget in budgets:
        start, end = period_bounds(budget, until)
        period = [
            r
            for r in records
            if r.get("tenant") == budget.tenant and start.timestamp() <= float(r["time"]) < end.timestamp()
        ]
        spent = sum(float(r.get("cost_usd") or 0) for r in period)
        tokens = sum(int(r.get("prompt_tokens") or 0) + int(r.get("completion_tokens") or 0) for r in period)
        limit = float(Decimal(budget.limit_usd)) if budget.limit_usd is not None else None
        rows.append(
            BudgetRow(
                namespace=namespace,
                budget=budget.name,
                tenant=budget.tenant,
                period_start=start.isoformat(),
                period_end=end.isoformat(),
                limit_usd=limit,
                spent_usd=round(spent, 6),
                percent=round(used_ratio(budget, spent, tokens) * 100.0, 2),
                partial=since > start,
                limit_tokens=budget.limit_tokens,
                spent_tokens=tokens,
            )
        )
    return rows


def build_report(
    records: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    integrity: str,
    budgets: list[tuple[str, Budget]] | None = None,
) -> Report:
    usage: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
    refusals: Counter[str] = Counter()
    refusals_by_tenant: Counter[tuple[str, str]] = Counter()
    pii: Counter[str] = Counter()
    pii_by_tenant: Counter[tuple[str, str]] = Counter()
    regions: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    statuses: Counter[str] = Counter()
    cache: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    outside = 0
    for rec in records:
        tenant = rec.get("tenant") or "unknown"
        status = rec.get("status") or "unknown"
        summary = (rec.get("decisions") or {}).get("summary") if status == "summary" else None
        if isinstance(summary, dict):
            # Refusals without a valid key, counted per window; each (reason, source) count includes its sample,
            # which is a record of its own (counted below as any refusal), so the summary adds the rest.
            samples = summary.get("samples") or {}
            for reason, by_source in (summary.get("counts") or {}).items():
                for source, n in by_source.items():
                    rest = int(n) - (1 if source in (samples.get(reason) or {}) else 0)
                    statuses["refused"] += rest
                    refusals[reason] += rest
                    refusals_by_tenant[(tenant, reason)] += rest
            continue
        statuses[status] += 1
        cached = (rec.get("decisions") or {}).get("cache")
        if isinstance(cached, dict) and cached.get("result") in ("hit", "miss"):
            row = cache[tenant]
            row[0 if cached["result"] == "hit" else 1] += 1
            row[2] += float(cached.get("saved_usd") or 0.0)
        if status == "refused":
            reason = str((rec.get("decisions") or {}).get("refusal") or "unknown")
            refusals[reason] += 1
            refusals_by_tenant[(tenant, reason)] += 1
        for entity, count in (rec.get("pii_counts") or {}).items():
            pii[entity] += int(count)
            pii_by_tenant[(tenant, entity)] += int(count)
        if status == "refused" and not rec.get("region"):
            continue  # never reached an upstream: no usage row, no region
        acc = usage[(_day(float(rec["time"])), tenant, _served(rec))]
        acc[0] += 1
        acc[1] += int(rec.get("prompt_tokens") or 0)
        acc[2] += int(rec.get("completion_tokens") or 0)
        acc[3] += float(rec.get("cost_usd") or 0.0)
        discount = (rec.get("decisions") or {}).get("discount") or {}
        acc[4] += float(discount.get("list_cost_usd") or rec.get("cost_usd") or 0.0)
        region = rec.get("region")
        if region:
            allowed = rec.get("allowed_regions") or []
            row = regions[(tenant, region)]
            row[0] += 1
            if allowed:
                row[1] += 1
                if region in allowed:
                    row[2] += 1
                else:
                    outside += 1
    return Report(
        since=since,
        until=until,
        records=len(records),
        usage=[
            UsageRow(day, tenant, model, int(a[0]), int(a[1]), int(a[2]), round(a[3], 8), round(a[4], 8))
            for (day, tenant, model), a in sorted(usage.items())
        ],
        budgets=budget_rows(records, budgets or [], since, until),
        refusals=dict(refusals.most_common()),
        refusals_by_tenant=dict(sorted(refusals_by_tenant.items())),
        pii=dict(pii.most_common()),
        pii_by_tenant=dict(sorted(pii_by_tenant.items())),
        regions=[RegionRow(t, r, *v) for (t, r), v in sorted(regions.items())],
        outside_region=outside,
        integrity=integrity,
        statuses=dict(statuses.most_common()),
        cache=[CacheRow(t, int(v[0]), int(v[1]), round(v[2], 8)) for t, v in sorted(cache.items())],
    )
