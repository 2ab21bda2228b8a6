"""The echo upstream's model behaviour that client flows rely on: tool calls, reasoning and thinking that must
come back unaltered, cache usage, count_tokens. Against the echo process itself, with the official SDKs (so
every answer also parses as the real API's), plus the pure functions for the argument filling."""

from __future__ import annotations

import json
import uuid
from typing import Literal

import anthropic
import httpx
import openai
import pydantic
import pytest

from gateway_plugins.echo.common import tool_args
from tests.harness.echo import EchoServer

TEXT = "café ✓ write to <EMAIL_ADDRESS_1> today"  # non-ASCII: signatures are over the exact UTF-8 bytes
CHAT_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
}
RESP_TOOL = {"type": "function", "name": "lookup", "parameters": CHAT_TOOL["function"]["parameters"]}
CLAUDE_TOOL = {"name": "lookup", "input_schema": CHAT_TOOL["function"]["parameters"]}
THINKING = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def oai(echo_upstream: EchoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=echo_upstream.base_url, api_key="x", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def claude(echo_upstream: EchoServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=echo_upstream.base_url[: -len("/v1")], api_key="x", max_retries=0, timeout=30)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# -- tool calls ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "text", "calls"),
    [
        ("required", TEXT, True),
        ({"type": "function", "function": {"name": "lookup"}}, TEXT, True),
        (None, "Please USE THE TOOL for " + TEXT, True),
        ("auto", "call a tool: " + TEXT, True),
        (None, TEXT, False),
        ("none", "call a tool: " + TEXT, False),
    ],
)
def test_chat_calls_a_tool_when_forced_or_asked_for(oai, choice, text, calls):
    extra = {} if choice is None else {"tool_choice": choice}
    answer = oai.chat.completions.create(model="echo", messages=[user(text)], tools=[CHAT_TOOL], **extra)
    choice0 = answer.choices[0]
    if calls:
        (call,) = choice0.message.tool_calls
        assert choice0.finish_reason == "tool_calls" and choice0.message.content is None
        assert call.id.startswith("call_") and call.function.name == "lookup"
        assert json.loads(call.function.arguments) == {"echo": text}
    else:
        assert choice0.finish_reason == "stop" and not choice0.message.tool_calls and choice0.message.content == text


def test_chat_answers_a_tool_result_with_its_text(oai):
    first = oai.chat.completions.create(model="echo", messages=[user("use the tool")], tools=[CHAT_TOOL])
    call = first.choices[0].message.tool_calls[0]
    history = [
        user("use the tool"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": TEXT},
    ]
    again = oai.chat.completions.create(model="echo", messages=history, tools=[CHAT_TOOL])
    assert again.choices[0].finish_reason == "stop" and again.choices[0].message.content == TEXT


def test_streamed_chat_tool_call_reassembles_into_valid_arguments(oai, echo_upstream):
    ask = {"model": "echo", "messages": [user(TEXT)], "tools": [CHAT_TOOL], "tool_choice": "required"}
    with oai.chat.completions.stream(**ask) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"echo": TEXT}
    # On the wire: the first delta names the call, later ones carry argument pieces only.
    chunks = []
    with httpx.stream("POST", echo_upstream.base_url + "/chat/completions", json={**ask, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunks.append(json.loads(line[6:]))
    deltas = [c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"]]
    head, rest = deltas[0][0], [d[0] for d in deltas[1:] if d]
    assert head["index"] == 0 and head["id"].startswith("call_") and head["function"]["name"] == "lookup"
    assert len(rest) > 1 and all(set(d) == {"index", "function"} for d in rest)
    assert json.loads("".join(d["function"]["arguments"] for d in rest)) == {"echo": TEXT}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


class Address(pydantic.BaseModel):
    city: str
    zip_code: int


class Person(pydantic.BaseModel):
    name: str
    age: int
    score: float
    active: bool
    kind: Literal["a", "b"]
    tags: list[str]
    address: Address
    nickname: str | None = None


def test_required_properties_are_filled_so_a_pydantic_model_validates(oai):
    """instructor's flow: a named function whose schema is the model's; the arguments must validate."""
    tool = {"type": "function", "function": {"name": "Person", "parameters": Person.model_json_schema()}}
    answer = oai.chat.completions.create(
        model="echo",
        messages=[user(TEXT)],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "Person"}},
    )
    person = Person.model_validate_json(answer.choices[0].message.tool_calls[0].function.arguments)
    assert person.name == TEXT and person.age == 0 and person.active is False and person.kind == "a"
    assert person.address == Address(city=TEXT, zip_code=0) and person.nickname is None
    schema = {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}, "required": ["when"]}
    assert tool_args({"parameters": schema}, TEXT) == {"when": "1970-01-01T00:00:00Z"}


def test_a_forced_tool_choice_moves_on_to_tools_not_called_yet(oai):
    """pydantic-ai forces a call (function tools first, its output tool last): the loop must reach the last."""
    tools = [CHAT_TOOL, {"type": "function", "function": {**CHAT_TOOL["function"], "name": "final_result"}}]

    def called(*names: str) -> str:
        history = [user(TEXT)]
        for i, name in enumerate(names):
            call = {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}
            history += [
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": f"call_{i}", "content": "r"},
            ]
        answer = oai.chat.completions.create(model="echo", messages=history, tools=tools, tool_choice="required")
        return answer.choices[0].message.tool_calls[0].function.name

    assert (called(), called("lookup"), called("lookup", "final_result")) == ("lookup", "final_result", "final_result")


def test_structured_output_is_json_of_the_schema(oai, claude):
    parsed = oai.chat.completions.parse(model="echo", messages=[user(TEXT)], response_format=Person)
    assert parsed.choices[0].message.parsed.name == TEXT
    answer = oai.responses.parse(model="echo", input=TEXT, text_format=Person)
    assert answer.output_parsed.address.city == TEXT
    json_object = oai.chat.completions.create(
        model="echo", messages=[user(TEXT)], response_format={"type": "json_object"}
    )
    assert json.loads(json_object.choices[0].message.content) == {"echo": TEXT}
    fmt = {"type": "json_schema", "schema": Person.model_json_schema()}
    reply = claude.messages.create(
        model="echo", max_tokens=512, messages=[user(TEXT)], extra_body={"output_format": fmt}
    )
    assert Person.model_validate_json(reply.content[0].text).name == TEXT


def test_chat_reports_cached_tokens_with_a_prompt_cache_key(oai):
    ask = {"model": "echo", "messages": [user(TEXT * 4)]}
    cached = oai.chat.completions.create(**ask, prompt_cache_key="k1").usage
    assert cached.prompt_tokens_details.cached_tokens == cached.prompt_tokens // 2 > 0
    assert oai.chat.completions.create(**ask).usage.prompt_tokens_details is None


# -- Responses API ---------------------------------------------------------------------------------------


def test_responses_calls_a_tool_by_the_marker_and_answers_its_output(oai):
    first = oai.responses.create(model="echo", input="call a tool: " + TEXT, tools=[RESP_TOOL])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "lookup" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"echo": "call a tool: " + TEXT}
    output = {"type": "function_call_output", "call_id": call.call_id, "output": TEXT}
    again = oai.responses.create(model="echo", input=[call.model_dump(exclude_none=True), output], tools=[RESP_TOOL])
    assert again.output[0].type == "message" and again.output_text == TEXT
    plain = oai.responses.create(model="echo", input=TEXT, tools=[RESP_TOOL])
    assert plain.output_text == TEXT


def test_encrypted_reasoning_round_trips_and_a_tampered_one_is_refused(oai):
    ask = {"model": "echo", "reasoning": {"effort": "medium"}, "include": ["reasoning.encrypted_content"]}
    first = oai.responses.create(input=TEXT, prompt_cache_key="p", **ask)
    reasoning, message = first.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_") and reasoning.summary == []
    assert reasoning.encrypted_content and message.type == "message" and first.output_text == TEXT
    usage = first.usage
    reasoning_tokens = usage.output_tokens_details.reasoning_tokens
    assert 0 < reasoning_tokens < usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == usage.input_tokens // 2

    back = [user(TEXT), reasoning.model_dump(exclude_none=True), message.model_dump(exclude_none=True), user("ok")]
    assert oai.responses.create(input=back, **ask).output_text == "ok"
    sealed = reasoning.encrypted_content
    for forged in (sealed[:-8] + ("A" if sealed[-8] != "A" else "B") + sealed[-7:], sealed[4:], "not base64!"):
        tampered = [user(TEXT), {**back[1], "encrypted_content": forged}, back[2], user("ok")]
        with pytest.raises(openai.BadRequestError) as info:
            oai.responses.create(input=tampered, **ask)
        assert info.value.body["code"] == "invalid_encrypted_content"
        assert info.value.body["type"] == "invalid_request_error"


def test_reasoning_only_when_asked_for(oai):
    assert [i.type for i in oai.responses.create(model="echo", input=TEXT).output] == ["message"]
    # include alone asks for nothing: LiteLLM's Messages-to-Responses adapter sends it on every request.
    included = oai.responses.create(model="echo", input=TEXT, include=["reasoning.encrypted_content"])
    assert [i.type for i in included.output] == ["message"]
    low = oai.responses.create(model="echo", input=TEXT, reasoning={"effort": "minimal"})
    assert [i.type for i in low.output] == ["message"] and low.usage.output_tokens_details.reasoning_tokens == 0
    high = oai.responses.create(model="echo", input=TEXT, reasoning={"effort": "high"})
    assert [i.type for i in high.output] == ["reasoning", "message"] and high.output[0].encrypted_content is None


def test_streamed_responses_with_reasoning_and_a_tool_call(oai):
    ask = {"model": "echo", "tools": [RESP_TOOL], "tool_choice": "required", "reasoning": {"effort": "low"}}
    ask["include"] = ["reasoning.encrypted_content"]
    with oai.responses.stream(input=TEXT, **ask) as stream:
        events = list(stream)
        final = stream.get_final_response()
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert added == [0, 1] and json.loads(args) == {"echo": TEXT}
    reasoning, call = final.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content and call.type == "function_call"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "done"}
    back = [user(TEXT), reasoning.model_dump(exclude_none=True), call.model_dump(exclude_none=True), output]
    assert oai.responses.create(model="echo", input=back, include=ask["include"]).output_text == "done"
    tampered = [*back[:1], {**back[1], "encrypted_content": reasoning.encrypted_content[8:]}, *back[2:]]
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model="echo", input=tampered)


# -- Anthropic Messages ----------------------------------------------------------------------------------


def test_thinking_round_trips_and_a_tampered_signature_is_refused(claude):
    ask = {"model": "echo", "max_tokens": 4096, "thinking": THINKING}
    first = claude.messages.create(messages=[user(TEXT)], **ask)
    thinking, text = first.content
    assert thinking.type == "thinking" and TEXT in thinking.thinking and thinking.signature
    assert text.type == "text" and text.text == TEXT
    assert first.usage.output_tokens > len(TEXT) // 4

    def history(block: dict) -> list[dict]:
        return [user(TEXT), {"role": "assistant", "content": [block, text.model_dump()]}, user("next")]

    again = claude.messages.create(messages=history(thinking.model_dump()), **ask)
    assert again.content[-1].text == "next"
    altered = {**thinking.model_dump(), "thinking": thinking.thinking.replace("é", "e\u0301")}  # same look, other bytes
    for block in (altered, {**thinking.model_dump(), "signature": thinking.signature[:-4] + "AAA="}):
        with pytest.raises(anthropic.BadRequestError) as info:
            claude.messages.create(messages=history(block), **ask)
        assert info.value.body == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "Invalid signature in thinking block"},
        }
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    assert claude.messages.create(messages=history(redacted), **ask).content[-1].text == "next"


def test_streamed_thinking_carries_a_signature_that_verifies(claude):
    ask = {"model": "echo", "max_tokens": 4096, "thinking": {"type": "adaptive"}}
    with claude.messages.stream(messages=[user(TEXT)], **ask) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.signature and text.text == TEXT
    back = [user(TEXT), {"role": "assistant", "content": [b.model_dump() for b in final.content]}, user("z")]
    assert claude.messages.create(messages=back, **ask).content[-1].text == "z"


def test_messages_tool_use_by_the_marker_then_a_tool_result_is_echoed(claude):
    ask = {"model": "echo", "max_tokens": 256, "tools": [CLAUDE_TOOL]}
    first = claude.messages.create(messages=[user("Use the tool, " + TEXT)], **ask)
    (call,) = first.content
    assert first.stop_reason == "tool_use" and call.type == "tool_use" and call.id.startswith("toolu_")
    assert call.input == {"echo": "Use the tool, " + TEXT}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": TEXT}]}
    history = [user("Use the tool, " + TEXT), {"role": "assistant", "content": [call.model_dump()]}]
    again = claude.messages.create(messages=[*history, {"role": "user", "content": [result]}], **ask)
    assert again.stop_reason == "end_turn" and again.content[0].text == TEXT


def test_cache_breakpoints_are_written_once_then_read(claude):
    system = [{"type": "text", "text": f"{uuid.uuid4()} " + "policy " * 200, "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "echo", "max_tokens": 64, "system": system}
    first = claude.messages.create(messages=[user(TEXT)], **ask).usage
    assert first.cache_creation_input_tokens > 300 and first.cache_read_input_tokens == 0 and first.input_tokens > 0
    second = claude.messages.create(messages=[user("other question")], **ask).usage
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    # A later breakpoint: the system part is read, the new part up to the breakpoint written.
    marked = {"role": "user", "content": [{"type": "text", "text": TEXT, "cache_control": {"type": "ephemeral"}}]}
    third = claude.messages.create(messages=[marked], **ask).usage
    assert third.cache_read_input_tokens == first.cache_creation_input_tokens
    assert third.cache_creation_input_tokens > 0 and third.input_tokens == 0
    plain = claude.messages.create(model="echo", max_tokens=64, messages=[user(TEXT)]).usage
    assert plain.cache_creation_input_tokens is None and plain.cache_read_input_tokens is None


def test_count_tokens(claude):
    count = claude.messages.count_tokens(model="echo", system="s" * 40, messages=[user("x" * 400)], tools=[CLAUDE_TOOL])
    assert count.input_tokens > (40 + 400) // 4


def test_received_records_the_query_string(echo_upstream):
    echo_upstream.clear()
    url = echo_upstream.base_url + "/chat/completions?api-version=2024-10-21"
    assert httpx.post(url, json={"model": "echo", "messages": [user("hi")]}).status_code == 200
    (entry,) = echo_upstream.received()
    assert entry["query"] == "api-version=2024-10-21" and entry["path"] == "/v1/chat/completions"
