#!/usr/bin/env bash
# Make PostgreSQL 15's server binaries available (Debian's postgresql-15) and check that a
# throwaway server starts the way the test fixture starts one: initdb and postgres run as the
# `postgres` user (they refuse root), socket in a temporary folder, listening on 127.0.0.1 only.
# No cluster is left running. Idempotent; safe to run by hand. SKIP_PG_SMOKE=1 skips the check.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/postgres" ]; then
    apt_install postgresql-15   # lib.sh keeps Debian from starting a cluster of its own
fi
[ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb not found after installing postgresql-15"
log "PostgreSQL server binaries: $PG_BIN ($("$PG_BIN/postgres" --version))"

[ "${SKIP_PG_SMOKE:-0}" = 1 ] && exit 0

# Smoke test: a throwaway server on a free port, then stopped and removed.
start="$(now)"
tmp="$(mktemp -d /tmp/recon-pg.XXXXXX)"
chown postgres: "$tmp" 2>/dev/null || as_root chown postgres: "$tmp"
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    run_pg "$PG_BIN/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
run_pg "$PG_BIN/initdb" -D "$tmp/data" -A trust -U postgres --no-sync >"$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
run_pg "$PG_BIN/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 30 \
    -o "-k $tmp -p $port -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { cat "$tmp/server.log" >&2; die "postgres did not start"; }
"$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc 'select 1' | grep -qx 1 \
    || die "psql could not query the throwaway server"
log "throwaway PostgreSQL server started, answered and stopped in $(elapsed "$start") s"
