#!/usr/bin/env bash
# Tools the benchmarks under bench/ use and the test suite does not: nginx (a reference proxy for
# the router bench), wrk (load) and hyperfine (timing whole commands). CI skips this.
# Idempotent; safe to run by hand.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
apt_install nginx wrk hyperfine
# Installed without starting Debian's own nginx service (lib.sh); benches start their own servers.
log "bench tools: $(nginx -v 2>&1), $(wrk --version 2>&1 | head -n 1)"
