"""What the operator keeps of each object (``reconcile.seen``): parsed once, slimmed, invalid ones with the field."""

from __future__ import annotations

import json

from gateway_operator.reconcile import seen
from gateway_operator.reconcile.gateway import members


def _tenant(name: str, **spec) -> dict:
    return {
        "apiVersion": "kubegate.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": 3,
            "resourceVersion": "77",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...the whole object again...}",
                "kubegate.dev/rotate-key": "n1",
            },
        },
        "spec": {"gateway": "main", **spec},
        "status": {"observedGeneration": 2},
    }


def test_an_entry_keeps_what_the_operator_uses_and_drops_the_rest():
    entry = seen.seen("tenants", _tenant("a", allowedModels=["gpt-4o"]))
    assert entry.problem is None
    # Kept as the piece of the policy it renders to, not as the parsed Tenant.
    assert entry.piece.gateway == "main" and entry.piece.policy.allowed_models == ["gpt-4o"]
    assert entry.raw["metadata"] == {
        "name": "a",
        "namespace": "ns",
        "uid": "uid-a",
        "generation": 3,
        "annotations": {"kubegate.dev/rotate-key": "n1"},
    }
    assert entry.raw["status"] == {"observedGeneration": 2}
    assert entry.spec["gateway"] == "main"


def test_an_invalid_object_is_kept_with_its_problem_naming_the_field():
    entry = seen.seen("tenants", _tenant("b", allowedRegions=["eu west"]))
    assert entry.piece is None
    assert entry.problem.reason == "InvalidSpec"
    assert "spec.allowedRegions" in entry.problem.message
    valid, problems = seen.split([entry, seen.seen("tenants", _tenant("c"))])
    assert [t.name for t in valid] == ["c"]
    assert list(problems) == ["Tenant/b"]


def test_members_of_a_gateway_include_budgets_whose_tenant_exists_nowhere():
    objects = seen.from_lists(
        {
            "tenants": [_tenant("a"), {**_tenant("x"), "spec": {"gateway": "other"}}],
            "budgets": [
                {"kind": "Budget", "metadata": {"name": n, "namespace": "ns"}, "spec": {"tenant": t, "limitUSD": "1"}}
                for n, t in (("ba", "a"), ("bx", "x"), ("bz", "zzz"))
            ],
        }
    )
    routes, tenants, budgets, existing = members(objects, "main")
    assert routes == [] and [t.name for t in tenants] == ["a"]
    assert [b.name for b in budgets] == ["ba", "bz"]  # not the other Gateway's
    assert existing == {"a", "x"}


def test_a_status_only_event_reuses_the_parse_and_a_new_generation_parses_again():
    first = seen.seen("tenants", _tenant("a", allowedModels=["gpt-4o"]))
    status_write = {**_tenant("a", allowedModels=["gpt-4o"]), "status": {"observedGeneration": 3}}
    again = seen.seen("tenants", status_write, first)
    assert again.piece is first.piece and again.raw["status"] == {"observedGeneration": 3}
    changed = _tenant("a", allowedModels=["gpt-4o-mini"])
    changed["metadata"]["generation"] = 4
    fresh = seen.seen("tenants", changed, again)
    assert fresh.piece is not first.piece and fresh.piece.policy.allowed_models == ["gpt-4o-mini"]
    # A new object under the same name (deleted and created again) is parsed afresh, never given the old parse.
    recreated = _tenant("a", allowedModels=["claude"])
    recreated["metadata"]["uid"] = "uid-a-2"
    assert seen.seen("tenants", recreated, fresh).piece.policy.allowed_models == ["claude"]


def test_entries_share_their_repeated_strings():
    # Decoded from JSON as watch events are: each document has its own copy of every string.
    a, b = (seen.seen("tenants", json.loads(json.dumps(_tenant(n)))) for n in "ab")
    assert a.raw["spec"]["gateway"] is b.raw["spec"]["gateway"]
    assert next(iter(a.raw["status"])) is next(iter(b.raw["status"]))
