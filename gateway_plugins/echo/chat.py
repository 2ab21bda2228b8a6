"""OpenAI chat completions (with tool calls), legacy completions, embeddings and the model list."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from gateway_plugins.echo.common import (
    approx_tokens,
    hex_id,
    pick_tool,
    pieces,
    structured,
    text_of,
    tool_args,
    tool_name,
)


def echo_text(body: dict) -> str:
    """The answer: the last message's text (chat) or the prompt (completions), never longer than
    ``max_tokens`` allows (as a real model), so usage and cost stay within what the gateway reserved."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        text = text_of(messages[-1].get("content"))
    else:
        prompt = body.get("prompt")
        text = "\n".join(str(p) for p in prompt) if isinstance(prompt, list) else str(prompt or "")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0:
        text = text[: limit * 4]
    return text


def _prompt_text(body: dict) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        return " ".join(text_of(m.get("content")) for m in messages if isinstance(m, dict))
    return echo_text(body)


def _last_user_text(body: dict) -> str | None:
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    return text_of(last.get("content")) if isinstance(last, dict) and last.get("role") == "user" else None


def _called(body: dict) -> set[str]:
    calls = [c for m in body.get("messages") or () if isinstance(m, dict) for c in m.get("tool_calls") or ()]
    return {(c.get("function") or {}).get("name") for c in calls if isinstance(c, dict)}


def _answer_text(body: dict) -> str:
    """The echoed text, as JSON when ``response_format`` asks for structured output."""
    text = echo_text(body)
    answer = structured(body.get("response_format"), text)
    return text if answer is None else answer


def chat_tool_call(body: dict) -> dict | None:
    """The assistant's tool call (see :func:`~gateway_plugins.echo.common.pick_tool`), or None for text."""
    tool = pick_tool(body, _last_user_text(body), _called(body))
    if tool is None:
        return None
    arguments = json.dumps(tool_args(tool, echo_text(body)))
    return {"id": f"call_{hex_id()}", "type": "function", "function": {"name": tool_name(tool), "arguments": arguments}}


def _usage(body: dict, answer: str) -> dict:
    prompt_tokens, completion_tokens = approx_tokens(_prompt_text(body)), approx_tokens(answer)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if body.get("prompt_cache_key"):
        usage["prompt_tokens_details"] = {"cached_tokens": prompt_tokens // 2}
    return usage


def chat_response(body: dict) -> dict:
    call, text = chat_tool_call(body), _answer_text(body)
    if call is not None:
        message: dict = {"role": "assistant", "content": None, "tool_calls": [call]}
        answer, finish = call["function"]["arguments"], "tool_calls"
    else:
        message, answer, finish = {"role": "assistant", "content": text}, text, "stop"
    return {
        "id": f"chatcmpl-{hex_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "echo"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(body, answer),
    }


def chat_stream_chunks(body: dict) -> list[bytes]:
    """SSE frames: the text (or a tool call's arguments) in small pieces, so split placeholders occur; then
    usage if asked."""
    call, text = chat_tool_call(body), _answer_text(body)
    cid, created, model = f"chatcmpl-{hex_id()}", int(time.time()), body.get("model", "echo")
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    if call is not None:
        answer, finish = call["function"]["arguments"], "tool_calls"
        head = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
        frames = [chunk({"role": "assistant", "content": None, "tool_calls": [head]})]
        frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces(answer)]
    else:
        answer, finish = text, "stop"
        frames = [chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"content": p}) for p in pieces(text)]
    frames.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append({**base, "choices": [], "usage": _usage(body, answer)})
    out = [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames]
    out.append(b"data: [DONE]\n\n")
    return out


def completion_stream_chunks(body: dict) -> list[bytes]:
    """Legacy completions streamed as OpenAI does: text pieces, a last chunk with ``finish_reason`` (and empty
    text), usage when asked."""
    whole = completion_response(body)
    base = {k: whole[k] for k in ("id", "object", "created", "model")}
    text = whole["choices"][0]["text"]
    frames = [
        {**base, "choices": [{"index": 0, "text": p, "finish_reason": None, "logprobs": None}]} for p in pieces(text)
    ]
    frames.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append({**base, "choices": [], "usage": whole["usage"]})
    return [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]


def completion_response(body: dict) -> dict:
    text = echo_text(body)
    prompt_tokens, completion_tokens = approx_tokens(text), approx_tokens(text)
    return {
        "id": f"cmpl-{hex_id()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "echo"),
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _vector(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 4) for b in digest[:dim]]


def embeddings_response(body: dict) -> dict:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    texts = [x if isinstance(x, str) else json.dumps(x) for x in items]
    tokens = sum(approx_tokens(t) for t in texts)
    return {
        "object": "list",
        "model": body.get("model", "echo"),
        "data": [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_response() -> dict:
    return {"object": "list", "data": [{"id": "echo", "object": "model", "created": 0, "owned_by": "kubegate"}]}
