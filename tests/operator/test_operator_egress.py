"""Importing the operator's handlers opens no network connection (LiteLLM's price map stays local)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SITECUSTOMIZE = Path(__file__).resolve().parents[1] / "harness" / "egress_sitecustomize"


def _egress(code: str, tmp_path: Path) -> list[dict]:
    log = tmp_path / f"egress-{abs(hash(code))}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    env.update(KG_EGRESS_LOG=str(log), PYTHONPATH=str(SITECUSTOMIZE))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_importing_the_handlers_resolves_and_connects_nowhere(tmp_path):
    # Control: the recorder sees a plain lookup, so an empty record below means something.
    assert _egress("import socket; socket.getaddrinfo('localhost', 80)", tmp_path)
    assert _egress("import gateway_operator.handlers", tmp_path) == []
