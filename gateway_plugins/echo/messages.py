"""Anthropic's Messages API: signed thinking, tool use, prompt-cache usage, and ``count_tokens``."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from gateway_plugins.echo.common import (
    approx_tokens,
    cap_with_thought,
    hex_id,
    pick_tool,
    pieces,
    sign,
    signature_ok,
    sse_event,
    structured,
    text_of,
    thought_for,
    tool_args,
    tool_name,
)

# Prefix hashes of cache breakpoints already seen (the echo's "prompt cache"), oldest first; bounded.
_CACHED: OrderedDict[str, None] = OrderedDict()
_CACHED_MAX = 4096


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "tool_result":
        return text_of(block.get("content"))
    if kind == "tool_use":
        return json.dumps(block.get("input"))
    if kind == "thinking":
        return block.get("thinking", "")
    return block.get("text", "") if kind == "text" else ""


def _anthropic_texts(body: dict) -> list[str]:
    system = body.get("system")
    texts = [text_of(system)] if system else []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
            continue
        for block in content or ():
            if isinstance(block, dict) and block.get("type") in ("text", "tool_result", "tool_use"):
                texts.append(_block_text(block))
    return texts


def _segments(body: dict) -> list[tuple[str, bool]]:
    """(text, carries ``cache_control``) of tools, system and message blocks, in Anthropic's cache order."""
    out: list[tuple[str, bool]] = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            plain = {k: v for k, v in tool.items() if k != "cache_control"}
            out.append((json.dumps(plain, sort_keys=True), "cache_control" in tool))
    system = body.get("system")
    for block in [system] if isinstance(system, str) else system or ():
        out.append((_block_text(block), isinstance(block, dict) and "cache_control" in block))
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in [content] if isinstance(content, str) else content or ():
            out.append((_block_text(block), isinstance(block, dict) and "cache_control" in block))
    return out


def count_tokens_response(body: dict) -> dict:
    return {"input_tokens": approx_tokens("".join(text for text, _ in _segments(body)))}


def _input_usage(body: dict, texts: list[str]) -> dict:
    """Input usage. With ``cache_control`` anywhere: the tokens up to the last breakpoint are a cache write,
    except the longest breakpoint prefix seen before (same model), which is a cache read; the rest is
    ``input_tokens``."""
    segments = _segments(body)
    if not any(marked for _, marked in segments):
        return {"input_tokens": approx_tokens(" ".join(texts))}
    digest, chars, breakpoints = hashlib.sha256(str(body.get("model")).encode()), 0, []
    for text, marked in segments:
        digest.update(hashlib.sha256(text.encode()).digest())
        chars += len(text)
        if marked:
            breakpoints.append((digest.hexdigest(), chars))
    read = max((n for h, n in breakpoints if h in _CACHED), default=0) // 4
    for h, _ in breakpoints:
        _CACHED[h] = None
        _CACHED.move_to_end(h)
    while len(_CACHED) > _CACHED_MAX:
        _CACHED.popitem(last=False)
    upto, total = breakpoints[-1][1] // 4, max(1, chars // 4)
    return {"input_tokens": total - upto, "cache_creation_input_tokens": upto - read, "cache_read_input_tokens": read}


def _thinking(body: dict) -> tuple[bool, Any]:
    """(answer with a thinking block, its token budget)."""
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    return kind in ("enabled", "adaptive"), thinking.get("budget_tokens") if kind == "enabled" else None


def messages_error(body: dict) -> dict | None:
    """Anthropic's 400 body when a ``thinking`` block sent back does not carry this echo's signature of its
    exact text (it was altered on the way), else None. ``redacted_thinking`` blocks pass."""
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            thinking = isinstance(block, dict) and block.get("type") == "thinking"
            if thinking and not signature_ok(block.get("thinking"), block.get("signature")):
                error = {"type": "invalid_request_error", "message": "Invalid signature in thinking block"}
                return {"type": "error", "error": error}
    return None


def _blocks(message: dict) -> list[dict]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _last_user_text(body: dict) -> str | None:
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    blocks = content if isinstance(content, list) else [content]
    if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
        return None
    return "".join(_block_text(b) for b in blocks)


def messages_response(body: dict) -> dict:
    texts = _anthropic_texts(body)
    last = texts[-1] if texts else ""
    thinking, budget = _thinking(body)
    thought, text = cap_with_thought(thought_for(last) if thinking else "", last, body.get("max_tokens"), budget)
    content: list[dict] = [{"type": "thinking", "thinking": thought, "signature": sign(thought)}] if thinking else []
    blocks = [b for m in body.get("messages") or () if isinstance(m, dict) for b in _blocks(m)]
    called = {b.get("name") for b in blocks if b.get("type") == "tool_use"}
    tool = pick_tool(body, _last_user_text(body), called)
    if tool is not None:
        args = tool_args(tool, text)
        content.append({"type": "tool_use", "id": f"toolu_{hex_id()}", "name": tool_name(tool), "input": args})
        answer = json.dumps(args)
    else:
        fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
        answer = structured(fmt, text) or text
        content.append({"type": "text", "text": answer})
    return {
        "id": f"msg_{hex_id()}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "echo"),
        "content": content,
        "stop_reason": "tool_use" if tool is not None else "end_turn",
        "stop_sequence": None,
        "usage": {**_input_usage(body, texts), "output_tokens": approx_tokens(thought) + approx_tokens(answer)},
    }


def messages_stream_events(body: dict) -> list[bytes]:
    whole = messages_response(body)
    start = {**whole, "content": [], "stop_reason": None, "usage": {**whole["usage"], "output_tokens": 0}}
    events: list[tuple[str, dict]] = [("message_start", {"message": start})]
    for index, block in enumerate(whole["content"]):
        if block["type"] == "thinking":
            head = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "tool_use":
            head = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(json.dumps(block["input"]))]
        else:
            head = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        events.append(("content_block_start", {"index": index, "content_block": head}))
        events += [("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"index": index}))
    delta = {"stop_reason": whole["stop_reason"], "stop_sequence": None}
    events.append(("message_delta", {"delta": delta, "usage": {"output_tokens": whole["usage"]["output_tokens"]}}))
    events.append(("message_stop", {}))
    return [sse_event(kind, {"type": kind, **data}) for kind, data in events]
