"""What the operator keeps of each ModelRoute, Tenant and Budget: the fields it uses, parsed once per change.

kopf indexes (``handlers/index.py``) hold one ``Seen`` per object, built when its watch event arrives; a reconcile
takes a snapshot of them instead of listing every object of the namespace (at 10,000 Tenants a list is tens of
MiB of JSON, and each object used to be parsed again on every reconcile). ``managedFields`` and annotations the
operator does not read (``kubectl.kubernetes.io/last-applied-configuration`` repeats the whole spec) are dropped.
Without indexes (a reconcile called directly, e.g. by tests) the same entries are built from one list call each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway_operator.crd import models as crd
from gateway_operator.render.problems import INVALID_SPEC, Problem, field_errors, object_key
from pydantic import BaseModel, ValidationError

ANNOTATION_PREFIX = "kubegate.dev/"
META_FIELDS = ("name", "namespace", "uid", "generation", "deletionTimestamp")
# kopf index names (the functions in handlers/index.py) per plural.
INDEXES = {"modelroutes": "route_index", "tenants": "tenant_index", "budgets": "budget_index"}
# The Tenant index also maps (namespace, Tenant name) -> its Gateway: a Budget event finds its Gateway without a
# scan or a request (one index function per kind: kopf's cost is per index function and watch event).
TENANT_GATEWAY_INDEX = INDEXES["tenants"]
# (namespace, name) of each LLMGateway that is not being deleted.
GATEWAY_INDEX = "gateway_index"
ALL_INDEXES = (*INDEXES.values(), GATEWAY_INDEX)
MODELS: dict[str, type[BaseModel]] = {"modelroutes": crd.ModelRoute, "tenants": crd.Tenant, "budgets": crd.Budget}


@dataclass(frozen=True, slots=True)
class Seen:
    """One object as the operator uses it: ``raw`` (slimmed body: status reads and writes, owner references) and
    its parsed ``model``, or the ``problem`` that kept it from parsing."""

    raw: dict[str, Any]
    model: Any
    problem: Problem | None

    @property
    def name(self) -> str:
        return self.raw["metadata"]["name"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.raw["spec"]


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in META_FIELDS if meta.get(k) is not None}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(ANNOTATION_PREFIX)}
    if annotations:
        kept["annotations"] = annotations
    return {
        "apiVersion": body.get("apiVersion", crd.API_VERSION),
        "kind": body.get("kind"),
        "metadata": kept,
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


# uid -> (generation, model, problem): a status write is a watch event too, and the spec (all a model is parsed
# for) changes only with the generation, so such an event reuses the parse.
_parsed: dict[str, tuple[int, Any, Problem | None]] = {}


def seen(plural: str, body: Mapping[str, Any]) -> Seen:
    raw = slim(body)
    model_cls = MODELS[plural]
    raw["kind"] = raw["kind"] or model_cls.model_fields["kind"].default
    meta = raw["metadata"]
    uid, generation = meta.get("uid"), meta.get("generation")
    known = _parsed.get(uid) if uid is not None else None
    if known is not None and generation is not None and known[0] == generation:
        return Seen(raw, known[1], known[2])
    try:
        # The status is read from ``raw`` only: not kept a second time inside the model.
        entry = Seen(raw, model_cls.model_validate({**raw, "status": None}), None)
    except ValidationError as exc:
        entry = Seen(raw, None, Problem(INVALID_SPEC, field_errors(exc)))
    if uid is not None and generation is not None:
        _parsed[uid] = (generation, entry.model, entry.problem)
    return entry


def tenant_keys(namespace: str, name: str, body: Mapping[str, Any]) -> dict[Any, Any]:
    """The Tenant index's entries of one Tenant: under its namespace, and its Gateway under (namespace, name)."""
    return {namespace: seen("tenants", body), (namespace, name): (body.get("spec") or {}).get("gateway")}


def forget(uid: str | None) -> None:
    """The object is gone."""
    _parsed.pop(uid, None)


@dataclass(frozen=True, slots=True)
class Objects:
    """The ModelRoutes, Tenants and Budgets of one namespace at one moment."""

    routes: list[Seen]
    tenants: list[Seen]
    budgets: list[Seen]


def from_indexes(indexes: Mapping[str, Any], namespace: str) -> Objects:
    """Snapshot of the kopf indexes for ``namespace``; call on the event loop (kopf mutates them there)."""

    def of(plural: str) -> list[Seen]:
        store = indexes[INDEXES[plural]].get(namespace)
        return list(store) if store is not None else []

    return Objects(of("modelroutes"), of("tenants"), of("budgets"))


def tenant_gateway(indexes: Mapping[str, Any], namespace: str, tenant: str) -> str | None:
    store = indexes[TENANT_GATEWAY_INDEX].get((namespace, tenant))
    return next(iter(store), None) if store is not None else None


def gateway_live(indexes: Mapping[str, Any], namespace: str, gateway: str) -> bool:
    return indexes[GATEWAY_INDEX].get((namespace, gateway)) is not None


def live_gateways(indexes: Mapping[str, Any], namespace: str) -> list[str]:
    return sorted(name for ns, name in indexes[GATEWAY_INDEX] if ns == namespace)


def from_lists(lists: Mapping[str, Iterable[Mapping[str, Any]]]) -> Objects:
    """Entries built from list calls (``plural`` -> items)."""
    return Objects(*([seen(p, b) for b in lists.get(p, ())] for p in ("modelroutes", "tenants", "budgets")))


def split(entries: Iterable[Seen]) -> tuple[list[Any], dict[str, Problem]]:
    """(the parsed models, ``Kind/name`` -> problem of the others), as ``render.problems.parse_objects`` gives."""
    valid: list[Any] = []
    problems: dict[str, Problem] = {}
    for entry in entries:
        if entry.model is not None:
            valid.append(entry.model)
        elif entry.problem is not None:
            problems[object_key(entry.raw["kind"], entry.name)] = entry.problem
    return valid, problems
