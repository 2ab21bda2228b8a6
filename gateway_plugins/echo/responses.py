"""OpenAI's Responses API: text or a function call, after a reasoning item when reasoning is asked for."""

from __future__ import annotations

import json
import time

from gateway_plugins.echo.common import (
    approx_tokens,
    cap_with_thought,
    hex_id,
    pick_tool,
    pieces,
    seal,
    sse_event,
    structured,
    text_of,
    thought_for,
    tool_args,
    tool_name,
    unseal,
)


def _responses_texts(body: dict) -> list[str]:
    """Every text of a Responses request, in order (instructions first)."""
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    inp = body.get("input")
    if isinstance(inp, str):
        return [*texts, inp]
    for item in inp if isinstance(inp, list) else ():
        if not isinstance(item, dict) or item.get("type") == "reasoning":
            continue
        if "content" in item:
            texts.append(text_of(item["content"]))
        elif isinstance(item.get("output"), (str, list)):
            texts.append(text_of(item["output"]))
        elif isinstance(item.get("arguments"), str):
            texts.append(item["arguments"])
    return texts


def _last_user_text(body: dict) -> str | None:
    inp = body.get("input")
    if isinstance(inp, str):
        return inp
    last = inp[-1] if isinstance(inp, list) and inp else None
    if isinstance(last, dict) and last.get("role") == "user" and last.get("type", "message") == "message":
        return text_of(last.get("content"))
    return None


def _called(body: dict) -> set[str]:
    inp = body.get("input")
    items = inp if isinstance(inp, list) else ()
    return {i.get("name") for i in items if isinstance(i, dict) and i.get("type") == "function_call"}


def _reasoning(body: dict) -> tuple[bool, bool]:
    """(emit a reasoning item, with ``encrypted_content``). ``include`` alone asks for nothing: LiteLLM's
    Messages-to-Responses adapter sends it on every request, with or without ``thinking``."""
    reasoning = body.get("reasoning")
    on = isinstance(reasoning, dict) and reasoning.get("effort") not in ("none", "minimal")
    return on, on and "reasoning.encrypted_content" in (body.get("include") or ())


def responses_error(body: dict) -> dict | None:
    """An OpenAI-style 400 body when a reasoning item sent back has ``encrypted_content`` this echo did not
    seal (it was altered on the way), else None."""
    inp = body.get("input")
    for item in inp if isinstance(inp, list) else ():
        sealed = item.get("encrypted_content") if isinstance(item, dict) and item.get("type") == "reasoning" else None
        if sealed is not None and unseal(sealed) is None:
            message = f"The encrypted content for item {item.get('id')} could not be verified."
            error = {"message": message, "type": "invalid_request_error", "param": "input"}
            return {"error": {**error, "code": "invalid_encrypted_content"}}
    return None


def responses_output(body: dict) -> tuple[list[dict], dict]:
    """The finished output items (a reasoning item first when asked for, then a message or a function call)
    and the usage."""
    texts = _responses_texts(body)
    last = texts[-1] if texts else ""
    reasoning, encrypted = _reasoning(body)
    thought, text = cap_with_thought(thought_for(last) if reasoning else "", last, body.get("max_output_tokens"))
    items: list[dict] = []
    if reasoning:
        item = {"type": "reasoning", "id": f"rs_{hex_id()}", "summary": []}
        items.append({**item, "encrypted_content": seal({"id": item["id"], "thought": thought})} if encrypted else item)
    tool, key = pick_tool(body, _last_user_text(body), _called(body)), hex_id()
    if tool is not None:
        answer = json.dumps(tool_args(tool, text))
        items.append({"type": "function_call", "id": f"fc_{key}", "call_id": f"call_{key}", "name": tool_name(tool),
                      "arguments": answer, "status": "completed"})  # fmt: skip
    else:
        answer = structured((body.get("text") or {}).get("format"), text) or text
        content = [{"type": "output_text", "text": answer, "annotations": []}]
        items.append({"type": "message", "id": f"msg_{key}", "status": "completed", "role": "assistant",
                      "content": content})  # fmt: skip
    inp_tokens, reasoning_tokens = approx_tokens(" ".join(texts)), approx_tokens(thought)
    out = approx_tokens(answer) + reasoning_tokens
    usage = {
        "input_tokens": inp_tokens,
        "input_tokens_details": {"cached_tokens": inp_tokens // 2 if body.get("prompt_cache_key") else 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": inp_tokens + out,
    }
    return items, usage


def _envelope(body: dict, rid: str, created: int, status: str, output: list, usage: dict | None) -> dict:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": body.get("model", "echo"),
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": False,
        "metadata": {},
    }


def responses_response(body: dict) -> dict:
    items, usage = responses_output(body)
    return _envelope(body, f"resp_{hex_id()}", int(time.time()), "completed", items, usage)


def _started(item: dict) -> dict:
    """An item as ``response.output_item.added`` shows it: nothing generated yet."""
    if item["type"] == "reasoning":
        return {"type": "reasoning", "id": item["id"], "summary": []}
    if item["type"] == "function_call":
        return {**item, "arguments": "", "status": "in_progress"}
    return {**item, "content": [], "status": "in_progress"}


def responses_stream_events(body: dict) -> list[bytes]:
    """The Responses event stream: created, each item (text or arguments in small deltas), completed (with
    usage)."""
    items, usage = responses_output(body)
    rid, created = f"resp_{hex_id()}", int(time.time())
    start = _envelope(body, rid, created, "in_progress", [], None)
    events: list[tuple[str, dict]] = [("response.created", {"response": start}), ("response.in_progress", {"response": start})]  # fmt: skip
    for index, item in enumerate(items):
        events.append(("response.output_item.added", {"output_index": index, "item": _started(item)}))
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "function_call":
            args = item["arguments"]
            events += [("response.function_call_arguments.delta", {**where, "delta": p}) for p in pieces(args)]
            events.append(("response.function_call_arguments.done", {**where, "arguments": args}))
        elif item["type"] == "message":
            text, where = item["content"][0]["text"], {**where, "content_index": 0}
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(("response.content_part.added", {**where, "part": part}))
            events += [("response.output_text.delta", {**where, "delta": p, "logprobs": []}) for p in pieces(text)]
            events.append(("response.output_text.done", {**where, "text": text, "logprobs": []}))
            events.append(("response.content_part.done", {**where, "part": {**part, "text": text}}))
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    events.append(("response.completed", {"response": _envelope(body, rid, created, "completed", items, usage)}))
    return [sse_event(kind, {"type": kind, "sequence_number": i, **data}) for i, (kind, data) in enumerate(events)]
