#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the report test that opens the HTML report like a reviewer would.
# Prints the browser's path on the last line. Needs root (or an existing install); CI runs as root.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
if [ "$(id -u)" != 0 ]; then
  echo "ensure-chromium: chromium is not installed and this is not root: apt-get install chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Lock-waiting: another job on the machine may be running apt at the same time.
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends chromium fonts-dejavu-core >&2 || {
  apt-get -o DPkg::Lock::Timeout=300 update >&2
  apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends chromium fonts-dejavu-core >&2
}
command -v chromium
