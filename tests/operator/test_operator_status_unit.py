"""Pure status helpers: when the operator writes status, which watch events it skips, which changes are Events."""

from __future__ import annotations

from gateway_operator import notify
from gateway_operator import status as st


def test_needs_write_only_on_owned_differences():
    current = {"observedGeneration": 2, "conditions": [st.condition("Ready", True, "Rendered", "m")], "kopf": {"x": 1}}
    same = {"observedGeneration": 2, "conditions": [st.condition("Ready", True, "Rendered", "m")]}
    assert not st.needs_write(current, same)
    assert st.needs_write(current, {**same, "observedGeneration": 3})
    assert st.needs_write(current, {**same, "conditions": [st.condition("Ready", False, "GatewayNotFound", "m")]})
    assert st.needs_write(None, same)


def test_condition_message_is_bounded():
    assert len(st.condition("Ready", False, "SecretNotFound", "x" * 5000)["message"]) == st.MAX_MESSAGE


def test_already_observed_skips_status_only_events_but_never_deletions():
    body = {"metadata": {"generation": 4}, "status": {"observedGeneration": 4}}
    assert st.already_observed("MODIFIED", body)
    assert st.already_observed(None, body)  # initial listing after a restart: the Gateway's resume covers it
    assert not st.already_observed("DELETED", body)
    assert not st.already_observed("ADDED", body)
    assert not st.already_observed("MODIFIED", {**body, "metadata": {"generation": 5}})
    assert not st.already_observed("MODIFIED", {"metadata": {"generation": 1}})


THRESHOLDS = [
    {"percent": 50, "action": "notify"},
    {"percent": 80, "action": "notify"},
    {"percent": 95, "action": "notify"},
    {"percent": 100, "action": "block"},
]


def _percents(found):
    return [t["percent"] for t in found]


def test_each_threshold_is_new_once_per_period_even_with_the_same_action():
    assert notify.new_thresholds(THRESHOLDS, 49.9, []) == []
    assert _percents(notify.new_thresholds(THRESHOLDS, 50, [])) == [50]
    assert _percents(notify.new_thresholds(THRESHOLDS, 81, [50.0])) == [80]
    assert notify.new_thresholds(THRESHOLDS, 90, [50.0, 80.0]) == []
    # A jump over several thresholds between two refreshes: all of them, lowest first.
    assert _percents(notify.new_thresholds(THRESHOLDS, 120, [50.0])) == [80, 95, 100]


def test_reached_thresholds_reset_with_the_period():
    status = {"thresholdsReached": {"periodStart": "2026-11-01T00:00:00+00:00", "percents": [50, 80]}}
    assert notify.reached_this_period(status, "2026-11-01T00:00:00+00:00") == [50.0, 80.0]
    assert notify.reached_this_period(status, "2026-12-01T00:00:00+00:00") == []
    assert notify.reached_this_period(None, "2026-12-01T00:00:00+00:00") == []


def test_last_transition_time_moves_only_when_the_status_does():
    current = st.stamp(None, {"conditions": [st.condition("Ready", True, "Rendered", "m")]}, "2026-01-01T00:00:00Z")
    assert current["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    # Same status, new message: the time stays (and an identical desired status needs no write).
    again = st.stamp(current, {"conditions": [st.condition("Ready", True, "Rendered", "m2")]}, "2026-01-02T00:00:00Z")
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    same = st.stamp(current, {"conditions": [st.condition("Ready", True, "Rendered", "m")]}, "2026-01-02T00:00:00Z")
    assert not st.needs_write(current, same)
    flipped = st.stamp(
        current, {"conditions": [st.condition("Ready", False, "InvalidSpec", "m")]}, "2026-01-03T00:00:00Z"
    )
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_a_served_model_routes_status_shows_its_max_output_tokens_in_force(monkeypatch):
    """status.maxOutputTokens (the MaxTokens column): the cap the policy holds for the route's model; removed (null
    in the merge patch) when the route is not served, and no write when nothing changed."""
    from gateway_operator.reconcile import gateway as gw_reconcile
    from gateway_operator.render.problems import Problem

    sent: list = []
    monkeypatch.setattr(gw_reconcile, "send_statuses", sent.extend)

    def route(name: str, model: str, status: dict | None = None) -> dict:
        spec = {"gateway": "main", "modelName": model, "deployments": [{"name": "a"}]}
        return {"metadata": {"name": name, "generation": 1}, "spec": spec, **({"status": status} if status else {})}

    routes = [route("claude", "claude"), route("dup", "claude"), route("gone", "gone", {"maxOutputTokens": 16384})]
    problems = {"ModelRoute/dup": Problem("DuplicateModel", "served by claude")}
    limits = {"claude": 64000}
    args = ("ns", "main", routes, [], [], problems, {}, (True, "Published", ""), True, {}, False, limits)
    gw_reconcile._object_statuses(*args)
    written = {w.obj["metadata"]["name"]: w.status for w in sent}
    assert written["claude"]["maxOutputTokens"] == 64000
    assert written["dup"]["maxOutputTokens"] is None and written["gone"]["maxOutputTokens"] is None

    sent.clear()
    routes = [{**r, "status": written[r["metadata"]["name"]]} for r in routes]
    routes[2]["status"].pop("maxOutputTokens")  # the merge patch removed it
    gw_reconcile._object_statuses("ns", "main", routes, *args[3:])
    assert sent == []


def test_tenant_state_follows_suspension_and_the_trial_end():
    from datetime import UTC, datetime

    from gateway_operator.status import tenant_state

    at = datetime(2027, 1, 31, tzinfo=UTC)
    assert tenant_state({}, at) == "Active"
    assert tenant_state({"expiresAt": "2027-02-01T00:00:00Z"}, at) == "Trial"
    assert tenant_state({"expiresAt": "2027-01-31T00:00:00+00:00"}, at) == "Expired"
    assert tenant_state({"expiresAt": "2027-02-01T00:00:00Z", "suspended": True}, at) == "Suspended"
    assert tenant_state({"suspended": False}, at) == "Active"


def test_the_policy_ends_a_trial_at_the_first_second_not_before_expires_at():
    from gateway_operator.crd import models as crd
    from gateway_operator.render.gateway import render_gateway

    gw = crd.LLMGateway.model_validate({"metadata": {"name": "main"}, "spec": {}})
    tenant = crd.Tenant.model_validate(
        {
            "metadata": {"name": "t"},
            "spec": {"gateway": "main", "allowedModels": ["*"], "expiresAt": "2027-01-31T00:00:00.250+01:00"},
        }
    )
    (rendered,) = render_gateway(gw, [], [tenant], [], tenant_key_hashes={}, revision=1).policy.tenants
    assert rendered.not_after == 1_801_350_001  # 2027-01-30T23:00:00.25Z, rounded up
    assert rendered.lifecycle(1_801_350_000.5) == "active" and rendered.lifecycle(1_801_350_001) == "expired"
    assert not rendered.suspended
