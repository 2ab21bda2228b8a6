"""``/metrics`` on a port of its own (``KUBEGATE_METRICS_PORT``, default 9464), never on the tenant port.

Spend, tenants and models are in the metrics: the Service tenants reach exposes only the API port, and
Prometheus scrapes this one. With several uvicorn workers in one pod, the first worker to bind the port
serves the series of all of them (Prometheus multiprocess mode); the others keep retrying in the
background, so the port comes back if the serving worker is replaced.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway_plugins.metrics import render_latest

log = logging.getLogger("kubegate.metrics")

DEFAULT_PORT = 9464
PORT_ENV = "KUBEGATE_METRICS_PORT"
ADDR_ENV = "KUBEGATE_METRICS_ADDR"
RETRY_SECONDS = 5.0

_started = False


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        body, content_type = render_latest()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line each
        return


def _serve_forever(addr: str, port: int) -> None:
    stop = threading.Event()
    while not stop.is_set():
        try:
            server = ThreadingHTTPServer((addr, port), _Handler)
        except OSError:
            # Another worker of this pod serves the port; take over if it goes away.
            stop.wait(RETRY_SECONDS)
            continue
        server.daemon_threads = True
        log.info("metrics on %s:%d/metrics", addr, port)
        server.serve_forever()


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on ``addr:port`` from a daemon thread (idempotent per process)."""
    global _started
    if _started:
        return
    _started = True
    threading.Thread(target=_serve_forever, args=(addr, port), name="kubegate-metrics", daemon=True).start()


def serve_metrics_from_settings() -> None:
    raw = os.environ.get(PORT_ENV, str(DEFAULT_PORT))
    if os.environ.get("KUBEGATE_METRICS", "1") == "0" or raw in ("", "0"):
        return
    serve_metrics(int(raw), os.environ.get(ADDR_ENV, "0.0.0.0"))
