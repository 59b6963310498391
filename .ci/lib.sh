# shellcheck shell=bash
# Shared helpers for the .ci scripts (sourced, not run).
# Every helper is idempotent: running a setup script twice does nothing the second time.

log() { printf '[ci %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() { log "ERROR: $*"; exit 1; }

# Seconds since the epoch with decimals, for timing the steps.
now() { date +%s.%N; }

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root for: $*"
    fi
}

APT_UPDATED_STAMP=/tmp/.recon-ci-apt-updated

# apt_install PKG...: install the Debian packages that are not installed yet; apt-get update
# runs at most once per boot (stamp in /tmp).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    if [ ! -e "$APT_UPDATED_STAMP" ]; then
        log "apt-get update"
        as_root apt-get update -qq </dev/null
        touch "$APT_UPDATED_STAMP"
    fi
    log "apt-get install ${missing[*]}"
    # Packages must not start their services (postgresql, nginx, docker): the scripts and the
    # tests start what they need themselves. policy-rc.d answering 101 tells invoke-rc.d so.
    local policy=/usr/sbin/policy-rc.d created=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        created=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null >/tmp/recon-ci-apt.log 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then  # package lists older than the stamp says: refresh once and retry
        log "apt-get install failed; apt-get update and one retry"
        rc=0
        as_root apt-get update -qq </dev/null && touch "$APT_UPDATED_STAMP"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" </dev/null >/tmp/recon-ci-apt.log 2>&1 || rc=$?
    fi
    [ "$created" = 1 ] && as_root rm -f "$policy"
    [ "$rc" = 0 ] || { tail -n 30 /tmp/recon-ci-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
}
