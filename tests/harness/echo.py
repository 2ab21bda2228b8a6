"""The echo upstream (``gateway_plugins.echo_upstream``) as a subprocess on a free port."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.harness.procs import free_port, stop_process, wait_until


class EchoServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = Path(tempfile.mkdtemp(prefix="kg-echo-")) / "echo.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """Use as a deployment's ``api_base``; prefix ``/status/500`` etc. for injected faults."""
        return f"http://127.0.0.1:{self.port}/v1"

    def api_base(self, *, status: int | None = None, delay_ms: int | None = None) -> str:
        prefix = ""
        if delay_ms:
            prefix += f"/delay/{delay_ms}"
        if status:
            prefix += f"/status/{status}"
        return f"http://127.0.0.1:{self.port}{prefix}/v1"

    def start(self) -> EchoServer:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway_plugins.echo_upstream", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{self.port}/_health"
        wait_until(
            lambda: httpx.get(url, timeout=1).status_code == 200,
            timeout=20,
            what="echo upstream",
            proc=self.proc,
            log=self.log,
        )
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def received(self) -> list[dict]:
        """Request bodies that reached the upstream (authorization headers left out), oldest first."""
        return httpx.get(f"http://127.0.0.1:{self.port}/_received", timeout=5).json()

    def clear(self) -> None:
        httpx.delete(f"http://127.0.0.1:{self.port}/_received", timeout=5)

    def fail_next(self, status: int, count: int = 1) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/_faults", json={"status": status, "count": count}, timeout=5)
