#!/usr/bin/env bash
# Make a Docker engine answer on this machine: install Debian's docker.io when no engine is there,
# start dockerd in the background when none answers, wait (bounded) until `docker info` works.
# Idempotent; safe to run by hand. Log of a dockerd it started: /tmp/dockerd.log.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

if docker info >/dev/null 2>&1; then
    log "docker engine already answers"
    exit 0
fi

command -v dockerd >/dev/null || apt_install docker.io
# docker.io brings containerd, runc and iptables; a docker client may already exist elsewhere.
command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"

if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd (log: /tmp/dockerd.log)"
    # setsid: the daemon outlives this script and the shell that ran it.
    as_root setsid dockerd >/tmp/dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 "$WAIT_SECONDS"); do
    if docker info >/dev/null 2>&1; then
        log "docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    sleep 1
done
tail -n 40 /tmp/dockerd.log >&2 || true
die "docker engine did not answer within ${WAIT_SECONDS}s (see /tmp/dockerd.log)"
