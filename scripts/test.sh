#!/usr/bin/env bash
# Sets up everything the test suite needs (venv, Redis, control-plane binaries, helm/kubectl, an S3 server)
# and runs it: ruff, then pytest. Extra arguments go to pytest.
set -euo pipefail
# The repo has a top-level operator/ folder: never let cwd shadow the stdlib `operator` module.
export PYTHONSAFEPATH=1
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-redis.sh
if [ -x scripts/controlplane/build.sh ]; then bash scripts/controlplane/build.sh >&2; fi
if [ -x scripts/ensure-tools.sh ]; then bash scripts/ensure-tools.sh >&2; fi
# A real S3-compatible server (versitygw, object lock) for the audit export tests (tests/dataplane/test_audit_export_s3.py).
bash scripts/ensure-s3.sh >&2
# Headless Chromium for the HTML report test (tests/dataplane/test_report_e2e.py).
bash scripts/ensure-chromium.sh >&2
# The real clients (pinned, in their own venvs and node_modules) for tests/dataplane/test_real_clients.py.
bash scripts/ensure-clients.sh
# The independent PII corpus generator for tests/pii/test_recall.py.
bash scripts/ensure-pii-eval.sh
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -50; exit 1; }
echo "==> pytest" >&2
exec .venv/bin/python -m pytest "$@"
