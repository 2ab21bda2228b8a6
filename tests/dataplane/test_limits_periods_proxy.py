"""Budget period roll-over and notify threshold through the real proxy, without waiting for a period.

Roll-over: the previous period's key is pre-seeded in Redis with spend above the limit; the current
period starts at zero (the request is served) and the old spend is neither carried over nor counted
again. Notify: spend pre-seeded past the notify threshold shows in the response header, the audit
record and the ``kubegate_budget_used_ratio`` gauge, and the request is still served.

Prices: output 0.001 USD/token; the echo answers "abcdefgh" with 2 completion tokens and requests ask
``max_tokens=2``, so each request costs exactly 0.002 USD.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.schema import Budget
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import ProxyInputs, cr, echo_route, render_proxy

GW = "main"
TEXT = "abcdefgh"
COST_MICRO = 2000  # 2 completion tokens x 0.001 USD, in micro-USD
KEYS = GatewayKeys("default", GW)
AUDIT_STREAM = KEYS.audit_stream


def key(tenant: str) -> str:
    return f"sk-period-{tenant}-0123456789"


def objects(echo_base: str) -> list[dict]:
    return [
        cr("LLMGateway", GW, {}),
        echo_route(GW, "m", echo_base, output_price="0.001"),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": ["m"]}) for t in ("roll", "note")),
        cr("Budget", "roll-b", {"tenant": "roll", "limitUSD": "0.005", "period": "daily"}),
        cr(
            "Budget",
            "note-b",
            {
                "tenant": "note",
                "limitUSD": "0.01",
                "thresholds": [{"percent": 50, "action": "notify"}, {"percent": 100, "action": "block"}],
            },
        ),
    ]


def render(echo_base: str) -> ProxyInputs:
    return render_proxy(objects(echo_base), keys={t: key(t) for t in ("roll", "note")})


def budget(proxy: ProxyServer, name: str) -> Budget:
    """The rendered Budget ``name``, as the proxy enforces it."""
    return next(b for b in proxy.policy.budgets if b.name == name)


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    rendered = render(echo_upstream.base_url)
    server = ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env).start()
    yield server
    server.stop()


def ask(proxy: ProxyServer, tenant: str):
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60)
    return c.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": TEXT}], max_tokens=2
    )


def settled(r, budget_key: bytes | str) -> tuple[int, int]:
    """(spent, reserved) once the request's settle has run (LiteLLM's success callback runs after the
    response is sent)."""
    for _ in range(100):
        spent, reserved = r.hmget(budget_key, "spent", "reserved")
        if int(reserved or 0) == 0:
            break
        time.sleep(0.1)
    return int(spent or 0), int(reserved or 0)


def audit_record(r, request_id: str) -> dict:
    for _ in range(100):  # the audit writer batches asynchronously
        for _, fields in r.xrevrange(AUDIT_STREAM, count=200):
            record = json.loads(fields[b"r"])
            if record["request_id"] == request_id:
                return record
        time.sleep(0.1)
    raise AssertionError(f"no audit record for request {request_id}")


def gauge(proxy: ProxyServer, tenant: str) -> float | None:
    for family in text_string_to_metric_families(proxy.metrics()):
        if family.name == "kubegate_budget_used_ratio":
            for sample in family.samples:
                if sample.labels.get("tenant") == tenant:
                    return sample.value
    return None


def test_new_period_starts_at_zero_and_old_spend_stays_put(proxy, redis_server):
    b = budget(proxy, "roll-b")
    r = redis_server.client()
    current_start, _ = period_bounds(b, datetime.now(UTC))
    previous_start, _ = period_bounds(b, current_start - timedelta(microseconds=1))
    previous_key = period_key(KEYS, b, previous_start)
    assert previous_start < current_start and previous_key != period_key(KEYS, b, current_start)
    r.hset(previous_key, mapping={"spent": 10_000, "reserved": 0})  # 200 % of the limit, last period
    raw = ask(proxy, "roll")  # would be a 429 budget_exceeded if the old spend counted
    assert raw.parse().choices[0].message.content == TEXT
    assert raw.headers["x-kubegate-budget-state"] == "ok"  # budget headers on every answer past the check (#24)
    # Exactly one key besides the old one: this period's, holding only this request's cost. Found by
    # scanning, not by recomputing "now", so a midnight between request and check cannot confuse it.
    keys = {k.decode() for k in r.keys(KEYS.budget_pattern("roll", "roll-b"))} - {previous_key}
    assert len(keys) == 1
    assert settled(r, keys.pop()) == (COST_MICRO, 0)
    assert settled(r, previous_key) == (10_000, 0)  # untouched: neither moved nor counted again


def test_notify_threshold_shows_in_header_audit_and_gauge(proxy, redis_server):
    b = budget(proxy, "note-b")
    r = redis_server.client()
    raw = ask(proxy, "note")  # 0 % used: plain ok
    assert raw.headers["x-kubegate-budget-state"] == "ok"
    record = audit_record(r, raw.headers["x-kubegate-request-id"])
    assert record["decisions"]["budget"] == {"note-b": "ok"}
    # Spend 60 % of the limit (notify at 50 %, block at 100 %).
    start, _ = period_bounds(b, datetime.now(UTC))
    budget_key = period_key(KEYS, b, start)
    settled(r, budget_key)
    r.hset(budget_key, mapping={"spent": 6000, "reserved": 0})
    raw = ask(proxy, "note")
    assert raw.parse().choices[0].message.content == TEXT  # notify never refuses
    assert raw.headers["x-kubegate-budget-state"] == "notify"
    record = audit_record(r, raw.headers["x-kubegate-request-id"])
    assert record["decisions"]["budget"] == {"note-b": "notify"}
    assert record["status"] == "success"
    assert gauge(proxy, "note") == pytest.approx(0.6)
    assert settled(r, budget_key) == (6000 + COST_MICRO, 0)
