"""Run the operator exactly as the chart's Deployment does (its args and env), as a local process.

The container runs ``kubegate <args>``; here the same command runs with KUBECONFIG pointing at a token of the
chart's ServiceAccount. Output goes to a file, never a pipe: a pipe nobody drains fills up (64 KiB) and blocks
kopf's logging, which silently stalls every handler. ``kubegate operator`` execs kopf, so the process started here
is kopf itself; it still gets its own session so that ``stop`` also ends anything it might leave behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

LIVENESS_PREFIX = "--liveness="


def local_argv(container: dict[str, Any], liveness_port: int) -> list[str]:
    """The container's command line, with the liveness endpoint moved to a free loopback port."""
    args = [
        f"{LIVENESS_PREFIX}http://127.0.0.1:{liveness_port}/healthz" if a.startswith(LIVENESS_PREFIX) else a
        for a in container["args"]
    ]
    return [str(Path(sys.executable).parent / "kubegate"), *args]


def container_env(container: dict[str, Any], namespace: str) -> dict[str, str]:
    """Plain values and the downward-API namespace; anything else would need a kubelet, so it fails loudly."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[var["name"]] = namespace
        else:
            raise AssertionError(f"operator env {var['name']!r} cannot be reproduced outside a pod: {var}")
    return env


class OperatorProcess:
    def __init__(self, argv: list[str], env: dict[str, str], kubeconfig: Path, log_path: Path) -> None:
        self.argv, self.log_path = argv, log_path
        self._env = {
            **{k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "PYTEST_CURRENT_TEST")},
            **env,
            "KUBECONFIG": str(kubeconfig),
            # A cwd on sys.path would make /work/main/operator shadow the stdlib `operator` module.
            "PYTHONSAFEPATH": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                self.argv,
                env=self._env,
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None, "not started"
        return self._popen.pid

    def session(self) -> list[int]:
        """Live processes of the operator's session (the operator and anything it spawned)."""
        return _session_members(self.pid)

    def wait_exit(self, timeout: float) -> int:
        """The exit code; fails with the operator's output if it is still running after ``timeout``."""
        assert self._popen is not None, "not started"
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"operator still running after {timeout:.0f}s:\n{self.tail()}") from None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
        """Poll ``check`` until truthy; fail with the operator's output on timeout or if the operator died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"operator exited while waiting for {what}:\n{self.tail()}")
            value = check()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; operator output:\n{self.tail()}")

    def wait_healthy(self, port: int, timeout: float = 90.0) -> None:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_for("the liveness endpoint", healthy, timeout)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM every process of the session (kopf finishes its handlers), SIGKILL after ``grace``."""
        if self._popen is None:
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _session_members(self._popen.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _session_members(self._popen.pid):
                self._popen.poll()
                time.sleep(0.2)
            if not _session_members(self._popen.pid):
                break
        self._popen.wait(timeout=grace)
        return self._popen.returncode

    def kill(self) -> None:
        """SIGKILL every process of the session at once (a crash) and reap the operator."""
        if self._popen is None:
            return
        for pid in _session_members(self._popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._popen.wait(timeout=30)

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of every process of the session added up (all count against a pod's limit)."""
        total = 0
        for pid in _session_members(self._popen.pid) if self._popen else []:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
        return total

    def tail(self, chars: int = 6000) -> str:
        return self.output()[-chars:]


def _die_with_parent() -> None:
    # If pytest is killed outright the kernel stops the operator too (PR_SET_PDEATHSIG, which survives the exec
    # from `kubegate operator` into kopf).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised command: state, ppid, pgrp, session, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
