"""The operator process stays light: it never imports LiteLLM (seconds of start-up, ~140 MiB of memory)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_operator_handlers_do_not_import_litellm():
    code = (
        "import sys, gateway_operator.handlers; print(sorted(m for m in sys.modules if m.split('.')[0] == 'litellm'))"
    )
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:500]
