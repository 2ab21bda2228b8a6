"""The CLIs' default flows, pinned in tests/clients/node: Claude Code in print mode and Codex ``exec`` with a
custom model provider, each with a fresh home directory, telemetry, non-essential traffic and retries off, and a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from _flow import ANTHROPIC_MODEL, BASE_URL, KEY, OPENAI_MODEL, run

BIN = Path(__file__).resolve().parents[1] / "node" / "node_modules" / ".bin"
TIMEOUT = 180


def _env(home: str, **extra: str) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "TMPDIR") if k in os.environ}
    return {**keep, "HOME": home, "XDG_CONFIG_HOME": f"{home}/.config", "XDG_CACHE_HOME": f"{home}/.cache", **extra}


def _run(args: list[str], env: dict[str, str], cwd: str) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
    return done.stdout


def claude_code() -> None:
    with tempfile.TemporaryDirectory(prefix="kg-claude-") as home:
        env = _env(
            home,
            ANTHROPIC_BASE_URL=BASE_URL,
            ANTHROPIC_API_KEY=KEY,
            ANTHROPIC_MODEL=ANTHROPIC_MODEL,
            ANTHROPIC_DEFAULT_HAIKU_MODEL=ANTHROPIC_MODEL,
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_TELEMETRY="1",
            DISABLE_AUTOUPDATER="1",
            DISABLE_ERROR_REPORTING="1",
            CLAUDE_CODE_MAX_RETRIES="0",
        )
        out = _run([str(BIN / "claude"), "-p", "say hi", "--output-format", "json"], env, home)
        result = json.loads(out)
        assert result.get("is_error") is False and result.get("result"), result


CODEX_CONFIG = """\
model = "{model}"
model_provider = "kubegate"

[model_providers.kubegate]
name = "kubegate"
base_url = "{base_url}/v1"
env_key = "KUBEGATE_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
"""


def codex() -> None:
    with tempfile.TemporaryDirectory(prefix="kg-codex-") as home:
        codex_home = Path(home) / ".codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=OPENAI_MODEL, base_url=BASE_URL))
        env = _env(home, CODEX_HOME=str(codex_home), KUBEGATE_KEY=KEY)
        out = _run([str(BIN / "codex"), "exec", "--skip-git-repo-check", "say hi"], env, home)
        assert out.strip(), "codex printed no answer"


if __name__ == "__main__":
    run(globals())
