#!/usr/bin/env bash
# Sets up the venv and Redis, then runs `kubegate dev` (a local gateway from examples/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-redis.sh
exec .venv/bin/kubegate dev "$@"
