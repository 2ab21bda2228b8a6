"""A tiny OpenAI-compatible upstream that answers with what it received.

Used by tests, the bench and ``kubegate dev`` (when no provider key is configured), so a user sees
exactly what left the gateway. Raw ASGI on uvicorn (httptools + uvloop) to stay cheap at high rps.

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``POST /v1/completions``,
``POST /v1/embeddings``, ``POST /v1/responses`` (OpenAI's Responses API, streaming and not; LiteLLM also
sends Anthropic ``/v1/messages`` requests for ``openai/`` deployments here), ``POST /v1/messages``
(Anthropic's Messages API, streaming and not), ``GET /v1/models``; the ``/v1`` prefix is optional.
Responses and Messages answer with a tool call instead of text when the request forces one
(``tool_choice`` required / any / a named tool): its arguments are ``{"echo": <text>}``.

Test helpers:
* ``GET /_received`` -> JSON list of ``{"path", "headers", "body"}`` received (newest last);
  ``DELETE /_received`` clears it. Only the last ``--keep`` requests are kept.
* Fault injection by path prefix, so a LiteLLM deployment's ``api_base`` selects it:
  ``/status/<code>/v1/...`` answers with that HTTP status (OpenAI-style error body),
  ``/delay/<ms>/v1/...`` waits first; they combine (``/delay/50/status/429/v1``).
* The same by request header (``x-echo-status``, ``x-echo-delay-ms``) when the client can set them.
* ``POST /_faults`` with ``{"status": 500, "count": 2}`` fails the next ``count`` model calls.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import uuid
from collections import deque
from typing import Any

Scope = dict[str, Any]


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def echo_text(body: dict) -> str:
    """The answer: the last message's text (chat) or the prompt (completions), never longer than
    ``max_tokens`` allows (as a real model), so usage and cost stay within what the gateway reserved."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        text = _text_of(messages[-1].get("content"))
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
        return " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
    return echo_text(body)


def chat_response(body: dict) -> dict:
    text = echo_text(body)
    prompt_tokens, completion_tokens = _approx_tokens(_prompt_text(body)), _approx_tokens(text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "echo"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat_stream_chunks(body: dict) -> list[bytes]:
    """SSE frames: the text in small pieces (so split placeholders occur), then usage if asked."""
    text = echo_text(body)
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.get("model", "echo")
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)] or [""]
    frames = []
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    frames.append(first)
    for piece in pieces:
        frames.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    frames.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt_tokens, completion_tokens = _approx_tokens(_prompt_text(body)), _approx_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        frames.append({**base, "choices": [], "usage": usage})
    out = [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames]
    out.append(b"data: [DONE]\n\n")
    return out


def completion_response(body: dict) -> dict:
    text = echo_text(body)
    prompt_tokens, completion_tokens = _approx_tokens(text), _approx_tokens(text)
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
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


def _sse_event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _pieces(text: str) -> list[str]:
    # Small pieces, so placeholders end up split across events.
    return [text[i : i + 7] for i in range(0, len(text), 7)] or [""]


def _cap(text: str, limit: Any) -> str:
    return text[: limit * 4] if isinstance(limit, int) and limit > 0 else text


# -- OpenAI Responses API ----------------------------------------------------------------------------


def _responses_texts(body: dict) -> list[str]:
    """Every text of a Responses request, in order (instructions first)."""
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    inp = body.get("input")
    if isinstance(inp, str):
        return [*texts, inp]
    for item in inp if isinstance(inp, list) else ():
        if not isinstance(item, dict):
            continue
        if "content" in item:
            texts.append(_text_of(item["content"]))
        elif isinstance(item.get("output"), str):
            texts.append(item["output"])
        elif isinstance(item.get("arguments"), str):
            texts.append(item["arguments"])
    return texts


def _forced_tool(body: dict) -> str | None:
    """The tool a request forces (OpenAI ``required``/named, Anthropic ``any``/``tool``), if any."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools:
        return None
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return choice["name"]
    if choice in ("required", "any") or (isinstance(choice, dict) and choice.get("type") in ("any", "required")):
        first = tools[0]
        return first.get("name") or (first.get("function") or {}).get("name")
    return None


def responses_text(body: dict) -> str:
    texts = _responses_texts(body)
    return _cap(texts[-1] if texts else "", body.get("max_output_tokens"))


def _responses_usage(body: dict, text: str) -> dict:
    inp, out = _approx_tokens(" ".join(_responses_texts(body))), _approx_tokens(text)
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inp + out,
    }


def _responses_item(body: dict, text: str, item_id: str, *, done: bool) -> dict:
    tool = _forced_tool(body)
    status = "completed" if done else "in_progress"
    if tool is not None:
        args = json.dumps({"echo": text}) if done else ""
        return {"type": "function_call", "id": item_id, "call_id": f"call_{item_id[3:]}", "name": tool,
                "arguments": args, "status": status}  # fmt: skip
    content = [{"type": "output_text", "text": text, "annotations": []}] if done else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _responses_envelope(body: dict, rid: str, created: int, status: str, output: list, usage: dict | None) -> dict:
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
    text, rid = responses_text(body), f"resp_{uuid.uuid4().hex[:24]}"
    item = _responses_item(body, text, f"msg_{uuid.uuid4().hex[:24]}", done=True)
    return _responses_envelope(body, rid, int(time.time()), "completed", [item], _responses_usage(body, text))


def responses_stream_events(body: dict) -> list[bytes]:
    """The Responses event stream: created, the item and its text in small deltas, completed (with usage)."""
    text, rid, created = responses_text(body), f"resp_{uuid.uuid4().hex[:24]}", int(time.time())
    item_id = f"msg_{uuid.uuid4().hex[:24]}"
    events: list[tuple[str, dict]] = []
    start = _responses_envelope(body, rid, created, "in_progress", [], None)
    events += [("response.created", {"response": start}), ("response.in_progress", {"response": start})]
    events.append(
        ("response.output_item.added", {"output_index": 0, "item": _responses_item(body, text, item_id, done=False)})
    )
    where = {"item_id": item_id, "output_index": 0}
    if _forced_tool(body) is not None:
        args = json.dumps({"echo": text})
        events += [("response.function_call_arguments.delta", {**where, "delta": p}) for p in _pieces(args)]
        events.append(("response.function_call_arguments.done", {**where, "arguments": args}))
    else:
        where = {**where, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append(("response.content_part.added", {**where, "part": part}))
        events += [("response.output_text.delta", {**where, "delta": p, "logprobs": []}) for p in _pieces(text)]
        events.append(("response.output_text.done", {**where, "text": text, "logprobs": []}))
        events.append(("response.content_part.done", {**where, "part": {**part, "text": text}}))
    item = _responses_item(body, text, item_id, done=True)
    events.append(("response.output_item.done", {"output_index": 0, "item": item}))
    done = _responses_envelope(body, rid, created, "completed", [item], _responses_usage(body, text))
    events.append(("response.completed", {"response": done}))
    return [_sse_event(kind, {"type": kind, "sequence_number": i, **data}) for i, (kind, data) in enumerate(events)]


# -- Anthropic Messages API --------------------------------------------------------------------------


def _anthropic_texts(body: dict) -> list[str]:
    system = body.get("system")
    texts = [_text_of(system)] if system else []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
            continue
        for block in content or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                texts.append(_text_of(block.get("content")))
            elif block.get("type") == "tool_use":
                texts.append(json.dumps(block.get("input")))
    return texts


def _anthropic_block(body: dict, text: str) -> dict:
    tool = _forced_tool(body)
    if tool is not None:
        return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool, "input": {"echo": text}}
    return {"type": "text", "text": text}


def messages_response(body: dict) -> dict:
    texts = _anthropic_texts(body)
    text = _cap(texts[-1] if texts else "", body.get("max_tokens"))
    block = _anthropic_block(body, text)
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "echo"),
        "content": [block],
        "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": _approx_tokens(" ".join(texts)), "output_tokens": _approx_tokens(text)},
    }


def messages_stream_events(body: dict) -> list[bytes]:
    whole = messages_response(body)
    block = whole["content"][0]
    start = {**whole, "content": [], "stop_reason": None, "usage": {**whole["usage"], "output_tokens": 0}}
    events: list[tuple[str, dict]] = [("message_start", {"message": start})]
    if block["type"] == "tool_use":
        events.append(("content_block_start", {"index": 0, "content_block": {**block, "input": {}}}))
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(json.dumps(block["input"]))]
    else:
        events.append(("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
    events += [("content_block_delta", {"index": 0, "delta": d}) for d in deltas]
    events.append(("content_block_stop", {"index": 0}))
    delta = {"stop_reason": whole["stop_reason"], "stop_sequence": None}
    events.append(("message_delta", {"delta": delta, "usage": {"output_tokens": whole["usage"]["output_tokens"]}}))
    events.append(("message_stop", {}))
    return [_sse_event(kind, {"type": kind, **data}) for kind, data in events]


def _vector(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 4) for b in digest[:dim]]


def embeddings_response(body: dict) -> dict:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    texts = [x if isinstance(x, str) else json.dumps(x) for x in items]
    tokens = sum(_approx_tokens(t) for t in texts)
    return {
        "object": "list",
        "model": body.get("model", "echo"),
        "data": [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_response() -> dict:
    return {"object": "list", "data": [{"id": "echo", "object": "model", "created": 0, "owned_by": "kubegate"}]}


def _error_body(status: int) -> dict:
    kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": f"echo upstream injected status {status}", "type": kind, "code": str(status)}}


def parse_fault_path(path: str) -> tuple[str, int | None, int]:
    """Strip ``/status/<code>`` and ``/delay/<ms>`` prefixes; return (rest, status, delay_ms)."""
    status: int | None = None
    delay = 0
    parts = path.split("/")
    while len(parts) >= 3 and parts[1] in ("status", "delay") and parts[2].isdigit():
        if parts[1] == "status":
            status = int(parts[2])
        else:
            delay = int(parts[2])
        parts = ["", *parts[3:]]
    return "/".join(parts) or "/", status, delay


class EchoApp:
    """ASGI app; state (received log, injected faults) is per process."""

    def __init__(self, keep: int = 1000) -> None:
        self.received: deque[dict] = deque(maxlen=keep)
        self.fault_status: int | None = None
        self.fault_count = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        await self._handle(scope["method"], scope["path"], headers, raw, send)

    async def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes, send: Any) -> None:
        if path == "/_received":
            if method == "DELETE":
                self.received.clear()
            return await _json(send, 200, list(self.received))
        if path == "/_faults" and method == "POST":
            spec = json.loads(raw or b"{}")
            self.fault_status, self.fault_count = spec.get("status"), int(spec.get("count", 1))
            return await _json(send, 200, {"ok": True})
        if path in ("/health", "/_health"):
            return await _json(send, 200, {"ok": True})

        pace = 0
        if path.startswith("/pace/"):
            # /pace/<ms>/...: that long between streamed frames, so a client can leave mid-stream.
            _, _, ms, rest = path.split("/", 3)
            pace, path = int(ms), "/" + rest
        route, status, delay = parse_fault_path(path)
        if route.startswith("/v1/"):
            route = route[3:]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return await _json(send, 400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        if method == "POST":
            safe_headers = {k: v for k, v in headers.items() if k not in ("authorization", "api-key")}
            self.received.append({"path": path, "headers": safe_headers, "body": body})
        status = status or (int(headers["x-echo-status"]) if "x-echo-status" in headers else None)
        delay = delay or int(headers.get("x-echo-delay-ms", "0"))
        if status is None and self.fault_count > 0 and self.fault_status and method == "POST":
            self.fault_count -= 1
            status = self.fault_status
        if delay:
            await asyncio.sleep(delay / 1000)
        if status and status >= 400:
            return await _json(send, status, _error_body(status))

        if route == "/chat/completions" and method == "POST":
            if body.get("stream"):
                return await _sse(send, chat_stream_chunks(body), pace)
            return await _json(send, 200, chat_response(body))
        if route == "/completions" and method == "POST":
            return await _json(send, 200, completion_response(body))
        if route == "/responses" and method == "POST":
            if body.get("stream"):
                return await _sse(send, responses_stream_events(body), pace)
            return await _json(send, 200, responses_response(body))
        if route == "/messages" and method == "POST":
            if body.get("stream"):
                return await _sse(send, messages_stream_events(body), pace)
            return await _json(send, 200, messages_response(body))
        if route == "/embeddings" and method == "POST":
            return await _json(send, 200, embeddings_response(body))
        if route == "/models":
            return await _json(send, 200, models_response())
        return await _json(send, 404, {"error": {"message": f"no route {route}", "type": "invalid_request_error"}})


async def _json(send: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _sse(send: Any, frames: list[bytes], pace_ms: int = 0) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for frame in frames:
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        if pace_ms:
            await asyncio.sleep(pace_ms / 1000)
    await send({"type": "http.response.body", "body": b""})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="OpenAI-compatible echo upstream for tests, bench and kubegate dev.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--keep", type=int, default=1000, help="Received requests kept for GET /_received.")
    args = parser.parse_args(argv)
    uvicorn.run(
        EchoApp(keep=args.keep),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        # Longer than any client's idle keep-alive (aiohttp 15 s, httpx 5 s), as real providers do: a server
        # that closes idle connections first races the client reusing one, which surfaces as a spurious
        # "Connection error" under load.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
