"""The ASGI app (routes, received log, fault injection) and its uvicorn entry point."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import deque
from typing import Any

from gateway_plugins.echo.chat import (
    chat_response,
    chat_stream_chunks,
    completion_response,
    completion_stream_chunks,
    embeddings_response,
    models_response,
)
from gateway_plugins.echo.messages import (
    count_tokens_response,
    messages_error,
    messages_response,
    messages_stream_events,
)
from gateway_plugins.echo.responses import responses_error, responses_response, responses_stream_events

Scope = dict[str, Any]


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
        query = scope.get("query_string", b"").decode("latin-1")
        await self._handle(scope["method"], scope["path"], query, headers, raw, send)

    async def _handle(self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes, send: Any) -> None:
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
            self.received.append({"path": path, "query": query, "headers": safe_headers, "body": body})
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
            if body.get("stream"):
                return await _sse(send, completion_stream_chunks(body), pace)
            return await _json(send, 200, completion_response(body))
        if route == "/responses" and method == "POST":
            if (error := responses_error(body)) is not None:
                return await _json(send, 400, error)
            if body.get("stream"):
                return await _sse(send, responses_stream_events(body), pace)
            return await _json(send, 200, responses_response(body))
        if route == "/messages" and method == "POST":
            if (error := messages_error(body)) is not None:
                return await _json(send, 400, error)
            if body.get("stream"):
                return await _sse(send, messages_stream_events(body), pace)
            return await _json(send, 200, messages_response(body))
        if route == "/messages/count_tokens" and method == "POST":
            return await _json(send, 200, count_tokens_response(body))
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

    parser = argparse.ArgumentParser(
        prog="python -m gateway_plugins.echo_upstream",
        description="OpenAI-compatible echo upstream for tests, bench and kubegate dev.",
    )
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
