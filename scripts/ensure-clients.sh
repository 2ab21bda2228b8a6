#!/usr/bin/env bash
# The real clients the conformance suite (tests/dataplane/test_real_clients.py) runs, each pinned exactly and kept
# out of .venv: one venv per lock in tests/clients (requirements.lock -> .venv-clients, requirements-NAME.lock ->
# .venv-clients-NAME), hash-checked, and the CLIs of tests/clients/node/package-lock.json (npm ci).
# Idempotent: re-running with unchanged locks costs well under a second.
set -euo pipefail
export PYTHONSAFEPATH=1
cd "$(dirname "$0")/.."

PY="${KUBEGATE_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
UV=.venv/bin/uv  # scripts/bootstrap.sh installs it
for lock in tests/clients/requirements*.lock; do
  name="$(basename "$lock" .lock)"
  venv=".venv-clients${name#requirements}"
  stamp="$venv/.kubegate-lock-stamp"
  want="$(cat "$lock" scripts/ensure-clients.sh | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then continue; fi
  echo "==> installing $lock into $venv (hash-checked)" >&2
  [ -x "$venv/bin/python" ] || "$UV" venv --quiet --python "$PY" "$venv"
  "$UV" pip sync --quiet --python "$venv/bin/python" --require-hashes --compile-bytecode "$lock"
  echo "$want" > "$stamp"
done

node=tests/clients/node
stamp="$node/node_modules/.kubegate-lock-stamp"
want="$(cat "$node/package-lock.json" scripts/ensure-clients.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> npm ci in $node" >&2
  (cd "$node" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
fi
