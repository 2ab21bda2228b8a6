#!/usr/bin/env bash
# Sets up the venv and Redis, then runs `kubegate dev` (a local gateway from examples/).
set -euo pipefail
# The repo has a top-level operator/ folder: never let cwd shadow the stdlib `operator` module.
export PYTHONSAFEPATH=1
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-redis.sh
exec .venv/bin/kubegate dev "$@"
