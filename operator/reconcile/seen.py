"""What the operator keeps of each ModelRoute, Tenant and Budget: the fields it uses, parsed once per change.

A Tenant or Budget is kept as the piece of the policy it renders to (``render.gateway.TenantPiece``, a policy
``Budget``), not as its parsed model: at 10,000 of each, the parsed models were the largest part of the operator's
memory, and each render rebuilt every policy entry from them.

A ``Store`` holds one ``Seen`` per object, built in an informer thread (``reconcile.watched``) when its watch event
arrives; a reconcile takes a snapshot of it instead of listing every object of the namespace (at 10,000 Tenants a
list is tens of MiB of JSON, and each object used to be parsed again on every reconcile). ``managedFields`` and annotations the
operator does not read (``kubectl.kubernetes.io/last-applied-configuration`` repeats the whole spec) are dropped.
Without a store (a reconcile called directly, e.g. by tests) the same entries are built from one list call each.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway_operator.crd import models as crd
from gateway_operator.render.gateway import piece_of
from gateway_operator.render.plans import PLAN_BUDGET_PREFIX, resolve
from gateway_operator.render.problems import INVALID_SPEC, Problem, field_errors, object_key
from pydantic import BaseModel, ValidationError

ANNOTATION_PREFIX = "kubegate.dev/"
META_FIELDS = ("name", "namespace", "uid", "generation", "deletionTimestamp")
# The kinds a Gateway renders, in the order of ``Objects``.
PLURALS = ("modelroutes", "tenants", "budgets", "tenantplans")
# kopf index (handlers/index.py) of (namespace, name) of each LLMGateway that is not being deleted.
GATEWAY_INDEX = "gateway_index"
MODELS: dict[str, type[BaseModel]] = {
    "modelroutes": crd.ModelRoute,
    "tenants": crd.Tenant,
    "budgets": crd.Budget,
    "tenantplans": crd.TenantPlan,
}


@dataclass(frozen=True, slots=True)
class Seen:
    """One object as the operator uses it: ``raw`` (slimmed body: status reads and writes, owner references) and
    its ``piece`` (``render.gateway.piece_of``; a ModelRoute is kept whole), or the ``problem`` that kept it from
    parsing or rendering."""

    raw: dict[str, Any]
    piece: Any
    problem: Problem | None

    @property
    def name(self) -> str:
        return self.raw["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.raw["metadata"].get("namespace") or ""

    @property
    def spec(self) -> dict[str, Any]:
        return self.raw["spec"]


# Strings up to this long are shared between objects (``sys.intern``).
INTERN_MAX = 256


def compact(value: Any) -> Any:
    """``value`` rebuilt with its keys and short strings shared between objects: each JSON document decodes into its
    own copies of ``"observedGeneration"``, ``"Ready"``, a Gateway's name or the same condition message, which at
    10,000 Tenants and 10,000 Budgets was about a KiB per object of the operator's resident memory."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= INTERN_MAX else value
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in META_FIELDS if meta.get(k) is not None}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(ANNOTATION_PREFIX)}
    if annotations:
        kept["annotations"] = annotations
    return compact(
        {
            "apiVersion": body.get("apiVersion", crd.API_VERSION),
            "kind": body.get("kind"),
            "metadata": kept,
            "spec": dict(body.get("spec") or {}),
            "status": dict(body.get("status") or {}),
        }
    )


def seen(plural: str, body: Mapping[str, Any], previous: Seen | None = None) -> Seen:
    """The entry of ``body``; ``previous``: this object's entry so far. A status write is a watch event too, and the
    spec (all a model is parsed for) changes only with the generation, so such an event reuses the parse."""
    raw = slim(body)
    model_cls = MODELS[plural]
    raw["kind"] = raw["kind"] or model_cls.model_fields["kind"].default
    meta = raw["metadata"]
    if previous is not None and meta.get("generation") is not None:
        known = previous.raw["metadata"]
        if (known.get("uid"), known.get("generation")) == (meta.get("uid"), meta["generation"]):
            return Seen(raw, previous.piece, previous.problem)
    try:
        # The status is read from ``raw`` only: not parsed a second time.
        model = model_cls.model_validate({**raw, "status": None})
    except ValidationError as exc:
        return Seen(raw, None, Problem(INVALID_SPEC, field_errors(exc)))
    if plural in ("modelroutes", "tenantplans"):
        return Seen(raw, model, None)  # few, and read whole by the renderer
    if plural == "budgets" and meta["name"].startswith(PLAN_BUDGET_PREFIX):
        message = f"metadata.name: {PLAN_BUDGET_PREFIX}* names the budgets of TenantPlans; rename this Budget"
        return Seen(raw, None, Problem(INVALID_SPEC, message))
    try:
        return Seen(raw, piece_of(raw["kind"], model), None)
    except ValidationError as exc:
        return Seen(raw, None, Problem(INVALID_SPEC, field_errors(exc, f"policy {raw['kind'].lower()}")))


@dataclass(frozen=True, slots=True)
class Objects:
    """The ModelRoutes, Tenants, Budgets and TenantPlans of one namespace at one moment."""

    routes: list[Seen]
    tenants: list[Seen]
    budgets: list[Seen]
    plans: list[Seen] = field(default_factory=list)


class Store:
    """Every ModelRoute, Tenant and Budget the informers (``reconcile.watched``) have seen: plural -> namespace ->
    name -> entry. Written by the informer threads, read by reconciles in other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, dict[str, Seen]]] = {plural: {} for plural in MODELS}

    def put(self, plural: str, entry: Seen) -> None:
        with self._lock:
            self._items[plural].setdefault(entry.namespace, {})[entry.name] = entry

    def delete(self, plural: str, entry: Seen) -> None:
        with self._lock:
            self._items[plural].get(entry.namespace, {}).pop(entry.name, None)

    def missing(self, plural: str, namespace: str | None, listed: set[tuple[str, str]]) -> list[Seen]:
        """Entries of ``namespace`` (None: all) that a fresh list no longer has: deleted while nobody watched."""
        with self._lock:
            scopes = self._items[plural].items()
            return [
                entry
                for ns, names in scopes
                if namespace is None or ns == namespace
                for name, entry in names.items()
                if (ns, name) not in listed
            ]

    def snapshot(self, namespace: str) -> Objects:
        with self._lock:
            return Objects(*(list(self._items[plural].get(namespace, {}).values()) for plural in PLURALS))

    def get(self, plural: str, namespace: str, name: str) -> Seen | None:
        with self._lock:
            return self._items[plural].get(namespace, {}).get(name)

    def tenant_gateway(self, namespace: str, tenant: str) -> str | None:
        with self._lock:
            entry = self._items["tenants"].get(namespace, {}).get(tenant)
        return entry.spec.get("gateway") if entry is not None else None


def gateway_live(indexes: Mapping[str, Any], namespace: str, gateway: str) -> bool:
    return indexes[GATEWAY_INDEX].get((namespace, gateway)) is not None


def live_gateways(indexes: Mapping[str, Any], namespace: str) -> list[str]:
    return sorted(name for ns, name in indexes[GATEWAY_INDEX] if ns == namespace)


def from_lists(lists: Mapping[str, Iterable[Mapping[str, Any]]]) -> Objects:
    """Entries built from list calls (``plural`` -> items)."""
    return Objects(*([seen(p, b) for b in lists.get(p, ())] for p in PLURALS))


def split(entries: Iterable[Seen]) -> tuple[list[Any], dict[str, Problem]]:
    """(the pieces, ``Kind/name`` -> problem of the others), as ``render.problems.parse_objects`` gives."""
    valid: list[Any] = []
    problems: dict[str, Problem] = {}
    for entry in entries:
        if entry.piece is not None:
            valid.append(entry.piece)
        elif entry.problem is not None:
            problems[object_key(entry.raw["kind"], entry.name)] = entry.problem
    return valid, problems


def tenants_on_plan(objects: Objects, plan: str) -> list[Seen]:
    return [t for t in objects.tenants if t.spec.get("plan") == plan]


# (tenant uid, generation, plan uid, plan generation) -> the resolved entry: a plan edit re-resolves its tenants once.
_resolved: dict[tuple[Any, ...], tuple[Seen, Any, dict[str, Any]]] = {}
RESOLVED_MAX = 100_000


def with_plans(tenants: list[Seen], plans: list[Seen]) -> tuple[list[Seen], list[Any], dict[str, dict[str, Any]]]:
    """``tenants`` with their plans applied: (entries, the plans' budgets, tenant -> status.plan/effective).

    A Tenant naming a plan that is missing or invalid is left out with the reason (PlanNotFound, PlanInvalid)."""
    by_name = {p.name: p for p in plans}
    out: list[Seen] = []
    budgets: list[Any] = []
    statuses: dict[str, dict[str, Any]] = {}
    for entry in tenants:
        plan_name = entry.spec.get("plan")
        if not plan_name:
            out.append(entry)
            continue
        plan = by_name.get(plan_name)
        if plan is None or plan.piece is None:
            reason = "PlanNotFound" if plan is None else "PlanInvalid"
            detail = "not found in this namespace" if plan is None else "is invalid (see its status)"
            out.append(Seen(entry.raw, None, Problem(reason, f"spec.plan: TenantPlan {plan_name!r} {detail}")))
            continue
        meta, plan_meta = entry.raw["metadata"], plan.raw["metadata"]
        key = (meta.get("uid"), meta.get("generation"), plan_meta.get("uid"), plan_meta.get("generation"))
        cached = _resolved.get(key) if None not in key else None
        if cached is None:
            try:
                resolved = resolve(entry.name, entry.spec, plan.piece)
            except ValidationError as exc:
                problem = Problem("PlanInvalid", field_errors(exc, f"TenantPlan {plan_name}"))
                cached = (Seen(entry.raw, None, problem), None, {})
            else:
                merged = seen("tenants", {**entry.raw, "spec": resolved.spec})
                cached = (merged, resolved.budget, {"plan": plan_name, "effective": resolved.effective})
            if None not in key:
                if len(_resolved) >= RESOLVED_MAX:
                    _resolved.clear()
                _resolved[key] = cached
        merged, budget, status = cached
        # The entry as stored now (its status moves on), with the resolved piece.
        out.append(Seen(entry.raw, merged.piece, merged.problem))
        if budget is not None and merged.piece is not None:
            budgets.append(budget)
        if status:
            statuses[entry.name] = status
    return out, budgets, statuses
