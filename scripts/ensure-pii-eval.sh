#!/usr/bin/env bash
# The independent PII corpus generator (presidio-evaluator + Faker, tests/pii/eval/requirements.lock) in a venv of
# its own, .venv-pii-eval, hash-checked: tests/pii/test_recall.py and bench/bench_pii_recall.py run it as a subprocess.
# Idempotent: re-running with an unchanged lock costs well under a second.
set -euo pipefail
export PYTHONSAFEPATH=1
cd "$(dirname "$0")/.."

PY="${KUBEGATE_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
UV=.venv/bin/uv  # scripts/bootstrap.sh installs it
lock=tests/pii/eval/requirements.lock
venv=.venv-pii-eval
stamp="$venv/.kubegate-lock-stamp"
want="$(cat "$lock" scripts/ensure-pii-eval.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
echo "==> installing $lock into $venv (hash-checked)" >&2
[ -x "$venv/bin/python" ] || "$UV" venv --quiet --python "$PY" "$venv"
"$UV" pip sync --quiet --python "$venv/bin/python" --require-hashes --compile-bytecode "$lock"
echo "$want" > "$stamp"
