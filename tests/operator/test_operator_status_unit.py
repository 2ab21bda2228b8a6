"""Pure status helpers: when the operator writes status, which watch events it skips, which changes are Events."""

from __future__ import annotations

from gateway_operator import status as st
from gateway_operator.handlers.budgets import crossed


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


def test_threshold_crossings_are_upward_only():
    assert crossed(None, "notify") and crossed("ok", "notify") and crossed("notify", "blocked")
    assert not crossed("blocked", "ok")  # a new period is not an alert
    assert not crossed("notify", "notify") and not crossed(None, "ok")


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
