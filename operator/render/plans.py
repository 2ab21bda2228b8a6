"""TenantPlans: a Tenant naming a plan (``spec.plan``) takes the plan's fields it does not set itself.

Resolution works on the Tenant's spec as stored (aliases, only what the user set: the CRD defaults no list or
object field), so "set on the Tenant" is "present in its spec". A field the Tenant sets replaces the plan's whole,
except ``rateLimits``, merged key by key (a Tenant may raise its rpm and keep the plan's tpm). The plan's budget
becomes a policy budget of each tenant on it, named ``plan.<tenant>``: a dot no Budget object's policy name may
have, so it never shares a Budget object's spend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway_operator.crd import models as crd
from gateway_operator.render.problems import Problem, field_errors, object_key
from pydantic import ValidationError

from gateway_plugins.policy import schema as pol

PLAN_BUDGET_PREFIX = "plan."


@dataclass(frozen=True, slots=True)
class Resolved:
    spec: dict[str, Any]  # the Tenant's spec with the plan's fields it does not set
    budget: pol.Budget | None  # the plan's budget for this tenant
    effective: dict[str, Any]  # what the Tenant's status shows


def plan_fields(plan: crd.TenantPlan) -> dict[str, Any]:
    """The plan's Tenant fields that are set, by alias, as JSON values."""
    data = plan.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {k: v for k, v in data.items() if k in crd.PLAN_TENANT_FIELDS}


def merged_spec(tenant_spec: dict[str, Any], plan: crd.TenantPlan) -> dict[str, Any]:
    out = dict(tenant_spec)
    for field, value in plan_fields(plan).items():
        own = out.get(field)
        if field == "rateLimits" and isinstance(own, dict):
            out[field] = {**value, **{k: v for k, v in own.items() if v is not None}}
        elif field not in out:
            out[field] = value
    return out


def plan_budget_name(tenant: str) -> str:
    return f"{PLAN_BUDGET_PREFIX}{tenant}"


def plan_budget(tenant: str, plan: crd.TenantPlan) -> pol.Budget | None:
    spec = plan.spec.budget
    if spec is None:
        return None
    return pol.Budget(
        name=plan_budget_name(tenant),
        tenant=tenant,
        limit_usd=spec.limit_usd,
        limit_tokens=spec.limit_tokens,
        period=spec.period,
        timezone=spec.timezone,
        thresholds=[pol.BudgetThreshold(percent=t.percent, action=t.action) for t in spec.thresholds],
        downgrade=dict(spec.downgrade),
        fail_open=spec.fail_open,
    )


def resolve(tenant_name: str, tenant_spec: dict[str, Any], plan: crd.TenantPlan) -> Resolved:
    """The Tenant's spec with ``plan`` applied, the plan budget and the effective values (ValidationError when the
    plan's budget does not fit the policy)."""
    spec = merged_spec(tenant_spec, plan)
    budget = plan_budget(tenant_name, plan)
    effective: dict[str, Any] = {
        "allowedModels": spec.get("allowedModels") or [],
        "allowedRegions": spec.get("allowedRegions") or [],
        "rateLimits": {k: v for k, v in (spec.get("rateLimits") or {}).items() if v is not None},
        "pii": "pii" in spec,
        "cache": "cache" in spec,
        "overrides": sorted(f for f in crd.PLAN_TENANT_FIELDS if f in tenant_spec),
    }
    if budget is not None:
        effective["budget"] = {
            k: v
            for k, v in {
                "name": budget.name,
                "limitUSD": None if budget.limit_usd is None else str(budget.limit_usd),
                "limitTokens": budget.limit_tokens,
                "period": budget.period.value,
            }.items()
            if v is not None
        }
    return Resolved(spec, budget, effective)


def apply_plans(
    tenants: Iterable[crd.Tenant], plans: Iterable[crd.TenantPlan]
) -> tuple[list[crd.Tenant], list[pol.Budget], dict[str, Problem]]:
    """Parsed Tenants with their plans applied (``kubegate dev``, tests; the operator resolves its kept entries in
    ``reconcile.seen.with_plans``): (the Tenants, the plans' budgets, ``Tenant/name`` -> problem of those left out)."""
    by_name = {p.metadata.name: p for p in plans}
    out: list[crd.Tenant] = []
    budgets: list[pol.Budget] = []
    problems: dict[str, Problem] = {}
    for tenant in tenants:
        name, plan_name = tenant.metadata.name, tenant.spec.plan
        if plan_name is None:
            out.append(tenant)
            continue
        plan = by_name.get(plan_name)
        if plan is None:
            problems[object_key("Tenant", name)] = Problem(
                "PlanNotFound", f"spec.plan: TenantPlan {plan_name!r} not found in this namespace"
            )
            continue
        own = tenant.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
        try:
            resolved = resolve(name, own, plan)
            out.append(tenant.model_copy(update={"spec": crd.TenantSpec.model_validate(resolved.spec)}))
        except ValidationError as exc:
            problems[object_key("Tenant", name)] = Problem("PlanInvalid", field_errors(exc, f"TenantPlan {plan_name}"))
            continue
        if resolved.budget is not None:
            budgets.append(resolved.budget)
    return out, budgets, problems
