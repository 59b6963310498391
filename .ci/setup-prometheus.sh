#!/usr/bin/env bash
# Make Debian's Prometheus server available (package `prometheus`, 2.42 on bookworm) for the test that
# scrapes the router's GET /-/metrics with a real Prometheus (tests/runtime/test_prometheus_scrape.py).
# The package's own service is not started (lib.sh's apt_install keeps Debian from starting services);
# the test starts its own server on 127.0.0.1 with a data folder in tmp. Idempotent; safe to run by hand.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

start="$(now)"
if ! command -v prometheus >/dev/null; then
    apt_install prometheus
fi
command -v prometheus >/dev/null || die "prometheus not found after installing Debian's prometheus package"
# The package's unit may have been started on a machine where policy-rc.d was absent: nothing of
# recon needs it, and it would hold port 9090.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    as_root systemctl stop prometheus || true
fi
log "Prometheus: $(prometheus --version 2>&1 | head -n 1) ($(elapsed "$start") s)"
