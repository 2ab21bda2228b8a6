"""The answers agree with docs/reference.md: requests that end in each situation the reference describes go
through a real proxy, and the test reads what to expect from the reference's own tables (which headers, under
which condition; which HTTP status for which code), so the two cannot drift apart."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.dataplane.contract_stack import GW, REGION, audit_records, budget, key, objects, route
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import cr, render_proxy

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"

# Each "when" of the reference's header table, as the fact of an answer it stands for. A reworded or new
# condition fails the test until it is taught here what the words mean.
CONDITIONS = {
    "every answer": "any",
    "an upstream served the answer": "served",
    "the tenant has a Budget and the request reached the budget check": "budget",
    "the tenant has a Budget with limitUSD and the request reached the budget check": "budget_usd",
    "the tenant has a Budget with limitTokens and the request reached the budget check": "budget_tokens",
    "the tenant has a response cache and the request passed the contract": "cache",
    "the answer says to retry later": "retry",
    "the request named a cost-routed model and an upstream served the answer": "cost_routed",
}


def _table(section: str) -> list[list[str]]:
    text = REFERENCE.read_text()
    body = text[text.index(section) :]
    rows = []
    for line in body.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows[1:]  # without the header row


def header_conditions() -> dict[str, str]:
    out = {}
    for names, when, _ in _table("## Response headers"):
        assert when in CONDITIONS, f"docs/reference.md: header condition {when!r} is unknown to this test"
        for name in re.findall(r"`([^`]+)`", names):
            out[name.lower()] = CONDITIONS[when]
    return out


def code_statuses() -> dict[str, str]:
    out = {}
    for codes, status, *_ in _table("## Error codes"):
        for code in re.findall(r"`([^`]+)`", codes):
            out[code] = status
    return out


def test_the_reference_tables_parse():
    headers = header_conditions()
    assert {"x-kubegate-request-id", "x-kubegate-region", "x-kubegate-budget-state", "retry-after"} <= set(headers)
    assert code_statuses()["budget_exceeded"] == "429"


BROKEN = "broken"
AUTO = "auto"
CACHE = {"ttlSeconds": 300}


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    failing = echo_upstream.base_url.replace("/v1", "/status/500/v1")
    objs = objects(
        echo_upstream.base_url,
        extra_tenants=("budgeted", "broke", "tokened"),
        extra_routes=(
            route(GW, BROKEN, failing),
            cr("ModelRoute", AUTO, {"gateway": GW, "modelName": AUTO, "candidates": [{"model": "echo", "tier": 1}]}),
        ),
        budgets={
            "budgeted-b": {"tenant": "budgeted", "limitUSD": "100", "period": "daily"},
            "broke-b": {"tenant": "broke", "limitUSD": "1", "period": "daily"},
            "tokened-b": {"tenant": "tokened", "limitTokens": 1_000_000, "period": "daily"},
        },
    )
    for obj in objs:
        if obj["kind"] == "Tenant" and obj["metadata"]["name"] == "budgeted":
            obj["spec"].update({"allowedRegions": [REGION], "cache": CACHE})
    tenants = [o["metadata"]["name"] for o in objs if o["kind"] == "Tenant"]
    s = render_proxy(objs, keys={t: key(t) for t in tenants})
    p = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
    broke = budget(s.policy, "broke-b")
    spent_key = period_key(GatewayKeys("default", GW), broke, period_bounds(broke)[0])
    redis_server.client().hset(spent_key, "spent", 2_000_000)  # 2 USD of a 1 USD limit
    yield p
    p.stop()


def chat(model: str = "echo", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, **extra}


# (name, tenant or None for no key, body, facts that hold for the answer besides "any", expected code or None)
SITUATIONS = [
    ("no key", None, chat(), set(), "missing_api_key"),
    ("refused by the contract", "budgeted", chat(bogus_field=1), set(), "unsupported_field"),
    ("served", "budgeted", chat(), {"served", "budget", "budget_usd", "cache"}, None),
    ("served, token budget", "tokened", chat(), {"served", "budget", "budget_tokens"}, None),
    ("served, no budget or cache", "plain", chat(), {"served"}, None),
    (
        "upstream failed, kept in region",
        "budgeted",
        chat(BROKEN),
        {"budget", "budget_usd", "cache", "retry"},
        "residency_unavailable",
    ),
    ("upstream failed", "plain", chat(BROKEN), {"retry"}, "upstream_error"),
    ("refused by the budget", "broke", chat(), {"budget", "budget_usd", "retry"}, "budget_exceeded"),
    ("served, cost-routed", "plain", chat(AUTO), {"served", "cost_routed"}, None),
    (
        "served, cost-routed, budget",
        "budgeted",
        chat(AUTO),
        {"served", "cost_routed", "budget", "budget_usd", "cache"},
        None,
    ),
    ("no candidate fits the budget", "broke", chat(AUTO), {"budget", "budget_usd", "retry"}, "no_candidate_fits"),
]


def _audit_record(redis_server, request_id: str) -> dict | None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [r for r in audit_records(redis_server.client()) if r["request_id"] == request_id]
        if records:
            return records[0]
        time.sleep(0.1)
    return None


# A chat body is a valid Messages body too: both APIs' answers (OpenAI- and Anthropic-shaped) are checked.
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize(("name", "tenant", "body", "facts", "code"), SITUATIONS, ids=[s[0] for s in SITUATIONS])
def test_answers_carry_what_the_reference_says(proxy, redis_server, path, name, tenant, body, facts, code):
    headers = {"authorization": f"Bearer {key(tenant)}"} if tenant else {}
    resp = httpx.post(proxy.base_url + path, json=body, headers=headers, timeout=60)
    holds = facts | {"any"}
    expected = {h for h, fact in header_conditions().items() if fact in holds}
    present = {h for h in header_conditions() if h in resp.headers}
    assert present == expected, f"{name}: missing {expected - present}, unexpected {present - expected}"
    if code is None:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.json()["error"]["code"] == code, resp.text
        documented = code_statuses().get(code)
        if documented and documented.isdigit():
            assert resp.status_code == int(documented), f"{code}: {resp.status_code}, the reference says {documented}"
    if "budget" in holds:
        assert resp.headers["x-kubegate-budget-state"] in ("ok", "notify", "downgrade", "blocked")
        assert resp.headers["x-kubegate-budget-reset"].endswith("Z")
    if "budget_usd" in holds:
        float(resp.headers["x-kubegate-budget-remaining-usd"])
    if "budget_tokens" in holds:
        assert 0 < int(resp.headers["x-kubegate-budget-remaining-tokens"]) <= 1_000_000
    if "retry" in holds:
        assert int(resp.headers["retry-after"]) >= 1
    if tenant is not None and "served" not in holds and code not in ("unsupported_field", "budget_exceeded"):
        # An answer no upstream gave names no served model in its audit record either.
        record = _audit_record(redis_server, resp.headers["x-kubegate-request-id"])
        assert record is not None and record["served_model"] is None, record
