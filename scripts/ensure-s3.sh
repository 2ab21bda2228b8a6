#!/usr/bin/env bash
# Builds a real S3-compatible server for the audit export tests (tests/dataplane/test_audit_export_s3.py):
# versitygw, an Apache-2.0 S3 gateway over a POSIX directory that implements object lock (bucket default
# retention, per-object GOVERNANCE/COMPLIANCE retention, legal hold). No registry ships its binary, but the Go
# module proxy serves its source: `go install` of one pinned release, whose module and dependency hashes Go checks
# against its go.sum and the checksum database. Cached per version; the first run takes about 3 minutes on 2 cores.
#
# Idempotent: a re-run with the binary present does nothing (no Go, no network).
# Prints the bin directory (one line, on stdout); progress goes to stderr, the build log stays in the cache dir.
set -euo pipefail

# Pinned: the newest release the module proxy serves (`go list -m -versions github.com/versity/versitygw`).
VERSITYGW_VERSION="v1.8.0"

CACHE_ROOT="${KUBEGATE_CACHE:-$HOME/.cache/kubegate}/s3"
DEST="$CACHE_ROOT/versitygw-$VERSITYGW_VERSION"
BIN="$DEST/bin"
LOG="$DEST/build.log"

log() { printf '[ensure-s3] %s\n' "$*" >&2; }

# Fast path: no lock, no Go, no network.
if [[ -x "$BIN/versitygw" ]]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$DEST"
exec 9>"$DEST/.lock"
if ! flock -n 9; then
    log "another build holds $DEST/.lock; waiting for it"
    flock 9
fi
if [[ -x "$BIN/versitygw" ]]; then
    echo "$BIN"
    exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
    log "ERROR: Go toolchain not found (set GO=/path/to/go); it is required to build versitygw for the S3 tests"
    exit 1
fi

# Static binary (no C toolchain), never fetch another Go toolchain; `go install pkg@version` resolves the module's
# own go.mod/go.sum, so the dependency set is upstream's, verified by the checksum database.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
STAGE="$DEST/bin.partial"
rm -rf "$STAGE" && mkdir -p "$STAGE"
started=$SECONDS
log "building versitygw $VERSITYGW_VERSION with $("$GO" version) (about 3 min on 2 cores; log: $LOG)"
if ! GOBIN="$STAGE" "$GO" install -p "${KUBEGATE_BUILD_JOBS:-2}" -trimpath -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >"$LOG" 2>&1; then
    log "ERROR: versitygw build failed; last lines of $LOG:"
    tail -n 40 "$LOG" >&2
    exit 1
fi
"$STAGE/versitygw" --version >>"$LOG" 2>&1 || { log "ERROR: the built versitygw does not run (see $LOG)"; exit 1; }
# Published atomically: a half-built bin dir never looks complete.
rm -rf "$BIN" && mv "$STAGE" "$BIN"
log "versitygw built in $((SECONDS - started))s: $BIN"
echo "build took $((SECONDS - started))s" >>"$LOG"
echo "$BIN"
