#!/usr/bin/env bash
# The programs that read recon's plan JSON in tests/readers as platform teams read Terraform's, built
# once per machine from the Go module proxy (no download site):
#   - planreader: tests/readers/tfjson, a Go program over hashicorp/terraform-json (tfjson.Plan,
#     Validate, sanitize.SanitizePlan), rebuilt when its source changes;
#   - opa: github.com/open-policy-agent/opa (`opa eval` runs the Rego policies of tests/readers/policies).
#
#   setup-plan-readers.sh build     build what is missing into the cache (idempotent)
#   setup-plan-readers.sh status    print ok | failed | running | absent (the build's state)
#   setup-plan-readers.sh bin       print the folder of the binaries
#
# Binaries go to RECON_READERS_CACHE (default /var/cache/recon-plan-readers)/bin, with their own Go
# module and build caches beside them; later runs reuse them. .ci/test.sh starts the build in the
# background; tests/readers waits for `status`.
set -euo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
SRC="$HERE/../tests/readers/tfjson"
CACHE="${RECON_READERS_CACHE:-/var/cache/recon-plan-readers}"
BIN="$CACHE/bin"
OPA_VER=v1.22.4            # github.com/open-policy-agent/opa
export PATH="/usr/local/go/bin:$PATH"
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

log() { echo "[plan-readers $(date +%T)] $*" >&2; }
ts() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(ts)" 'BEGIN { printf "%.1f", b - a }'; }

# The reader is rebuilt when its source changes: its stamp is a digest of main.go, go.mod and go.sum.
source_stamp() { cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-16; }
reader_built() { [ -x "$BIN/planreader" ] && [ "$(cat "$BIN/planreader.stamp" 2> /dev/null)" = "$(source_stamp)" ]; }
opa_built() { [ -x "$BIN/opa" ] && [ "$(cat "$BIN/opa.version" 2> /dev/null)" = "$OPA_VER" ]; }
all_built() { reader_built && opa_built; }

build_reader() {
    reader_built && return 0
    log "building planreader (hashicorp/terraform-json)"
    local s; s=$(ts)
    # a copy: the source folder may be read-only (CI's clone of shared files is not, but a checkout can be)
    rm -rf "$CACHE/build-reader" && mkdir -p "$CACHE/build-reader" "$BIN"
    cp "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" "$CACHE/build-reader/"
    (cd "$CACHE/build-reader" && go build -trimpath -ldflags "-s -w" -o "$BIN/planreader.tmp" .)
    mv "$BIN/planreader.tmp" "$BIN/planreader"
    source_stamp > "$BIN/planreader.stamp"
    log "built planreader in $(since "$s")s"
}

build_opa() {
    opa_built && return 0
    log "building opa $OPA_VER"
    local s; s=$(ts)
    mkdir -p "$CACHE/build-opa" "$BIN"
    GOBIN="$CACHE/build-opa" go install -trimpath -ldflags "-s -w" "github.com/open-policy-agent/opa@$OPA_VER"
    mv "$CACHE/build-opa/opa" "$BIN/opa"
    echo "$OPA_VER" > "$BIN/opa.version"
    log "built opa in $(since "$s")s"
}

# build with a lock (one build per machine at a time) and a status file the tests wait on:
#   $CACHE/build.status: running PID | ok | failed
cmd_build() {
    mkdir -p "$CACHE"
    exec 9> "$CACHE/build.lock"
    if ! flock -n 9; then
        log "another build holds $CACHE/build.lock; waiting for it"
        flock 9
    fi
    if all_built; then echo ok > "$CACHE/build.status"; log "binaries present in $BIN"; return 0; fi
    command -v go > /dev/null || { log "ERROR: go not found (looked in PATH and /usr/local/go/bin)"; echo failed > "$CACHE/build.status"; return 1; }
    echo "running $$" > "$CACHE/build.status"
    local s; s=$(ts)
    if (build_reader && build_opa); then
        echo ok > "$CACHE/build.status"; log "build done in $(since "$s")s"
    else
        echo failed > "$CACHE/build.status"; log "ERROR: build failed after $(since "$s")s"; return 1
    fi
}

cmd_status() {
    if all_built; then echo ok; return 0; fi
    local st; st="$(cat "$CACHE/build.status" 2> /dev/null || echo absent)"
    case "$st" in
        running*) kill -0 "${st#running }" 2> /dev/null && echo running || echo failed ;;
        ok) echo absent ;;  # built once, but the reader's source changed since: a build must run again
        *) echo "$st" ;;
    esac
}

case "${1:-}" in
    build) cmd_build ;;
    status) cmd_status ;;
    bin) echo "$BIN" ;;
    *) echo "usage: $0 build|status|bin" >&2; exit 2 ;;
esac
