"""Isolation in the renderer: whatever the CRD schema lets through, the Gateway is still rendered.

Objects are generated from the generated CRDs' OpenAPI schemas (patterns, ranges, enums, list types), not from the
operator's models, so a gap between the two shows up here: an object the API server stores but the operator cannot
use must be left out with a reason, never fail its whole Gateway. The CEL rules are not applied, so the generated
set is a superset of what the API server accepts.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway_operator.crd import generate
from gateway_operator.crd import models as crd
from gateway_operator.reconcile import seen
from gateway_operator.render import render_gateway
from gateway_operator.render.problems import object_key, parse_objects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_plugins.policy import parse_policy


def _strategy(node: dict[str, Any]) -> st.SearchStrategy:
    inner = _plain(node)
    return st.one_of(st.none(), inner) if node.get("nullable") else inner


def _plain(node: dict[str, Any]) -> st.SearchStrategy:
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "string":
        lo, hi = node.get("minLength", 0), node.get("maxLength", 40)
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= hi)
        return st.text(min_size=lo, max_size=min(hi, 40))
    if kind == "integer":
        lo = node.get("minimum", -5)
        if node.get("exclusiveMinimum") is True:
            lo += 1
        return st.integers(lo, node.get("maximum", 10**7))
    if kind == "number":
        return st.floats(
            node.get("minimum", -5.0),
            node.get("maximum", 1e6),
            exclude_min=node.get("exclusiveMinimum") is True,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = _strategy(node["items"])
        size = {"min_size": node.get("minItems", 0), "max_size": min(node.get("maxItems", 3), 3)}
        if node.get("x-kubernetes-list-type") == "set":
            return st.lists(items, unique=True, **size)
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            return st.lists(items, unique_by=lambda d: tuple(d.get(k) for k in keys), **size)
        return st.lists(items, **size)
    if kind == "object":
        props = node.get("properties")
        if props:
            required = set(node.get("required", []))
            return st.fixed_dictionaries(
                {k: _strategy(v) for k, v in props.items() if k in required},
                optional={k: _strategy(v) for k, v in props.items() if k not in required},
            )
        if "additionalProperties" in node:
            keys = st.text("abcdefgABCDEFG_-./", min_size=1, max_size=12)
            return st.dictionaries(keys, _strategy(node["additionalProperties"]), max_size=3)
        return st.just({})
    raise AssertionError(f"no strategy for {node}")


def _spec(kind: str) -> st.SearchStrategy:
    return _strategy(generate.spec_schema(kind))


TENANTS = ["t0", "t1", "t2"]


@st.composite
def _objects(draw):
    def obj(kind, name, spec):
        return {"apiVersion": crd.API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}

    routes = [
        obj("ModelRoute", f"r{i}", {**draw(_spec("ModelRoute")), "gateway": "main"})
        for i in range(draw(st.integers(0, 3)))
    ]
    tenants = [obj("Tenant", n, {**draw(_spec("Tenant")), "gateway": "main"}) for n in TENANTS]
    budgets = [
        obj("Budget", f"b{i}", {**draw(_spec("Budget")), "tenant": draw(st.sampled_from(TENANTS))})
        for i in range(draw(st.integers(0, 3)))
    ]
    return routes, tenants, budgets


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_objects())
def test_objects_the_schema_accepts_never_fail_the_whole_gateway(objects):
    routes_raw, tenants_raw, budgets_raw = objects
    routes, problems = parse_objects(crd.ModelRoute, routes_raw)
    tenants, more = parse_objects(crd.Tenant, tenants_raw)
    problems.update(more)
    budgets, more = parse_objects(crd.Budget, budgets_raw)
    problems.update(more)
    gateway = crd.LLMGateway.model_validate({"metadata": {"name": "main"}})
    hashes = {t.metadata.name: [hashlib.sha256(t.metadata.name.encode()).hexdigest()] for t in tenants}
    rendered = render_gateway(gateway, routes, tenants, budgets, tenant_key_hashes=hashes, revision=1)
    problems.update(rendered.problems)
    # What is rendered is a policy the data plane takes; everything else is accounted for with a reason.
    policy = parse_policy(rendered.policy.model_dump_json(by_alias=True))
    in_policy = {t.id for t in policy.tenants}
    for raw in tenants_raw:
        name = raw["metadata"]["name"]
        assert (name in in_policy) != (object_key("Tenant", name) in problems)
    budgets_in = {b.name for b in policy.budgets}
    for raw in budgets_raw:
        name = raw["metadata"]["name"]
        assert (name in budgets_in) != (object_key("Budget", name) in problems)
    models = {m.name for m in policy.models}
    for raw in routes_raw:
        key = object_key("ModelRoute", raw["metadata"]["name"])
        assert raw["spec"]["modelName"] in models or key in problems
    for problem in problems.values():
        assert problem.reason and problem.message


def _gateway_defaults() -> st.SearchStrategy:
    """The Gateway fields a Tenant's policy entry takes defaults from."""
    props = generate.spec_schema("LLMGateway")["properties"]
    return st.fixed_dictionaries({}, optional={k: _strategy(props[k]) for k in ("piiModel", "cache")})


def _render(gateway, routes, tenants, budgets, problems):
    hashes = {name: [hashlib.sha256(name.encode()).hexdigest()] for name in TENANTS}
    rendered = render_gateway(gateway, routes, tenants, budgets, tenant_key_hashes=hashes, revision=1)
    problems = {**problems, **rendered.problems}
    return rendered.policy.model_dump_json(), {k: (p.reason, p.message) for k, p in problems.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_objects(), _gateway_defaults())
def test_the_pieces_the_operator_keeps_render_what_the_parsed_objects_render(objects, defaults):
    """The operator keeps each Tenant and Budget as its piece of the policy (``render.gateway.piece_of``), not as its parsed
    model; a Tenant's PII and cache take the Gateway's defaults only when rendered, so a Gateway change applies to
    pieces made before it."""
    routes_raw, tenants_raw, budgets_raw = objects
    gateway = crd.LLMGateway.model_validate({"metadata": {"name": "main"}, "spec": defaults})
    routes, problems = parse_objects(crd.ModelRoute, routes_raw)
    tenants, more = parse_objects(crd.Tenant, tenants_raw)
    problems.update(more)
    budgets, more = parse_objects(crd.Budget, budgets_raw)
    problems.update(more)
    expected = _render(gateway, routes, tenants, budgets, problems)

    kept = seen.from_lists({"modelroutes": routes_raw, "tenants": tenants_raw, "budgets": budgets_raw})
    problems = {}
    parts = []
    for entries in (kept.routes, kept.tenants, kept.budgets):
        valid, more = seen.split(entries)
        parts.append(valid)
        problems.update(more)
    assert _render(gateway, *parts, problems) == expected
