#!/usr/bin/env bash
# Make Azurite (Microsoft's Azure Storage emulator, the npm package `azurite`) available for the
# Azure provider's tests (tests/azure): installed with npm into RECON_AZURITE_DIR (default
# /var/cache/recon-azurite), pinned (3.34.0: the last release that runs on the node 20 Debian ships), once per machine. The tests start their own Azurite blob
# service on a free loopback port (tests/azure/azurite.py); nothing is left running here.
# Idempotent; safe to run by hand. `setup-azurite.sh path` prints the azurite-blob executable.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

AZURITE_VERSION="${AZURITE_VERSION:-3.34.0}"
dir="${RECON_AZURITE_DIR:-/var/cache/recon-azurite}"
bin="$dir/node_modules/.bin/azurite-blob"

if [ "${1:-}" = path ]; then echo "$bin"; exit 0; fi

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    apt_install nodejs npm
fi
installed="$(node -e "try{console.log(require('$dir/node_modules/azurite/package.json').version)}catch(e){}" 2>/dev/null || true)"
if [ "$installed" != "$AZURITE_VERSION" ] || [ ! -x "$bin" ]; then
    log "npm install azurite@$AZURITE_VERSION into $dir"
    mkdir -p "$dir"
    [ -e "$dir/package.json" ] || printf '{"name":"recon-azurite","private":true}\n' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" </dev/null
fi
[ -x "$bin" ] || die "$bin not found after npm install"
log "Azurite $(node -e "console.log(require('$dir/node_modules/azurite/package.json').version)"): $bin (node $(node --version))"
