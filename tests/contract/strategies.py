"""Hypothesis strategies for requests the contract accepts, with PII planted in random text values.

Each strategy draws a body and the set of raw PII values it planted, so a test can assert that none of
them reached the upstream. Planted values stand alone or between spaces (Presidio's recognizers need a
word boundary), and identifier-shaped fields (function names) get only values that fit their pattern.
"""

from __future__ import annotations

from hypothesis import strategies as st

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
IBAN = "DE89370400440532013000"
IP = "203.0.113.77"
PII_VALUES = (EMAIL, CARD, IBAN, IP)

_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=0, max_size=20)


@st.composite
def text_value(draw, planted: list[str]) -> str:
    """Plain words, sometimes with one PII value inside."""
    if draw(st.booleans()):
        return draw(_words)
    value = draw(st.sampled_from(PII_VALUES))
    planted.append(value)
    return f"{draw(_words)} {value} {draw(_words)}".strip()


@st.composite
def name_value(draw, planted: list[str]) -> str:
    if draw(st.integers(0, 3)) == 0:
        planted.append(CARD_DIGITS)
        return CARD_DIGITS
    return draw(st.text(alphabet="abcdefghij_", min_size=1, max_size=12))


@st.composite
def json_schema(draw, planted: list[str]) -> dict:
    props = {}
    for i in range(draw(st.integers(0, 3))):
        props[f"p{i}"] = {
            "type": "string",
            "description": draw(text_value(planted)),
            **({"enum": [draw(text_value(planted))]} if draw(st.booleans()) else {}),
        }
    return {"type": "object", "properties": props, "description": draw(text_value(planted))}


@st.composite
def message(draw, planted: list[str]) -> dict:
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    if draw(st.booleans()):
        content: object = draw(text_value(planted))
    else:
        content = [{"type": "text", "text": draw(text_value(planted))} for _ in range(draw(st.integers(1, 3)))]
    msg: dict = {"role": role, "content": content}
    if role == "tool":
        msg["tool_call_id"] = draw(text_value(planted)) or "call_1"
    elif role == "assistant" and draw(st.booleans()):
        msg["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": draw(name_value(planted)), "arguments": draw(text_value(planted))},
            }
        ]
    elif role in ("user", "system") and draw(st.booleans()):
        msg["name"] = draw(text_value(planted)) or "someone"
    return msg


@st.composite
def chat_body(draw, model: str = "echo") -> tuple[dict, list[str]]:
    planted: list[str] = []
    body: dict = {
        "model": model,
        "messages": [draw(message(planted)) for _ in range(draw(st.integers(0, 3)))],
        "max_tokens": draw(st.integers(1, 64)),
    }
    body["messages"].append({"role": "user", "content": draw(text_value(planted)) or "hi"})
    if draw(st.booleans()):
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": draw(name_value(planted)),
                    "description": draw(text_value(planted)),
                    "parameters": draw(json_schema(planted)),
                },
            }
        ]
    if draw(st.booleans()):
        body["user"] = draw(text_value(planted))
    if draw(st.booleans()):
        body["stop"] = [draw(text_value(planted)) or "STOP"]
    if draw(st.booleans()):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": "out",
                "description": draw(text_value(planted)),
                "schema": draw(json_schema(planted)),
            },
        }
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 2))
    if draw(st.booleans()):
        body["prompt_cache_key"] = draw(text_value(planted))
    if draw(st.booleans()):
        body["safety_identifier"] = draw(text_value(planted))
    if draw(st.booleans()):
        body["prediction"] = {"type": "content", "content": draw(text_value(planted))}
    if draw(st.booleans()):
        # What openai-python sends back when the previous answer object is appended: answer-only fields the
        # contract normalizes away (no PII planted in them: they never reach the upstream).
        answer = {"role": "assistant", "content": draw(text_value(planted)) or "ok", "refusal": None}
        answer |= {"annotations": [], "audio": None, "function_call": None, "tool_calls": None}
        answer |= {"provider_specific_fields": {"refusal": None}}
        body["messages"][-1:-1] = [answer]
    if draw(st.booleans()):
        body |= {"metadata": {"tag": "x"}, "store": False, "service_tier": "auto"}
    return body, planted


@st.composite
def completion_body(draw, model: str = "echo") -> tuple[dict, list[str]]:
    planted: list[str] = []
    if draw(st.booleans()):
        prompt: object = draw(text_value(planted)) or "hi"
    else:
        prompt = [draw(text_value(planted)) or "hi" for _ in range(draw(st.integers(1, 4)))]
    body: dict = {"model": model, "prompt": prompt, "max_tokens": draw(st.integers(1, 64))}
    if draw(st.booleans()):
        body["suffix"] = draw(text_value(planted))
    if draw(st.booleans()):
        body["user"] = draw(text_value(planted))
    return body, planted


@st.composite
def embedding_body(draw, model: str = "echo") -> tuple[dict, list[str]]:
    planted: list[str] = []
    if draw(st.booleans()):
        inp: object = draw(text_value(planted)) or "hi"
    else:
        inp = [draw(text_value(planted)) or "hi" for _ in range(draw(st.integers(1, 4)))]
    body: dict = {"model": model, "input": inp}
    if draw(st.booleans()):
        body["user"] = draw(text_value(planted))
    return body, planted


@st.composite
def responses_item(draw, planted: list[str]) -> dict:
    kind = draw(
        st.sampled_from(["message", "parts", "function_call", "function_call_output", "reasoning", "custom_call"])
    )
    if kind == "reasoning":
        return {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": draw(text_value(planted))}]}  # fmt: skip
    if kind == "custom_call":
        return {"type": "custom_tool_call", "call_id": "call_2", "name": draw(name_value(planted)), "input": draw(text_value(planted))}  # fmt: skip
    if kind == "message":
        role = draw(st.sampled_from(["user", "assistant", "system", "developer"]))
        return {"role": role, "content": draw(text_value(planted)) or "hi"}
    if kind == "parts":
        role = draw(st.sampled_from(["user", "assistant"]))
        part = "input_text" if role == "user" else "output_text"
        n = draw(st.integers(1, 3))
        parts = [{"type": part, "text": draw(text_value(planted))} for _ in range(n)]
        if role == "assistant":  # as ``response.output`` holds them: answer-only fields normalized away
            parts = [p | {"annotations": [], "logprobs": []} for p in parts]
        return {"type": "message", "role": role, "content": parts}
    if kind == "function_call":
        return {
            "type": "function_call",
            "call_id": draw(text_value(planted)) or "call_1",
            "name": draw(name_value(planted)),
            "arguments": draw(text_value(planted)),
        }
    return {"type": "function_call_output", "call_id": "call_1", "output": draw(text_value(planted))}


@st.composite
def responses_body(draw, model: str = "echo") -> tuple[dict, list[str]]:
    planted: list[str] = []
    body: dict = {"model": model, "max_output_tokens": draw(st.integers(1, 64)), "store": False}
    if draw(st.booleans()):
        body["input"] = draw(text_value(planted)) or "hi"
    else:
        items = [draw(responses_item(planted)) for _ in range(draw(st.integers(0, 3)))]
        body["input"] = [*items, {"role": "user", "content": draw(text_value(planted)) or "hi"}]
    if draw(st.booleans()):
        body["instructions"] = draw(text_value(planted))
    if draw(st.booleans()):
        body["tools"] = [
            {
                "type": "function",
                "name": draw(name_value(planted)),
                "description": draw(text_value(planted)),
                "parameters": draw(json_schema(planted)),
            }
        ]
    if draw(st.booleans()):
        body.setdefault("tools", []).append(
            {"type": "custom", "name": draw(name_value(planted)), "description": draw(text_value(planted))}
        )
    if draw(st.booleans()):
        function = {"type": "function", "name": "sub", "description": draw(text_value(planted))}
        body.setdefault("tools", []).append(
            {"type": "namespace", "name": "agents", "description": draw(text_value(planted)), "tools": [function]}
        )
    if draw(st.booleans()):
        body |= {"prompt_cache_key": draw(text_value(planted)), "include": [], "truncation": "disabled"}
    if draw(st.booleans()):
        body["user"] = draw(text_value(planted))
    if draw(st.booleans()):
        body["text"] = {
            "format": {
                "type": "json_schema",
                "name": "out",
                "description": draw(text_value(planted)),
                "schema": draw(json_schema(planted)),
            }
        }
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 2))
    return body, planted


@st.composite
def anthropic_block(draw, planted: list[str], role: str) -> dict:
    kinds = ["text", "tool_use"] if role == "assistant" else ["text", "tool_result"]
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return {"type": "text", "text": draw(text_value(planted)) or "hi"}
    if kind == "tool_use":
        arguments = {"to": draw(text_value(planted)), "nested": {"note": draw(text_value(planted))}}
        return {"type": "tool_use", "id": draw(text_value(planted)) or "toolu_1", "name": draw(name_value(planted)), "input": arguments}  # fmt: skip
    if draw(st.booleans()):
        content: object = draw(text_value(planted))
    else:
        content = [{"type": "text", "text": draw(text_value(planted)) or "ok"}]
    return {"type": "tool_result", "tool_use_id": draw(text_value(planted)) or "toolu_1", "content": content}


@st.composite
def messages_body(draw, model: str = "echo") -> tuple[dict, list[str]]:
    planted: list[str] = []
    messages = []
    for i in range(draw(st.integers(0, 2))):
        role = "user" if i % 2 == 0 else "assistant"
        if draw(st.booleans()):
            messages.append({"role": role, "content": draw(text_value(planted)) or "hi"})
        else:
            n = draw(st.integers(1, 2))
            messages.append({"role": role, "content": [draw(anthropic_block(planted, role)) for _ in range(n)]})
    if messages and messages[-1]["role"] == "user":
        messages.append({"role": "assistant", "content": "ok"})
    messages.append({"role": "user", "content": draw(text_value(planted)) or "hi"})
    body: dict = {"model": model, "max_tokens": draw(st.integers(1, 64)), "messages": messages}
    if draw(st.booleans()):
        system: object = draw(text_value(planted))
        body["system"] = system if draw(st.booleans()) else [{"type": "text", "text": system or "be brief"}]
    if draw(st.booleans()):
        body["tools"] = [
            {
                "name": draw(name_value(planted)),
                "description": draw(text_value(planted)),
                "input_schema": draw(json_schema(planted)),
            }
        ]
    if "system" not in body and draw(st.booleans()):
        # Prompt caching as Claude Code sends it; ``metadata.user_id`` is normalized away (nothing planted there).
        cache = {"type": "ephemeral"}
        body["system"] = [{"type": "text", "text": draw(text_value(planted)) or "be brief", "cache_control": cache}]
        body["metadata"] = {"user_id": "user_1"}
    if draw(st.booleans()):
        body["stop_sequences"] = [draw(text_value(planted)) or "STOP"]
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 1))
    return body, planted


BODIES = {
    "chat_completions": chat_body,
    "completions": completion_body,
    "embeddings": embedding_body,
    "responses": responses_body,
    "anthropic_messages": messages_body,
}
