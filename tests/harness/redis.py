"""A private ``redis-server`` on a free loopback port (never the system service)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.harness.procs import free_port, stop_process, wait_until


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


class RedisServer:
    """``persistent=True`` turns on the append-only file (fsync always), so a stop/start keeps what was written."""

    def __init__(self, port: int | None = None, workdir: Path | None = None, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: run `bash scripts/ensure-redis.sh`")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="kg-redis-"))
        self.log = self.dir / "redis.log"
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.log),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: _ping(self.port), timeout=10, what="redis-server", proc=self.proc, log=self.log)
        return self

    def stop(self) -> None:
        """Stop the server (an outage); ``start()`` brings it back on the same port, empty unless persistent."""
        stop_process(self.proc)
        self.proc = None

    def client(self):  # -> redis.Redis (sync), for test set-up and assertions
        import redis

        return redis.Redis.from_url(self.url)
