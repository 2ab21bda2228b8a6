"""What the official SDKs do by default works through a real proxy, with every guarantee (issue #20).

Multi-turn with the SDKs' own answer objects, ``?beta=true``, ``count_tokens``, ``GET /v1/models/{id}``, the
request id every SDK reads, ``404 model_not_found``, answers with official fields only, legacy completion
streams, prompt caching and thinking blocks sent back byte-exact, with PII masked upstream and one audit record
per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import (
    CLAUDE,
    GW,
    IN_PRICE,
    KEYS,
    audit_records,
    render,
    route,
    wait_for_records,
)
from tests.harness.proxy import ProxyServer

EMAIL = "alice.wonder@example.org"
HOUSE = "house"


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    # An Anthropic-family upstream model LiteLLM's map does not know (an in-house or new model).
    house = route(GW, HOUSE, echo_upstream.base_url.removesuffix("/v1"), provider="anthropic", upstream="house-model")
    s = render(echo_upstream.base_url, extra_routes=(house,))
    server = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh(redis_server, echo_upstream):
    # The previous test's last audit record is written after its answer ended: let the stream settle first, or
    # it would land in this test's flushed stream.
    client = redis_server.client()
    stream = GatewayKeys("default", GW).audit_stream
    last, deadline = -1, time.monotonic() + 10
    while (now := client.xlen(stream)) != last and time.monotonic() < deadline:
        last = now
        time.sleep(0.5)
    client.flushall()
    echo_upstream.clear()


def oai(proxy: ProxyServer, tenant: str = "pii") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEYS[tenant], max_retries=0, timeout=60)


def claude(proxy: ProxyServer, tenant: str = "pii") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.base_url, api_key=KEYS[tenant], max_retries=0, timeout=60)


def upstream_text(echo_upstream) -> str:
    return json.dumps([r["body"] for r in echo_upstream.received()])


def test_chat_multi_turn_and_tool_loop_with_the_sdks_own_message_objects(proxy, echo_upstream, fresh, redis_server):
    c = oai(proxy)
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
        },
    }
    messages: list = [{"role": "user", "content": f"call a tool for {EMAIL}"}]
    first = c.chat.completions.create(model="echo", messages=messages, tools=[tool])
    call = first.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments)["echo"].startswith("call a tool for ")
    messages.append(first.choices[0].message)  # the SDK's own object, every field it had
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "found"})
    second = c.chat.completions.create(model="echo", messages=messages, tools=[tool])
    messages.append(second.choices[0].message)
    messages.append({"role": "user", "content": "thanks"})
    third = c.chat.completions.create(model="echo", messages=messages)
    assert third.choices[0].message.content == "thanks"
    assert EMAIL not in upstream_text(echo_upstream)
    # Answers hold official fields only: what comes back as history is what the API defines.
    raw = httpx.post(
        proxy.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEYS['plain']}"},
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert "provider_specific_fields" not in raw.text
    assert raw.headers["x-request-id"] == raw.headers["x-kubegate-request-id"]
    records = wait_for_records(redis_server.client(), 4)
    assert [r["status"] for r in records] == ["success"] * 4


def test_responses_stateless_history_and_ids_name_no_provider(proxy, echo_upstream, fresh):
    c = oai(proxy)
    first = c.responses.create(
        model="echo", input=f"hello {EMAIL}", include=[], metadata=None, truncation="disabled", store=False
    )
    assert first.id == "resp_" + first._request_id
    history = [{"role": "user", "content": f"hello {EMAIL}"}, *first.output, {"role": "user", "content": "more"}]
    second = c.responses.create(model="echo", input=history, prompt_cache_key="tenant-cache")
    assert second.output_text == "more"
    assert EMAIL not in upstream_text(echo_upstream)
    assert "litellm" not in second.id and "provider" not in second.id


def test_a_hosted_tool_the_tenant_has_not_enabled_is_dropped_and_audited(proxy, echo_upstream, fresh, redis_server):
    """Codex offers ``web_search`` by default: the request is served without it, and the audit record says so."""
    function = {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}
    raw = oai(proxy, "plain").responses.with_raw_response.create(
        model="echo", input="hi", tools=[function, {"type": "web_search", "external_web_access": False}]
    )
    assert raw.parse().output_text == "hi"
    (sent,) = echo_upstream.received()
    assert [t["type"] for t in sent["body"]["tools"]] == ["function"]
    (record,) = wait_for_records(redis_server.client(), 1)
    assert record["request_id"] == raw.headers["x-kubegate-request-id"]
    assert record["decisions"]["hosted_tools"] == "dropped"


def test_legacy_completion_stream_chunks_all_carry_text(proxy, fresh):
    chunks = list(oai(proxy, "plain").completions.create(model="echo", prompt="hello there world", stream=True))
    assert all(isinstance(ch.choices[0].text, str) for ch in chunks if ch.choices)
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "hello there world"


def test_anthropic_beta_thinking_and_cache_control_round_trip(proxy, echo_upstream, fresh, redis_server):
    """``client.beta.messages`` adds ``?beta=true``; thinking blocks go back byte-exact (the echo checks their
    signature), ``cache_control`` reaches the upstream, ``metadata.user_id`` does not, PII stays masked."""
    c = claude(proxy)
    system = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    ask = {"role": "user", "content": f"write to {EMAIL}"}
    first = c.beta.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        system=system,
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "user-123"},
        messages=[ask],
    )
    assert first.id == "msg_" + first._request_id
    kinds = [b.type for b in first.content]
    assert kinds[0] == "thinking" and "text" in kinds
    second = c.beta.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        system=system,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[ask, {"role": "assistant", "content": first.content}, {"role": "user", "content": "again"}],
    )
    # The thinking block came back byte-exact: the echo verified its signature on the first attempt (LiteLLM would
    # otherwise retry once without thinking, and the answer would have no thinking block).
    assert second.content[0].type == "thinking" and second.content[-1].text == "again"
    sent = echo_upstream.received()
    assert len(sent) == 2 and sent[1]["body"]["messages"][1]["content"][0]["type"] == "thinking"
    assert all("beta" not in (r.get("query") or "") for r in sent)
    assert all(r["body"]["system"][0]["cache_control"] == {"type": "ephemeral"} for r in sent)
    text = upstream_text(echo_upstream)
    assert EMAIL not in text and "user-123" not in text
    # By request id: the previous test's last record may still be on its way to the stream this test flushed.
    ids = {first._request_id, second._request_id}
    deadline = time.monotonic() + 30
    while len(mine := [r for r in audit_records(redis_server.client()) if r["request_id"] in ids]) < 2:
        assert time.monotonic() < deadline, mine
        time.sleep(0.1)
    assert [r["status"] for r in mine] == ["success", "success"]


def test_thinking_blocks_keep_their_placeholders_so_their_signature_verifies(proxy, echo_upstream, fresh):
    """With restore on, the answer's text gets the original back, but a thinking block is signed by the upstream
    over the masked text it produced: restoring it would break the signature on the next turn (the echo checks)."""
    c = claude(proxy, "restore")
    ask = {"role": "user", "content": f"mail {EMAIL}"}
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = c.messages.create(model=CLAUDE, max_tokens=2048, thinking=thinking, messages=[ask])
    block, *rest = first.content
    assert block.type == "thinking" and EMAIL not in block.thinking and "<EMAIL_ADDRESS_1>" in block.thinking
    assert any(b.type == "text" and EMAIL in b.text for b in rest)
    history = [ask, {"role": "assistant", "content": first.content}, {"role": "user", "content": "ok"}]
    echo_upstream.clear()
    second = c.messages.create(model=CLAUDE, max_tokens=2048, thinking=thinking, messages=history)
    assert second.content[0].type == "thinking" and second.content[-1].text == "ok"
    (sent,) = echo_upstream.received()  # one attempt: the signature verified
    assert sent["body"]["messages"][1]["content"][0]["signature"] == block.signature
    with c.messages.stream(model=CLAUDE, max_tokens=2048, thinking=thinking, messages=[ask]) as stream:
        streamed = stream.get_final_message()
    assert "<EMAIL_ADDRESS_1>" in streamed.content[0].thinking and EMAIL not in streamed.content[0].thinking
    assert EMAIL not in upstream_text(echo_upstream)


def test_count_tokens_is_answered_audited_and_never_sent_upstream(proxy, echo_upstream, fresh, redis_server):
    counted = claude(proxy).messages.count_tokens(
        model="echo", messages=[{"role": "user", "content": f"how many tokens in this, {EMAIL}?"}]
    )
    assert counted.input_tokens > 3
    assert echo_upstream.received() == []
    (record,) = wait_for_records(redis_server.client(), 1)
    assert record["status"] == "success" and record["call_type"] == "anthropic_count_tokens"
    assert EMAIL not in json.dumps(record)


def test_model_lookup_and_unknown_models_answer_as_openai_does(proxy, fresh, redis_server):
    c = oai(proxy, "narrow")
    assert c.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError) as gone:
        c.models.retrieve("other")
    assert gone.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as unknown:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["code"] == "model_not_found" and unknown.value.request_id
    assert len(audit_records(redis_server.client())) <= 3


def test_unknown_query_parameters_are_refused_naming_them(proxy, fresh):
    r = httpx.post(
        proxy.base_url + "/v1/messages?beta=true&fallbacks=x",
        headers={"x-api-key": KEYS["plain"]},
        json={"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        timeout=60,
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "unsupported_field" and error["param"] == "query.fallbacks"
    assert r.headers["request-id"] == r.headers["x-kubegate-request-id"]


def test_upstream_failures_carry_kubegate_codes_and_no_internals(proxy, echo_upstream, fresh):
    """#24: LiteLLM's exception text (``litellm.InternalServerError``, ``Received Model Group``, cooldown lists,
    deployment ids) never reaches a tenant; a provider's refusal of the request keeps the provider's own words."""
    c = oai(proxy, "plain")
    echo_upstream.fail_next(500, count=1)
    with pytest.raises(openai.InternalServerError) as failed:
        c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert failed.value.body["code"] == "upstream_error"
    echo_upstream.fail_next(429, count=1)
    with pytest.raises(openai.RateLimitError) as limited:
        c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert limited.value.body["code"] == "upstream_rate_limited"
    echo_upstream.fail_next(400, count=1)
    with pytest.raises(anthropic.BadRequestError) as rejected:
        claude(proxy, "plain").messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "x"}])
    error = rejected.value.body["error"]
    assert error["code"] == "upstream_rejected" and "echo upstream injected status 400" in error["message"]
    for exc in (failed, limited, rejected):
        text = exc.value.response.text
        assert not any(leak in text for leak in ("litellm", "Model Group", "cooldown", "echo-echo", "127.0.0.1")), text


def test_cached_input_of_a_model_litellm_does_not_price_is_never_free(proxy, echo_upstream, fresh, redis_server):
    """LiteLLM bills cache reads and writes of a model its map does not know at 0: the rendered config prices them
    at the route's input price and twice it (the most any provider charges), so a prompt cache never lets a tenant
    spend for free."""
    system = [{"type": "text", "text": "x " * 400, "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        claude(proxy, "plain").messages.create(
            model=HOUSE, max_tokens=16, system=system, messages=[{"role": "user", "content": "hi"}]
        )
    usages = [r["body"] for r in echo_upstream.received()]
    assert len(usages) == 2
    records = wait_for_records(redis_server.client(), 2)
    write, read = (r["cost_usd"] for r in records)
    # The echo reported 200 cached tokens, written by the first call and read by the second.
    assert write >= 200 * 2 * float(IN_PRICE) and read >= 200 * float(IN_PRICE)
    assert write == pytest.approx(read + 200 * float(IN_PRICE), rel=1e-3)


def test_answers_agree_with_the_reference(proxy, fresh):
    """#24 item 6, in part: docs/reference.md's codes and the request id on every refusal, in each API's shape."""
    base = proxy.base_url
    headers = {"x-api-key": KEYS["plain"]}
    wrong_method = httpx.get(base + "/v1/messages", headers=headers, timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    closed = httpx.get(base + "/key/list", headers=headers, timeout=30)
    assert closed.status_code == 403 and closed.headers["x-kubegate-request-id"] == closed.headers["x-request-id"]
    missing = httpx.post(base + "/v1/chat/completions", json={"model": "echo", "messages": []}, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    deep = b'{"model": "echo", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    too_deep = httpx.post(
        base + "/v1/chat/completions",
        content=deep,
        headers={"authorization": f"Bearer {KEYS['plain']}", "content-type": "application/json"},
        timeout=30,
    )
    assert too_deep.status_code == 400 and too_deep.json()["error"]["code"] == "request_too_deep"
    typed = httpx.post(
        base + "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream_options": "yes"},
        headers={"authorization": f"Bearer {KEYS['plain']}"},
        timeout=30,
    )
    assert typed.status_code == 400 and "StreamOptions" not in typed.text
