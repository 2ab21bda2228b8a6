"""A transparent recording forwarder between a real client and its server (the gateway, or the echo upstream for
a capture): every request is passed on as it came (streamed answers streamed back) and appended to a JSON-lines
file as ``{"method", "path" (with the query string), "headers" (names), "body" (JSON, or text), "status",
"request_id" (the answer's ``x-kubegate-request-id``), "error" (the answer's body when status >= 400)}``, so a test knows exactly how many requests a client made and what
it sent, whatever the client (SDK or CLI).

    python -m tests.clients.recorder --upstream http://127.0.0.1:4000 --port 5000 --out requests.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx

HEALTH = "/_recorder/health"
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


class Recorder:
    def __init__(self, upstream: str, out: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.out = out
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(300), follow_redirects=False)

    def _write(self, record: dict[str, Any]) -> None:
        with self.out.open("a") as f:
            f.write(json.dumps(record) + "\n")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == HEALTH:  # answered here: never forwarded, never recorded
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = {"method": scope["method"], "path": path, "headers": sorted({k for k, _ in headers}), "body": body}
        request = self.client.build_request(
            scope["method"], self.upstream + path, headers=[h for h in headers if h[0] not in HOP_HEADERS], content=raw
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as e:
            self._write({**record, "status": 502, "error": repr(e)})
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": repr(e).encode()})
            return
        record["status"] = response.status_code
        record["request_id"] = response.headers.get("x-kubegate-request-id")
        out_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding"
        ]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
        seen = b""
        try:
            async for chunk in response.aiter_bytes():
                if response.status_code >= 400 and len(seen) < 4096:
                    seen += chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await response.aclose()
            if response.status_code >= 400:
                record["error"] = seen[:4096].decode("utf-8", "replace")
            self._write(record)
        await send({"type": "http.response.body", "body": b""})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        Recorder(args.upstream, args.out), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off"
    )


if __name__ == "__main__":
    main()
