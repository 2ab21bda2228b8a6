#!/usr/bin/env bash
# Creates .venv from the hash-locked requirements.lock and installs kubegate into it (editable).
# Idempotent: re-running with an unchanged lock file costs well under a second.
set -euo pipefail
# The repo has a top-level operator/ folder: never let cwd shadow the stdlib `operator` module.
export PYTHONSAFEPATH=1
cd "$(dirname "$0")/.."

PY="${KUBEGATE_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "kubegate needs Python 3.11 (found: $("$PY" --version 2>&1)); set KUBEGATE_PYTHON" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi

stamp=.venv/.kubegate-lock-stamp
want="$(cat requirements.lock scripts/bootstrap.lock pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "==> installing pinned dependencies into .venv (hash-checked)" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r scripts/bootstrap.lock
# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on CI machines) nothing would ever write it,
# and every LiteLLM proxy a test starts would compile LiteLLM from source again (about 2x its start-up time).
.venv/bin/uv pip sync --quiet --python .venv/bin/python --require-hashes --compile-bytecode requirements.lock
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
