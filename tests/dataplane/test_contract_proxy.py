"""The request contract through a real LiteLLM proxy, real Redis and the echo upstream, official openai SDK.

Property-based: Hypothesis draws valid requests for each billed endpoint with PII planted in random text
values (message text, tool and schema descriptions, enum values, names, ``user``, ``stop`` ...); every one
is refused or reaches the upstream with no raw value, leaves exactly one audit record, and the budget
ends up charged exactly what LiteLLM billed. Then bad bodies, steering fields, spoofed request ids,
response headers, the model list, the metrics port and upstream credential failures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from tests.contract.strategies import BODIES
from tests.dataplane.contract_stack import GW, KEYS, audit_records, budget, render, wait_for_records
from tests.harness.proxy import ProxyServer

BUDGETS = {"pii-b": {"tenant": "pii", "limitUSD": "1000", "period": "monthly"}}
LIMITS = {"maxBodyBytes": 65536, "maxMessages": 64}


@pytest.fixture(scope="module")
def stack(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    s = render(
        echo_upstream.base_url,
        fail_auth_base=echo_upstream.api_base(status=401),
        budgets=BUDGETS,
        gateway_spec={"requestLimits": LIMITS},
    )
    proxy = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env)
    proxy.start()
    yield proxy
    proxy.stop()


def client(proxy: ProxyServer, tenant: str = "pii") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEYS[tenant], max_retries=0, timeout=60)


def send(proxy: ProxyServer, endpoint: str, body: dict):
    if endpoint == "anthropic_messages":
        claude = anthropic.Anthropic(base_url=proxy.base_url, api_key=KEYS["pii"], max_retries=0, timeout=60)
        # The current SDK no longer takes the sampling parameters older Anthropic clients still send.
        legacy = {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body}
        known = {k: v for k, v in body.items() if k not in legacy}
        return claude.messages.with_raw_response.create(**known, extra_body=legacy or None)
    c = client(proxy)
    if endpoint == "responses":
        return c.responses.with_raw_response.create(**body)
    if endpoint == "chat_completions":
        return c.chat.completions.with_raw_response.create(**body)
    if endpoint == "completions":
        return c.completions.with_raw_response.create(**body)
    return c.embeddings.with_raw_response.create(**body)


SENT: list[str] = []


@pytest.mark.parametrize("endpoint", sorted(BODIES))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_planted_pii_reaches_the_upstream(stack, echo_upstream, endpoint, data):
    body, planted = data.draw(BODIES[endpoint]())
    echo_upstream.clear()
    try:
        raw = send(stack, endpoint, body)
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        # Refused: a 4xx, or fail-closed when analysis or limits could not run in time on a loaded machine.
        error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
        code = error.get("code") if isinstance(error, dict) else None
        closed = exc.status_code == 503 and code in ("pii_unavailable", "limits_unavailable")
        assert 400 <= exc.status_code < 500 or closed, exc.response.text
        SENT.append(exc.response.headers["x-kubegate-request-id"])
        assert echo_upstream.received() == []
        return
    SENT.append(raw.headers["x-kubegate-request-id"])
    received = json.dumps(echo_upstream.received())
    for value in planted:
        assert value not in received, f"{value!r} reached the upstream"


def test_each_request_has_one_record_and_the_budget_holds_what_was_billed(stack, redis_server):
    assert len(SENT) >= 100, "the property test above must run first (same module)"
    rds = redis_server.client()
    records = [
        r
        for r in wait_for_records(rds, len(SENT), stream=GatewayKeys("default", GW).audit_stream)
        if r["tenant"] == "pii"
    ]
    by_id: dict[str, int] = {}
    for r in records:
        by_id[r["request_id"]] = by_id.get(r["request_id"], 0) + 1
    assert all(by_id.get(rid) == 1 for rid in SENT), [rid for rid in SENT if by_id.get(rid) != 1][:5]
    # Decimal: a float sum of the records' costs can land a rounding error above the exact micro-dollar spend.
    billed = sum(Decimal(str(r["cost_usd"])) for r in records)
    served = [r for r in records if r["status"] == "success"]
    assert served and all(r["cost_usd"] > 0 for r in served)
    import asyncio

    import redis.asyncio as aioredis

    async def read():
        r = aioredis.from_url(redis_server.url)
        try:
            return await read_budget_state(r, GatewayKeys("default", GW), budget(stack.policy, "pii-b"))
        finally:
            await r.aclose()

    state = asyncio.run(read())
    assert state.reserved_usd == 0
    # settle rounds each request up to the micro-dollar
    spent = Decimal(round(state.spent_usd * 1_000_000)) / 1_000_000
    assert billed <= spent <= billed + len(records) * Decimal("0.000001")


BAD_BODIES = [
    (b"[1, 2]", 400, "invalid_body"),
    (b"5", 400, "invalid_body"),
    (b"null", 400, "invalid_body"),
    (b'"text"', 400, "invalid_body"),
    (b"{not json", 400, "invalid_json"),
    (b"", 400, "invalid_body"),
    (
        json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"}).encode(),
        400,
        "invalid_field",
    ),
    (
        json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}).encode(),
        400,
        "invalid_field",
    ),
    (json.dumps({"model": "echo", "messages": [{"role": "user", "content": 5}]}).encode(), 400, "invalid_field"),
    (
        json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x"}] * 100}).encode(),
        400,
        "too_many_items",
    ),
    (
        json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x" * 70000}]}).encode(),
        413,
        "request_too_large",
    ),
]


@pytest.mark.parametrize(
    ("raw", "status", "code"), BAD_BODIES, ids=[c + str(i) for i, (_, _, c) in enumerate(BAD_BODIES)]
)
def test_bad_bodies_get_a_clean_4xx_and_the_proxy_keeps_serving(stack, echo_upstream, raw, status, code):
    echo_upstream.clear()
    resp = httpx.post(
        stack.base_url + "/v1/chat/completions",
        content=raw,
        headers={"authorization": f"Bearer {KEYS['plain']}", "content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]
    for marker in ("Traceback", "Exception", "Error:", 'File "', "orjson", "pydantic"):
        assert marker not in resp.text
    assert echo_upstream.received() == []
    ok = client(stack, "plain").chat.completions.create(model="echo", messages=[{"role": "user", "content": "still"}])
    assert ok.choices[0].message.content == "still"


def test_query_parameters_are_refused(stack, echo_upstream):
    echo_upstream.clear()
    resp = httpx.post(
        stack.base_url + "/v1/chat/completions?model=other&api_base=http://x",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {KEYS['plain']}"},
        timeout=30,
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] in ("query.model", "query.api_base")
    assert echo_upstream.received() == []


def test_a_chunked_body_over_the_limit_is_refused_while_read(stack):
    def chunks():
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}]}'

    resp = httpx.post(
        stack.base_url + "/v1/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {KEYS['plain']}", "content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fallbacks", ["other"]),
        ("extra_body", {"x": 1}),
        ("extra_headers", {"x-api-key": "k"}),
        ("mock_response", "hi"),
        ("api_base", "http://evil.example"),
        ("api_key", "sk-upstream"),
        ("caching", True),
        ("num_retries", 5),
        ("litellm_call_id", "abc"),
    ],
)
def test_fields_that_steer_litellm_are_refused_by_name(stack, echo_upstream, field, value):
    echo_upstream.clear()
    with pytest.raises(openai.BadRequestError) as info:
        client(stack, "narrow").chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}], extra_body={field: value}
        )
    assert info.value.body["code"] == "unsupported_field" and info.value.body["param"] == field
    assert echo_upstream.received() == []


def test_metadata_never_reaches_litellm(stack, echo_upstream):
    """LiteLLM reads ``metadata`` as its own input (tags, routing, spend): a tenant's is a client-side tag, dropped."""
    echo_upstream.clear()
    steering = {"tags": ["a"], "model_group": "other", "user_api_key": "sk-x"}
    reply = client(stack, "narrow").chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], metadata=steering, store=False
    )
    assert reply.choices[0].message.content == "hi"
    (received,) = echo_upstream.received()
    assert "metadata" not in received["body"] and "sk-x" not in json.dumps(received)


def test_a_client_call_id_never_reaches_another_requests_context(stack, redis_server):
    c = client(stack, "plain")

    def one(i: int):
        return c.chat.completions.with_raw_response.create(
            model="echo",
            messages=[{"role": "user", "content": f"m{i}"}],
            extra_headers={"x-litellm-call-id": "same-id-for-all", "x-litellm-tags": "x", "x-litellm-timeout": "1"},
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(one, range(8)))
    ids = [r.headers["x-kubegate-request-id"] for r in responses]
    assert len(set(ids)) == 8 and "same-id-for-all" not in ids
    assert sorted(r.parse().choices[0].message.content for r in responses) == sorted(f"m{i}" for i in range(8))
    rds = redis_server.client()
    for _ in range(100):
        records = {r["request_id"]: r for r in audit_records(rds) if r["request_id"] in ids}
        if len(records) == 8:
            break
        time.sleep(0.1)
    assert {r["status"] for r in records.values()} == {"success"} and len(records) == 8


def test_responses_carry_no_upstream_details(stack):
    raw = client(stack, "plain").chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    names = {k.lower() for k in raw.headers}
    assert "x-kubegate-request-id" in names
    leaked = [n for n in names if n.startswith(("x-litellm", "llm_provider", "openai-", "x-ratelimit"))]
    assert not leaked, leaked


def test_models_lists_exactly_the_public_models_the_tenant_may_call(stack):
    assert [m.id for m in client(stack, "narrow").models.list()] == ["echo"]
    assert sorted(m.id for m in client(stack, "plain").models.list()) == ["badkey", "claude", "echo", "other"]
    with pytest.raises(openai.NotFoundError) as info:
        client(stack, "narrow").chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(stack, "plain").chat.completions.create(
            model="echo@eu-west-1", messages=[{"role": "user", "content": "x"}]
        )


def test_metrics_are_not_served_on_the_tenant_port(stack):
    assert httpx.get(stack.base_url + "/metrics", timeout=10).status_code == 401
    tenant = httpx.get(stack.base_url + "/metrics", headers={"authorization": f"Bearer {KEYS['plain']}"}, timeout=10)
    assert tenant.status_code == 403 and "kubegate_" not in tenant.text
    assert "kubegate_requests_total" in stack.metrics()


def test_a_refused_upstream_credential_is_a_502_not_the_tenants_401(stack):
    with pytest.raises(openai.APIStatusError) as info:
        client(stack, "plain").chat.completions.create(model="badkey", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth_failed"
