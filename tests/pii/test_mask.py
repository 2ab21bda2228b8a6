"""mask_request / restore_* on real Presidio engines, without the proxy."""

from __future__ import annotations

import json

import pytest
from litellm.proxy._types import ProxyException
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

from gateway_plugins import pii
from gateway_plugins.context import RequestContext
from gateway_plugins.pii.engine import CACHE, FAULT_ENV
from gateway_plugins.policy.schema import PiiPolicy, Tenant

EMAIL = "jane.roe@example.org"
PHONE = "(415) 555-0132"
CARD = "4111 1111 1111 1111"


def ctx_for(tenant_id: str = "acme", **policy) -> RequestContext:
    tenant = Tenant(id=tenant_id, pii=PiiPolicy(**policy) if policy is not None else None)
    return RequestContext(request_id="r1", tenant=tenant, key_id="k", requested_model="m", call_type="acompletion")


def chat(*contents: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": c} for c in contents]}


async def test_no_policy_is_untouched():
    tenant = Tenant(id="acme")
    ctx = RequestContext(request_id="r", tenant=tenant, key_id="k", requested_model="m", call_type="x")
    data = chat(f"mail {EMAIL}")
    await pii.mask_request(ctx, data, "acompletion", None)
    assert data["messages"][0]["content"] == f"mail {EMAIL}"
    assert "pii" not in ctx.decisions


async def test_every_text_slot_is_masked_with_consistent_placeholders():
    ctx = ctx_for(restore=True)
    args = json.dumps({"to": EMAIL, "card": CARD})
    data = {
        "model": "m",
        "messages": [
            {"role": "system", "content": f"Support mailbox {EMAIL}."},
            {"role": "user", "content": [{"type": "text", "text": f"Call me at {PHONE} or mail {EMAIL}"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "send", "arguments": args}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": f"sent to {EMAIL}"},
        ],
    }
    await pii.mask_request(ctx, data, "acompletion", None)
    dumped = json.dumps(data)
    for value in (EMAIL, PHONE, CARD):
        assert value not in dumped
    m = data["messages"]
    assert m[0]["content"] == "Support mailbox <EMAIL_ADDRESS_1>."
    assert m[1]["content"][0]["text"] == "Call me at <PHONE_NUMBER_1> or mail <EMAIL_ADDRESS_1>"
    assert json.loads(m[2]["tool_calls"][0]["function"]["arguments"]) == {
        "to": "<EMAIL_ADDRESS_1>",
        "card": "<CREDIT_CARD_1>",
    }
    assert m[3]["content"] == "sent to <EMAIL_ADDRESS_1>"
    assert ctx.pii_counts == {"EMAIL_ADDRESS": 4, "PHONE_NUMBER": 1, "CREDIT_CARD": 1}
    decision = ctx.decisions["pii"]
    assert decision["failed_open"] is False and decision["actions"]["EMAIL_ADDRESS"] == "mask"
    assert EMAIL not in json.dumps(ctx.decisions)


async def test_completion_prompt_and_embedding_input_lists():
    ctx = ctx_for()
    data = {"model": "m", "prompt": [f"a {EMAIL}", "nothing"], "input": f"ip 10.20.30.40 and {EMAIL}"}
    await pii.mask_request(ctx, data, "atext_completion", None)
    assert data["prompt"] == ["a <EMAIL_ADDRESS_1>", "nothing"]
    assert data["input"] == "ip <IP_ADDRESS_1> and <EMAIL_ADDRESS_1>"


async def test_allow_list_and_redact():
    ctx = ctx_for(entities={"EMAIL_ADDRESS": "redact"}, allow_list=["help@kubegate.dev"])
    data = chat(f"write help@kubegate.dev, not {EMAIL}.")
    await pii.mask_request(ctx, data, "acompletion", None)
    assert data["messages"][0]["content"] == "write help@kubegate.dev, not ."


async def test_hash_is_stable_per_tenant_and_differs_across_tenants(monkeypatch):
    monkeypatch.setenv("KUBEGATE_PII_HASH_KEY", "test-secret")
    outs = []
    for tenant in ("acme", "acme", "globex"):
        ctx = ctx_for(tenant, entities={"EMAIL_ADDRESS": "hash"})
        data = chat(f"x {EMAIL}")
        await pii.mask_request(ctx, data, "acompletion", None)
        outs.append(data["messages"][0]["content"])
    assert outs[0] == outs[1] != outs[2]
    assert outs[0].startswith("x <EMAIL_ADDRESS_") and EMAIL not in outs[0]


async def test_block_names_type_not_value():
    ctx = ctx_for(entities={"CREDIT_CARD": "block", "EMAIL_ADDRESS": "mask"})
    with pytest.raises(ProxyException) as info:
        await pii.mask_request(ctx, chat(f"pay with {CARD}"), "acompletion", None)
    exc = info.value
    assert str(exc.code) == "400" and exc.openai_code == "pii_blocked"
    assert "CREDIT_CARD" in exc.message and CARD not in exc.message
    assert ctx.decisions["pii"]["blocked"] == ["CREDIT_CARD"]


@pytest.mark.parametrize("fault", ["raise", "hang"])
async def test_fail_closed_and_fail_open(monkeypatch, fault):
    CACHE.clear()
    monkeypatch.setenv(FAULT_ENV, fault)
    text = f"fault {fault} {EMAIL}"
    ctx = ctx_for(timeout_ms=100)
    with pytest.raises(ProxyException) as info:
        await pii.mask_request(ctx, chat(text), "acompletion", None)
    assert str(info.value.code) == "503" and info.value.openai_code == "pii_unavailable"
    assert ctx.decisions["pii"]["failed_open"] is False
    ctx = ctx_for(timeout_ms=100, fail_open=True)
    data = chat(text)
    await pii.mask_request(ctx, data, "acompletion", None)
    assert data["messages"][0]["content"] == text
    assert ctx.decisions["pii"]["failed_open"] is True


async def test_restore_non_streaming():
    from litellm.types.utils import ModelResponse

    ctx = ctx_for(restore=True)
    data = chat(f"mail {EMAIL} phone {PHONE}")
    await pii.mask_request(ctx, data, "acompletion", None)
    response = ModelResponse(
        choices=[
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "Will mail <EMAIL_ADDRESS_1> and ring <PHONE_NUMBER_1>.",
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"to": "<EMAIL_ADDRESS_1>"}'},
                        }
                    ],
                },
            }
        ]
    )
    pii.restore_response(ctx, response)
    msg = response.choices[0].message
    assert msg.content == f"Will mail {EMAIL} and ring {PHONE}."
    assert json.loads(msg.tool_calls[0].function.arguments) == {"to": EMAIL}


async def test_restore_off_leaves_placeholders():
    ctx = ctx_for()
    await pii.mask_request(ctx, chat(f"mail {EMAIL}"), "acompletion", None)
    assert ctx.pii_state is None


def _chunk(content=None, tool_args=None, finish=None) -> ModelResponseStream:
    delta = {"role": "assistant", "content": content}
    if tool_args is not None:
        delta["tool_calls"] = [{"index": 0, "id": None, "type": "function", "function": {"arguments": tool_args}}]
    return ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(**delta), finish_reason=finish)])


async def _agen(items):
    for item in items:
        yield item


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
async def test_restore_stream_split_placeholder(size):
    ctx = ctx_for(restore=True)
    await pii.mask_request(ctx, chat(f"mail {EMAIL} or {PHONE}"), "acompletion", None)
    answer = "Sure <EMAIL_ADDRESS_1>, or <PHONE_NUMBER_1>; a < b <EMAIL_ADDRESS_9> stays."
    pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
    chunks = [_chunk(p) for p in pieces] + [_chunk(None, finish="stop")]
    out = [c async for c in pii.restore_stream(ctx, _agen(chunks))]
    text = "".join(c.choices[0].delta.content or "" for c in out)
    assert text == f"Sure {EMAIL}, or {PHONE}; a < b <EMAIL_ADDRESS_9> stays."
    # Only a possible token prefix is held back: plain text flows chunk by chunk.
    assert out[0].choices[0].delta.content == pieces[0].split("<")[0]


async def test_restore_stream_tool_arguments_and_unterminated_end():
    ctx = ctx_for(restore=True)
    await pii.mask_request(ctx, chat(f"mail {EMAIL}"), "acompletion", None)
    args = '{"to": "<EMAIL_ADDRESS_1>"}'
    chunks = [_chunk(tool_args=args[i : i + 4]) for i in range(0, len(args), 4)]
    chunks.append(_chunk(content="bye <EMAIL_ADD"))  # the stream ends mid-token without a finish chunk
    out = [c async for c in pii.restore_stream(ctx, _agen(chunks))]
    got = "".join(
        tc.function.arguments or "" for c in out for tc in (c.choices[0].delta.tool_calls or []) if tc.function
    )
    assert json.loads(got) == {"to": EMAIL}
    assert "".join(c.choices[0].delta.content or "" for c in out) == "bye <EMAIL_ADD"


async def test_structured_only_policy_works_in_any_language():
    ctx = ctx_for(language="de")
    data = chat("Bitte rufen Sie mich unter 030 12345678 an oder schreiben Sie an jane.roe@example.org.")
    await pii.mask_request(ctx, data, "acompletion", None)
    assert data["messages"][0]["content"] == (
        "Bitte rufen Sie mich unter <PHONE_NUMBER_1> an oder schreiben Sie an <EMAIL_ADDRESS_1>."
    )


async def test_ner_in_a_language_without_a_model_is_refused():
    ctx = ctx_for(language="de", entities={"PERSON": "mask"})
    with pytest.raises(ProxyException) as info:
        await pii.mask_request(ctx, chat("Hallo Frau Schneider"), "acompletion", None)
    assert str(info.value.code) == "503" and info.value.openai_code == "pii_unavailable"
