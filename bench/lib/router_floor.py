"""The floor a proxy cannot go below: LiteLLM's Router called from a minimal ASGI app.

The body is parsed with orjson and handed to ``Router.acompletion`` / ``aresponses`` / ``aanthropic_messages`` /
``aembedding``;
the answer is serialised with orjson. No auth, no callbacks, no proxy machinery: what is left is the Router and
the HTTP call to the upstream. ``bench/bench_proxy.py``'s ``router`` variant runs it (``python -m`` this module
with the proxy's config file and a port), so the cost of everything a proxy adds is measured against it.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn
import yaml

CALLS = {
    "/v1/chat/completions": "acompletion",
    "/v1/responses": "aresponses",
    "/v1/messages": "aanthropic_messages",
    "/v1/embeddings": "aembedding",
}


def build_app(config: dict) -> Any:
    import litellm

    router = litellm.Router(model_list=config["model_list"])

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        call = CALLS.get(scope["path"])
        if call is None:
            await _send(send, 404, b'{"error":"not found"}')
            return
        body = orjson.loads(b"".join(chunks))
        answer = await getattr(router, call)(**body)
        dumped = answer.model_dump() if hasattr(answer, "model_dump") else answer
        await _send(send, 200, orjson.dumps(dumped, default=str))

    return app


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    config_path, port = sys.argv[1], int(sys.argv[2])
    with open(config_path) as f:
        config = yaml.safe_load(f)
    uvicorn.run(build_app(config), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()


class RouterFloor:
    """The floor app in a process group of its own, with ``ProxyServer``'s interface (``base_url``, ``proc``,
    ``start``, ``stop``) so ``bench.lib.wrk`` measures it like any proxy."""

    def __init__(self, config: dict, env: dict[str, str] | None = None) -> None:
        import tempfile
        from pathlib import Path

        self.config = config
        self.env = env or {}
        self.dir = Path(tempfile.mkdtemp(prefix="kg-floor-"))
        self.port = _free_port()
        self.proc: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RouterFloor:
        import os
        import subprocess
        import time

        import httpx

        cfg = self.dir / "config.yaml"
        cfg.write_text(yaml.safe_dump(self.config))
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", **self.env}
        # Run as a file, not ``-m``: the repository root on sys.path would shadow the stdlib ``operator``.
        cmd = [sys.executable, __file__, str(cfg), str(self.port)]
        log = (self.dir / "floor.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router floor exited: {(self.dir / 'floor.log').read_text()[-2000:]}")
            try:
                httpx.get(self.base_url + "/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise TimeoutError("router floor did not start")

    def stop(self) -> None:
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
