"""OpenAI's Responses API and Anthropic's Messages API through a real proxy, real Redis and the echo upstream,
with the official ``openai`` and ``anthropic`` SDKs: every guarantee of the chat route holds on both.

For ``openai/`` deployments LiteLLM 1.103.7 sends both to the upstream's ``/v1/responses`` (Messages through
its Anthropic-to-Responses adapter), so the echo's received log shows exactly what left the gateway. The echo
answers with the last input text (a tool call with ``{"echo": text}`` when the request forces one) in 7-char
stream pieces, so a placeholder such as ``<EMAIL_ADDRESS_1>`` is always split across events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import audit_records
from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import UPSTREAM_KEY, ProxyInputs, cr, render_proxy

GW = "apis"
STREAM = GatewayKeys("default", GW).audit_stream
EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
PROMPT = f"write to {EMAIL} and charge {CARD} today"
PRICE = Decimal("0.000001")
PII = {"entities": {"EMAIL_ADDRESS": "mask", "CREDIT_CARD": "mask"}, "restore": True}
TENANTS = {
    # tenant: (allowed models, extra fields)
    "pii": (["*"], {"pii": PII}),
    "narrow": (["echo"], {}),
    "eu": (["gpt"], {"allowedRegions": ["eu-west-1", "eu-central-1"]}),
    "down-resp": (["*"], {}),
    "down-msg": (["*"], {}),
    "block-resp": (["*"], {}),
    "block-msg": (["*"], {}),
}
SENT: list[str] = []  # request ids of every request this module made: each must have one audit record


def key(tenant: str) -> str:
    return f"sk-apis-{tenant}-0123456789"


def budgets() -> dict[str, dict]:
    """Budget name -> spec."""
    out = {}
    for endpoint in ("resp", "msg"):
        out[f"down-{endpoint}-b"] = {
            "tenant": f"down-{endpoint}",
            "limitUSD": "1",
            # A ten-thousandth of a percent (1 micro-USD): the first request's cost crosses it.
            "thresholds": [{"percent": 0.0001, "action": "downgrade"}, {"percent": 100, "action": "block"}],
            "downgrade": {"echo": "other"},
        }
        # Smaller than any request's cost: the first request is served (a budget overshoots by at most one
        # request), every later one is refused before any upstream call.
        out[f"block-{endpoint}-b"] = {"tenant": f"block-{endpoint}", "limitUSD": "0.000001"}
    return out


def setup(echo: str, failing: str, central: str, us: str) -> ProxyInputs:
    def dep(name: str, model: str, region: str, base: str) -> dict:
        return {
            "name": name,
            "model": model,
            "region": region,
            "apiBase": base,
            "apiKeySecretRef": UPSTREAM_KEY,
            "inputCostPerToken": str(PRICE),
            "outputCostPerToken": str(2 * PRICE),
        }

    def route(model: str, *deployments: dict) -> dict:
        # No retries: each request tries the failing region once before its in-region fallback (counted below).
        return cr("ModelRoute", model, {"gateway": GW, "modelName": model, "numRetries": 0, "deployments": deployments})

    objects = [
        cr("LLMGateway", GW, {}),
        route("echo", dep("a", "echo-echo", "eu-west-1", echo)),
        route("other", dep("a", "other-echo", "eu-west-1", echo)),
        route(
            "gpt",
            dep("west", "gpt-west", "eu-west-1", failing),
            dep("central", "gpt-central", "eu-central-1", central),
            dep("us", "gpt-us", "us-east-1", us),
        ),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": models, **extra}) for t, (models, extra) in TENANTS.items()),
        *(cr("Budget", name, spec) for name, spec in budgets().items()),
    ]
    return render_proxy(objects, keys={t: key(t) for t in TENANTS})


@pytest.fixture(scope="module")
def stack(redis_server, echo_upstream) -> Iterator[tuple[ProxyServer, EchoServer, EchoServer]]:
    central, us = EchoServer().start(), EchoServer().start()
    proxy = None
    try:
        s = setup(echo_upstream.base_url, echo_upstream.api_base(status=500), central.base_url, us.base_url)
        proxy = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
        yield proxy, central, us
    finally:
        if proxy is not None:
            proxy.stop()
        central.stop()
        us.stop()


@pytest.fixture(scope="module")
def proxy(stack) -> ProxyServer:
    return stack[0]


def oai(proxy: ProxyServer, tenant: str = "pii") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60)


def claude(proxy: ProxyServer, tenant: str = "pii") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.base_url, api_key=key(tenant), max_retries=0, timeout=60)


def sent_upstream(echo_upstream) -> str:
    return json.dumps([r["body"] for r in echo_upstream.received()])


def assert_masked_upstream(echo_upstream) -> None:
    body = sent_upstream(echo_upstream)
    assert EMAIL not in body and CARD not in body and "4111" not in body
    assert "<EMAIL_ADDRESS_1>" in body and "<CREDIT_CARD_1>" in body


def assert_no_token_fragment(pieces: list[str]) -> None:
    """No streamed piece carries a placeholder or the start of one: what is held back is released restored."""
    for piece in pieces:
        assert "<EMAIL" not in piece and "<CREDIT" not in piece and "_1>" not in piece, pieces


TOOL = {
    "type": "function",
    "name": "send_mail",
    "description": f"sends mail, e.g. to {EMAIL}",
    "parameters": {"type": "object", "properties": {"to": {"type": "string", "description": f"like {EMAIL}"}}},
}
ANTHROPIC_TOOL = {
    "name": "send_mail",
    "description": f"sends mail, e.g. to {EMAIL}",
    "input_schema": {"type": "object", "properties": {"to": {"type": "string", "description": f"like {EMAIL}"}}},
}


# -- Responses API ---------------------------------------------------------------------------------------


def test_responses_masks_upstream_and_restores_the_answer(proxy, echo_upstream):
    echo_upstream.clear()
    raw = oai(proxy).responses.with_raw_response.create(
        model="echo",
        instructions=f"reply to {EMAIL}",
        input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
        max_output_tokens=64,
        store=False,
    )
    SENT.append(raw.headers["x-kubegate-request-id"])
    assert raw.parse().output_text == PROMPT
    assert_masked_upstream(echo_upstream)
    assert echo_upstream.received()[0]["path"] == "/v1/responses"


def test_responses_stream_restores_placeholders_split_across_events(proxy, echo_upstream):
    echo_upstream.clear()
    raw = oai(proxy).responses.with_raw_response.create(model="echo", input=PROMPT, stream=True, max_output_tokens=64)
    SENT.append(raw.headers["x-kubegate-request-id"])
    deltas, done_text, completed = [], None, None
    for event in raw.parse():
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.output_text.done":
            done_text = event.text
        elif event.type == "response.completed":
            completed = event.response
    assert "".join(deltas) == PROMPT == done_text == completed.output_text
    assert_no_token_fragment(deltas)
    assert_masked_upstream(echo_upstream)


def test_responses_function_call_arguments_are_restored_streamed_or_not(proxy, echo_upstream):
    echo_upstream.clear()
    c = oai(proxy)
    raw = c.responses.with_raw_response.create(model="echo", input=PROMPT, tools=[TOOL], tool_choice="required")
    SENT.append(raw.headers["x-kubegate-request-id"])
    call = raw.parse().output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"echo": PROMPT}
    raw = c.responses.with_raw_response.create(
        model="echo", input=PROMPT, tools=[TOOL], tool_choice="required", stream=True
    )
    SENT.append(raw.headers["x-kubegate-request-id"])
    events = list(raw.parse())
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads("".join(deltas)) == json.loads(done.arguments) == {"echo": PROMPT}
    assert_no_token_fragment(deltas)
    body = sent_upstream(echo_upstream)
    assert EMAIL not in body and "sends mail, e.g. to <EMAIL_ADDRESS_1>" in body


# -- Anthropic Messages API ------------------------------------------------------------------------------


def test_messages_masks_upstream_and_restores_the_answer(proxy, echo_upstream):
    echo_upstream.clear()
    raw = claude(proxy).messages.with_raw_response.create(
        model="echo",
        max_tokens=64,
        system=f"reply to {EMAIL}",
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
    )
    SENT.append(raw.headers["x-kubegate-request-id"])
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == PROMPT
    assert message.usage.output_tokens > 0
    assert_masked_upstream(echo_upstream)


def test_messages_stream_restores_placeholders_split_across_events(proxy, echo_upstream):
    echo_upstream.clear()
    with claude(proxy).messages.stream(
        model="echo", max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        SENT.append(stream.response.headers["x-kubegate-request-id"])
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == PROMPT == final.content[0].text
    assert_no_token_fragment(pieces)
    assert_masked_upstream(echo_upstream)


def test_messages_tool_use_input_is_restored_streamed_or_not(proxy, echo_upstream):
    echo_upstream.clear()
    c = claude(proxy)
    ask = {"model": "echo", "max_tokens": 64, "tools": [ANTHROPIC_TOOL], "tool_choice": {"type": "any"}}
    history = [
        {"role": "user", "content": "mail someone"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "send_mail", "input": {"to": EMAIL}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": PROMPT}]},
    ]
    raw = c.messages.with_raw_response.create(messages=history, **ask)
    SENT.append(raw.headers["x-kubegate-request-id"])
    block = raw.parse().content[0]
    assert block.type == "tool_use" and block.input == {"echo": PROMPT}
    with c.messages.stream(messages=[{"role": "user", "content": PROMPT}], **ask) as stream:
        SENT.append(stream.response.headers["x-kubegate-request-id"])
        partial = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert json.loads("".join(partial)) == final.content[0].input == {"echo": PROMPT}
    assert_no_token_fragment(partial)
    assert_masked_upstream(echo_upstream)


def test_messages_take_the_key_as_x_api_key_and_refuse_two_different_keys(proxy):
    body = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(proxy.base_url + "/v1/messages", json=body, headers={"x-api-key": key("narrow")}, timeout=60)
    assert ok.status_code == 200 and ok.json()["content"][0]["text"] == "hi"
    both = {"x-api-key": key("narrow"), "authorization": f"Bearer {key('pii')}"}
    clash = httpx.post(proxy.base_url + "/v1/messages", json=body, headers=both, timeout=60)
    assert clash.status_code == 401
    assert clash.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": clash.json()["error"]["message"],
            "code": "invalid_api_key",
        },
    }
    SENT.extend(r.headers["x-kubegate-request-id"] for r in (ok, clash))


# -- refusals in each API's own error shape --------------------------------------------------------------


def test_a_model_outside_the_allow_list_is_each_sdks_not_found_error(proxy, echo_upstream):
    echo_upstream.clear()
    with pytest.raises(openai.NotFoundError) as oe:
        oai(proxy, "narrow").responses.create(model="other", input="hi")
    assert oe.value.body["code"] == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as ae:
        claude(proxy, "narrow").messages.create(
            model="other", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert ae.value.body["error"]["code"] == "model_not_found"
    assert ae.value.body["type"] == "error" and ae.value.body["error"]["type"] == "not_found_error"
    SENT.extend(e.value.response.headers["x-kubegate-request-id"] for e in (oe, ae))
    assert echo_upstream.received() == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0]"),
        ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://mcp.example"}]}, "tools[0]"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"service_tier": "priority"}, "service_tier"),
    ],
)
def test_stateful_and_hosted_responses_features_are_refused_by_name(proxy, echo_upstream, extra, param):
    echo_upstream.clear()
    with pytest.raises(openai.BadRequestError) as info:
        oai(proxy, "narrow").responses.create(model="echo", input="hi", extra_body=extra)
    assert info.value.body["code"] == "unsupported_field" and info.value.body["param"] == param
    # The inventory's reason and what to do instead, never just "not accepted".
    assert "; " in info.value.body["message"] and "docs/contract.md" in info.value.body["message"]
    SENT.append(info.value.response.headers["x-kubegate-request-id"])
    assert echo_upstream.received() == []


def test_a_hook_refusal_on_messages_is_anthropics_error_with_our_code(proxy, echo_upstream):
    """PII in a tool schema's property name cannot be masked: refused in the pre-call hook (inside LiteLLM),
    answered in Anthropic's shape all the same."""
    echo_upstream.clear()
    tool = {"name": "t", "input_schema": {"type": "object", "properties": {EMAIL: {"type": "string"}}}}
    with pytest.raises(anthropic.BadRequestError) as info:
        claude(proxy).messages.create(
            model="echo", max_tokens=8, tools=[tool], messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert info.value.body["error"]["code"] == "pii_blocked" and EMAIL not in info.value.response.text
    SENT.append(info.value.response.headers["x-kubegate-request-id"])
    with pytest.raises(anthropic.BadRequestError) as unknown:
        claude(proxy).messages.create(
            model="echo", max_tokens=8, messages=[{"role": "user", "content": "x"}], extra_body={"frobnicate": {}}
        )
    assert unknown.value.body["error"]["code"] == "unsupported_field"
    SENT.append(unknown.value.response.headers["x-kubegate-request-id"])
    assert echo_upstream.received() == []


# -- budgets ---------------------------------------------------------------------------------------------


def test_budget_downgrade_applies_to_both_endpoints(proxy, echo_upstream):
    for _ in range(2):  # the first request's cost crosses the downgrade threshold
        raw = oai(proxy, "down-resp").responses.with_raw_response.create(model="echo", input="hi", max_output_tokens=8)
        SENT.append(raw.headers["x-kubegate-request-id"])
        with claude(proxy, "down-msg").messages.stream(
            model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            SENT.append(stream.response.headers["x-kubegate-request-id"])
            assert stream.get_final_text() == "hi"
    echo_upstream.clear()
    raw = oai(proxy, "down-resp").responses.with_raw_response.create(model="echo", input="hi", max_output_tokens=8)
    SENT.append(raw.headers["x-kubegate-request-id"])
    assert raw.headers["x-kubegate-budget-state"] == "downgrade" and raw.parse().output_text == "hi"
    message = claude(proxy, "down-msg").messages.with_raw_response.create(
        model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    SENT.append(message.headers["x-kubegate-request-id"])
    assert message.headers["x-kubegate-budget-state"] == "downgrade"
    assert [r["body"]["model"] for r in echo_upstream.received()] == ["other-echo", "other-echo"]


def test_budget_block_is_each_sdks_rate_limit_error(proxy, echo_upstream):
    first = oai(proxy, "block-resp").responses.with_raw_response.create(model="echo", input="hi", max_output_tokens=8)
    SENT.append(first.headers["x-kubegate-request-id"])
    with claude(proxy, "block-msg").messages.stream(
        model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        SENT.append(stream.response.headers["x-kubegate-request-id"])
        assert stream.get_final_text() == "hi"
    time.sleep(1)  # LiteLLM settles (our success callback) just after the answer
    echo_upstream.clear()
    with pytest.raises(openai.RateLimitError) as oe:
        oai(proxy, "block-resp").responses.create(model="echo", input="hi", max_output_tokens=8)
    assert oe.value.body["code"] == "budget_exceeded"
    with pytest.raises(anthropic.RateLimitError) as ae:
        claude(proxy, "block-msg").messages.create(
            model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert ae.value.body["error"] == {
        "type": "rate_limit_error",
        "message": ae.value.body["error"]["message"],
        "code": "budget_exceeded",
    }
    assert ae.value.response.headers["retry-after"]
    SENT.extend(e.value.response.headers["x-kubegate-request-id"] for e in (oe, ae))
    assert echo_upstream.received() == []


# -- residency -------------------------------------------------------------------------------------------


def test_residency_falls_back_in_region_when_the_first_region_fails(stack, echo_upstream):
    proxy, central, us = stack
    central.clear()
    us.clear()
    echo_upstream.clear()
    raw = oai(proxy, "eu").responses.with_raw_response.create(model="gpt", input="hello", max_output_tokens=8)
    SENT.append(raw.headers["x-kubegate-request-id"])
    assert raw.parse().output_text == "hello" and raw.headers["x-kubegate-region"] == "eu-central-1"
    with claude(proxy, "eu").messages.stream(
        model="gpt", max_tokens=8, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        SENT.append(stream.response.headers["x-kubegate-request-id"])
        assert stream.get_final_text() == "hello"
    message = claude(proxy, "eu").messages.with_raw_response.create(
        model="gpt", max_tokens=8, messages=[{"role": "user", "content": "hello"}]
    )
    SENT.append(message.headers["x-kubegate-request-id"])
    assert message.headers["x-kubegate-region"] == "eu-central-1"
    # Each request tried eu-west-1 (failing), then was served in eu-central-1; the US never saw one.
    assert len([r for r in echo_upstream.received() if "/status/500" in r["path"]]) == 3
    assert len(central.received()) == 3 and us.received() == []


# -- one audit record each -------------------------------------------------------------------------------


def test_every_request_left_exactly_one_audit_record(redis_server):
    assert len(SENT) >= 25, "the tests above must run first (same module)"
    rds = redis_server.client()
    deadline = time.monotonic() + 30
    while True:
        counts: dict[str, int] = {}
        for record in audit_records(rds, STREAM):
            counts[record["request_id"]] = counts.get(record["request_id"], 0) + 1
        if all(counts.get(rid) for rid in SENT) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [rid for rid in SENT if counts.get(rid) != 1] == []
    records = {r["request_id"]: r for r in audit_records(rds, STREAM)}
    served = [records[rid] for rid in SENT if records[rid]["status"] == "success"]
    assert {r["call_type"] for r in served} == {"responses", "anthropic_messages"}
    assert all(r["cost_usd"] > 0 and r["completion_tokens"] > 0 for r in served)
    pii = [r for r in served if r["tenant"] == "pii"]
    assert pii and all(r["pii_counts"].get("EMAIL_ADDRESS", 0) >= 1 for r in pii)
    downgraded = [r for r in served if r["decisions"].get("downgrade")]
    assert {r["call_type"] for r in downgraded} == {"responses", "anthropic_messages"}


def test_metrics_count_both_endpoints(proxy):
    """The downgrade tenants made only Responses (down-resp) or only Messages (down-msg) requests: three served
    each, counted with the model that served them, tokens and cost included."""
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(proxy.metrics())
        for s in family.samples
    }

    def total(name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))

    for tenant in ("down-resp", "down-msg"):
        assert total("kubegate_requests_total", tenant=tenant, outcome="success") == 3
        assert total("kubegate_requests_total", tenant=tenant, served_model="other", outcome="success") >= 1
        assert total("kubegate_tokens_total", tenant=tenant) > 0
        assert total("kubegate_cost_usd_total", tenant=tenant) > 0
    assert total("kubegate_refusals_total", tenant="block-msg") == 1
