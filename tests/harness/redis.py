"""A private ``redis-server`` on a free loopback port (never the system service)."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.harness.procs import free_port, stop_process, wait_until


def _ping(port: int, password: str | None) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        if password:
            sock.sendall(f"AUTH {password}\r\n".encode())
            if not sock.recv(16).startswith(b"+OK"):
                return False
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


class RedisServer:
    """``persistent=True`` turns on the append-only file (fsync always), so a stop/start keeps what was written.

    Like the managed Redis the operator renders, it requires a password (a fresh one per server, in ``url``);
    ``password=""`` runs it open. ``args`` replaces the persistence arguments, e.g. with exactly those the
    operator renders."""

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        persistent: bool = False,
        password: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: run `bash scripts/ensure-redis.sh`")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="kg-redis-"))
        self.log = self.dir / "redis.log"
        self.persistent = persistent
        self.password = secrets.token_urlsafe(16) if password is None else password
        self.args = args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def url_without_password(self) -> str:
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
            *(
                self.args
                if self.args is not None
                else ["--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
            ),
            *(["--requirepass", self.password] if self.password and self.args is None else []),
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.log),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(
            lambda: _ping(self.port, self.password), timeout=10, what="redis-server", proc=self.proc, log=self.log
        )
        return self

    def stop(self) -> None:
        """Stop the server (an outage); ``start()`` brings it back on the same port, empty unless persistent."""
        stop_process(self.proc)
        self.proc = None

    def client(self):  # -> redis.Redis (sync), for test set-up and assertions
        import redis

        return redis.Redis.from_url(self.url)
