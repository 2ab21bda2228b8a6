#!/usr/bin/env bash
# Build real control-plane binaries (kube-apiserver, etcd, kube-controller-manager)
# from Go modules, for envtest-style operator tests.
#
# No registry ships these binaries, but the Go module proxy serves the sources, so
# we generate throwaway wrapper modules in the cache dir and `go build` from them.
# The result is cached per version pair: only the first run on a machine pays.
#
# Prints the bin directory (one line, on stdout) and exits 0 on success.
# Progress goes to stderr; the full build log is kept in the cache dir.
set -euo pipefail

# Pinned: must match the kubectl/helm v1.34 client that the project ships.
K8S_VERSION="v1.34.4"
# The etcd that k8s.io/kubernetes v1.34.4 itself requires (go.etcd.io/etcd/server/v3),
# i.e. the server kube-apiserver 1.34 is tested against upstream.
ETCD_VERSION="v3.6.4"

CACHE_ROOT="${KUBEGATE_CACHE:-$HOME/.cache/kubegate}/controlplane"
DEST="$CACHE_ROOT/${K8S_VERSION}-${ETCD_VERSION}"
BIN="$DEST/bin"
LOG="$DEST/build.log"
BINARIES=(kube-apiserver etcd kube-controller-manager)

log() { printf '[controlplane/build] %s\n' "$*" >&2; }

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN/$b" ]] || return 1
    done
}

# Fast path: no lock, no Go, no network.
if have_all; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$DEST"
exec 9>"$DEST/.lock"
if ! flock -n 9; then
    log "another build holds $DEST/.lock; waiting for it"
    flock 9
fi
# The build we waited for may have produced everything.
if have_all; then
    echo "$BIN"
    exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
    log "ERROR: Go toolchain not found (set GO=/path/to/go); it is required to build the control plane"
    exit 1
fi

# Static binaries (no C toolchain needed), never fetch another Go toolchain,
# and let builds resolve go.sum entries in the generated modules.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
JOBS="${KUBEGATE_BUILD_JOBS:-2}"
WORK="$DEST/work"
STAGE="$DEST/bin.partial"

fail() {
    log "ERROR: $1"
    if [[ -f "$LOG" ]]; then
        log "---- last 40 lines of $LOG ----"
        tail -n 40 "$LOG" >&2
    fi
    exit 1
}

# Run a command with its output appended to the build log.
run() {
    echo "+ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

# Print every module that a go.mod requires but replaces with a local path (k8s
# staging dirs, etcd sibling modules): those point into the upstream checkout and
# must become the published module at the matching release version.
local_replaces() {
    local gomod="$1"
    "$GO" mod edit -json "$gomod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
required = {r["Path"] for r in mod.get("Require") or []}
for r in mod.get("Replace") or []:
    new, old = r["New"], r["Old"]
    if not new.get("Version") and new["Path"].startswith(".") and old["Path"] in required:
        print(old["Path"])
'
}

# Print replaces that pin another published version; upstream relies on them too.
version_replaces() {
    local gomod="$1"
    "$GO" mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new, old = r["New"], r["Old"]
    if new.get("Version"):
        lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
        print(lhs + "=" + new["Path"] + "@" + new["Version"])
'
}

download_gomod() {
    # `go mod download -json` reports where the module's go.mod was stored.
    "$GO" mod download -json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])'
}

# Print upstream's GODEBUG defaults as key=value lines: they change runtime behaviour.
godebugs() {
    "$GO" mod edit -json "$1" | python3 -c '
import json, sys
for g in json.load(sys.stdin).get("GoDebug") or []:
    print(g["Key"] + "=" + g["Value"])
'
}

go_version_of() {
    "$GO" mod edit -json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Go"])'
}

gen_k8s_module() {
    local dir="$WORK/k8s" gomod staging_version m
    local args=() staging=()
    staging_version="v0.${K8S_VERSION#v1.}"
    gomod="$(download_gomod "k8s.io/kubernetes@$K8S_VERSION")" || fail "cannot download k8s.io/kubernetes@$K8S_VERSION"
    mapfile -t staging < <(local_replaces "$gomod")
    ((${#staging[@]} > 0)) || fail "found no staging replaces in $gomod"

    args=(-require="k8s.io/kubernetes@$K8S_VERSION" -go="$(go_version_of "$gomod")")
    for m in "${staging[@]}"; do
        args+=(-replace="$m=$m@$staging_version")
    done
    while read -r m; do
        [[ -n "$m" ]] && args+=(-godebug="$m")
    done < <(godebugs "$gomod")
    while read -r m; do
        [[ -n "$m" ]] && args+=(-replace="$m")
    done < <(version_replaces "$gomod")

    rm -rf "$dir" && mkdir -p "$dir"
    run "$GO" -C "$dir" mod init kubegate.local/controlplane/k8s || fail "go mod init (k8s wrapper) failed"
    run "$GO" -C "$dir" mod edit "${args[@]}" || fail "go mod edit (k8s wrapper) failed"
    log "k8s wrapper module: $dir/go.mod (${#staging[@]} staging modules at $staging_version)"
}

gen_etcd_module() {
    local dir="$WORK/etcd" gomod m
    local args=()
    gomod="$(download_gomod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")" || fail "cannot download etcd server $ETCD_VERSION"

    args=(-require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" -go="$(go_version_of "$gomod")")
    # etcd's sibling modules are replaced by ../ paths upstream; pin them to the release.
    while read -r m; do
        [[ -n "$m" ]] && args+=(-replace="$m=$m@$ETCD_VERSION")
    done < <(local_replaces "$gomod")
    while read -r m; do
        [[ -n "$m" ]] && args+=(-replace="$m")
    done < <(version_replaces "$gomod")

    rm -rf "$dir" && mkdir -p "$dir"
    run "$GO" -C "$dir" mod init kubegate.local/controlplane/etcd || fail "go mod init (etcd wrapper) failed"
    run "$GO" -C "$dir" mod edit "${args[@]}" || fail "go mod edit (etcd wrapper) failed"
    # The etcd binary is just etcdmain behind a main package, as upstream's main.go.
    cat >"$dir/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
}

k8s_ldflags() {
    local minor="${K8S_VERSION#v1.}" flags="-s -w" pkg
    minor="${minor%%.*}"
    # Without these, /version reports v0.0.0-master and clients/version skew checks misbehave.
    # The linker ignores -X for a package that is absent, so listing client-go is safe.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$flags"
}

build_all() {
    local started=$SECONDS
    rm -rf "$STAGE" && mkdir -p "$STAGE"

    log "building etcd $ETCD_VERSION (log: $LOG)"
    run "$GO" -C "$WORK/etcd" build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$STAGE/etcd" . \
        || fail "etcd build failed"
    log "etcd built after $((SECONDS - started))s"

    # One invocation for both commands so their shared packages compile once.
    log "building kube-apiserver and kube-controller-manager $K8S_VERSION (about 3-4 min on 2 cores)"
    run "$GO" -C "$WORK/k8s" build -p "$JOBS" -trimpath -ldflags "$(k8s_ldflags)" -o "$STAGE/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        || fail "kube-apiserver/kube-controller-manager build failed"

    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$STAGE/$b" ]] || fail "build finished but $b is missing from $STAGE"
    done
    "$STAGE/kube-apiserver" --version >>"$LOG" 2>&1 || fail "built kube-apiserver does not run"
    "$STAGE/etcd" --version >>"$LOG" 2>&1 || fail "built etcd does not run"

    # Publish atomically so a half-built bin dir never looks complete.
    rm -rf "$BIN" && mv "$STAGE" "$BIN"
    log "build took $((SECONDS - started))s; binaries in $BIN"
    echo "build took $((SECONDS - started))s" >>"$LOG"
}

: >"$LOG"
log "building control plane $K8S_VERSION / etcd $ETCD_VERSION with $("$GO" version)"
gen_k8s_module
gen_etcd_module
build_all
echo "$BIN"
