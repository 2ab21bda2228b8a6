"""Every client flow of tests/clients/flows, the venv it runs in, and a RecorderServer to see what it sent.

A flow script's flows are its public, undecorated top-level functions without parameters; ``python flows/SCRIPT.py FLOW`` runs one. Scripts run
in .venv-clients, or in .venv-clients-NAME when ``VENVS`` names one (a client whose newest release needs versions
the others cannot share has its own lock, tests/clients/requirements-NAME.lock).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.clients.recorder import HEALTH
from tests.harness.procs import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
FLOWS_DIR = ROOT / "tests" / "clients" / "flows"
VENVS = {"instructor_flow": ".venv-clients-instructor", "llamaindex": ".venv-clients-llamaindex"}


def flows() -> list[tuple[str, str]]:
    """(script, flow) for every flow, in file order."""
    out = []
    for path in sorted(FLOWS_DIR.glob("[!_]*.py")):
        tree = ast.parse(path.read_text())
        out += [(path.stem, f.name) for f in tree.body if isinstance(f, ast.FunctionDef) and _is_flow(f)]
    return out


def _is_flow(f: ast.FunctionDef) -> bool:
    """A flow: a public, undecorated top-level function without parameters (as ``_flow.flows`` finds them)."""
    return not f.name.startswith("_") and not f.decorator_list and not f.args.args


def python(script: str) -> Path:
    return ROOT / VENVS.get(script, ".venv-clients") / "bin" / "python"


def run_flow(script: str, flow: str, base_url: str, key: str, timeout: float = 300, **env: str):
    """Runs one flow against ``base_url``: the finished process (stdout and stderr captured)."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "KUBEGATE_"))},
        "PYTHONSAFEPATH": "1",
        "PYTHONPATH": str(FLOWS_DIR),
        "KUBEGATE_BASE_URL": base_url,
        "KUBEGATE_KEY": key,
        **env,
    }
    return subprocess.run(
        [str(python(script)), str(FLOWS_DIR / f"{script}.py"), flow],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_line(stderr: str) -> str:
    """The exception line of a traceback (the last line naming an error), else the last line."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()] or ["(no output)"]
    named = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Exit)\b", line)]
    return (named or lines)[-1][:400]


class RecorderServer:
    """tests/clients/recorder.py as a subprocess: a client pointed at ``base_url`` reaches ``upstream``, and
    ``requests()`` lists what it sent (with the answer's status)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kg-recorder-"))
        self.out = self.dir / "requests.jsonl"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecorderServer:
        log = self.dir / "recorder.log"
        args = ["--upstream", self.upstream, "--port", str(self.port), "--out", str(self.out)]
        with log.open("ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "clients" / "recorder.py"), *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        health = self.base_url + HEALTH
        wait_until(lambda: httpx.get(health, timeout=1).status_code == 200, timeout=20, what="recorder",
                   proc=self.proc, log=log)  # fmt: skip
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def requests(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def clear(self) -> None:
        self.out.write_text("")
