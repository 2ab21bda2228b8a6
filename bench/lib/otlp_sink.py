"""An OTLP/HTTP endpoint that accepts and discards spans, in a subprocess of its own (so its CPU is not the
proxy's): ``python bench/lib/otlp_sink.py PORT``, or :class:`OtlpSink` from a benchmark."""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class OtlpSink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def traces_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def start(self) -> OtlpSink:
        from tests.harness.procs import wait_until

        # Its own process group: stop_process signals the group.
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.port)], start_new_session=True)
        wait_until(
            lambda: httpx.post(self.traces_endpoint, content=b"", timeout=1).status_code == 200,
            timeout=20,
            what="OTLP sink",
            proc=self.proc,
        )
        return self

    def stop(self) -> None:
        from tests.harness.procs import stop_process

        stop_process(self.proc)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler).serve_forever()
