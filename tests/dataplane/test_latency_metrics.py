"""Latency histograms, outcomes and refusal reasons as scraped from a real proxy (echo upstream with an injected
delay, openai SDK as client)."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins import metrics
from tests.harness.rendered import cr, echo_route, render_proxy

KEY = "sk-test-latency-0123456789abcdef"
DELAY_MS = 200


@pytest.fixture
def proxy(make_proxy, echo_upstream):
    rendered = render_proxy(
        [
            cr("LLMGateway", "lat", {}),
            echo_route("lat", "slow-model", echo_upstream.api_base(delay_ms=DELAY_MS)),
            echo_route("lat", "bad-model", echo_upstream.api_base(status=400)),
            cr("Tenant", "team-l", {"gateway": "lat", "allowedModels": ["slow-model", "bad-model"]}),
        ],
        keys={"team-l": KEY},
    )
    return make_proxy(rendered.config, rendered.policy, env=rendered.env)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_request_upstream_and_first_token_histograms(proxy, openai_client):
    client = openai_client(proxy, KEY)
    client.chat.completions.create(model="slow-model", messages=[{"role": "user", "content": "one"}])
    client.chat.completions.create(model="slow-model", messages=[{"role": "user", "content": "two"}])
    chunks = client.chat.completions.create(
        model="slow-model", messages=[{"role": "user", "content": "streamed"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="bad-model", messages=[{"role": "user", "content": "rejected"}])

    s = _samples(proxy.metrics())
    labels = {"tenant": "team-l", "served_model": "slow-model"}
    assert _value(s, "kubegate_request_duration_seconds_count", outcome="success", **labels) == 3
    assert _value(s, "kubegate_upstream_duration_seconds_count", **labels) == 3
    assert _value(s, "kubegate_time_to_first_token_seconds_count", **labels) == 1  # streams only
    # Lower bounds from the injected upstream delay (not timing assertions): each call waited >= 200 ms upstream,
    # and the end-to-end time of a request includes its upstream time.
    upstream = _value(s, "kubegate_upstream_duration_seconds_sum", **labels)
    assert upstream >= 3 * DELAY_MS / 1000
    assert _value(s, "kubegate_request_duration_seconds_sum", outcome="success", **labels) >= upstream
    assert _value(s, "kubegate_time_to_first_token_seconds_sum", **labels) >= DELAY_MS / 1000

    # The upstream's 400 to the client's request is the client's error, not an upstream failure.
    assert (
        _value(s, "kubegate_requests_total", tenant="team-l", requested_model="bad-model", outcome="client_error") == 1
    )
    assert (
        _value(s, "kubegate_requests_total", tenant="team-l", requested_model="bad-model", outcome="upstream_error")
        == 0
    )
    # One label name for the answering model on every metric that has one.
    for family in ("kubegate_tokens_total", "kubegate_requests_total"):  # no prices here, so no cost series
        keys = [set(dict(ls)) for (n, ls), _ in s.items() if n == family]
        assert keys and all("served_model" in k and "model" not in k for k in keys), (family, keys)


def test_every_refusal_code_in_the_code_base_is_a_bounded_reason():
    """A refusal code that is not in the reason set shows up as `other` and hides what happened."""
    root = Path(metrics.__file__).parent
    codes = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        codes |= set(re.findall(r'code="([a-z_]+)"', text))
        codes |= set(re.findall(r'_audit_refusal\([^)]*?"([a-z_]+)"\)', text))
    assert {"invalid_api_key", "residency_unavailable", "limits_unavailable"} <= codes
    # Error codes of upstream failures (outcome upstream_error, a decisions["error"]), not refusals.
    codes -= {"upstream_auth_failed", "upstream_error", "upstream_rate_limited", "upstream_rejected"}
    assert codes <= metrics.REFUSAL_REASONS, codes - metrics.REFUSAL_REASONS
    assert metrics.bounded_reason("missing_api_key") == "missing_api_key"
    assert metrics.bounded_reason("anything-else") == "other"
