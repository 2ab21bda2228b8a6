#!/usr/bin/env bash
# Makes sure a redis-server binary is on PATH, installing Debian's package when it is not.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "redis-server is missing: install Debian's redis-server package (apt-get install redis-server)" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "==> installing redis-server from Debian packages" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system service; kubegate starts its own servers on free ports, so stop it.
( $SUDO service redis-server stop || true ) >/dev/null 2>&1
command -v redis-server >/dev/null
