#!/usr/bin/env bash
# The whole test suite, as the README's second command and CI run it:
#   1. install recon with its test extras (editable), once per pyproject.toml change; ruff and mypy (blocking);
#   2. make the services the tests use available (each step idempotent, each a script of its own):
#      a Docker engine (setup-docker.sh), the local/py-base:bookworm image (build-base-image.sh),
#      PostgreSQL 15's server binaries (setup-postgres.sh), Debian's Prometheus server (setup-prometheus.sh),
#      Azurite from npm (setup-azurite.sh), azureml-core (the SDK v1) in a virtualenv of its own for
#      import-v1's oracle test (setup-azureml-core.sh);
#   3. run pytest over tests/ (arguments go to pytest; a path among them replaces tests/).
#      "No tests ran" (exit 5) is a failure.
# Environment: SKIP_INSTALL=1, SKIP_DOCKER=1, SKIP_POSTGRES=1, SKIP_PROMETHEUS=1, SKIP_AZURITE=1,
# SKIP_AZUREML_CORE=1, SKIP_KUBERNETES=1, SKIP_PLAN_READERS=1 skip steps (outside CI only: with CI=true every
# step runs); PYTHON picks the interpreter (default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
cd "$root"

PYTHON="${PYTHON:-python3}"
in_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
skip() { ! in_ci && [ "${!1:-0}" = 1 ]; }
timings=()
step() {  # step NAME COMMAND...: run and time one step
    local name="$1" t0
    shift
    t0="$(now)"
    "$@"
    timings+=("$(printf '%-22s %6ss' "$name" "$(elapsed "$t0")")")
}

install_package() {
    # Re-install only when pyproject.toml changed since the last install into this interpreter.
    local stamp
    stamp="/tmp/.recon-ci-pip-$( { "$PYTHON" -c 'import sys; print(sys.prefix)'; echo "$root"; cat pyproject.toml; } | sha256sum | cut -c1-16)"
    if ! in_ci && [ -e "$stamp" ] && "$PYTHON" -c 'import reconciler, pytest' 2>/dev/null; then
        log "recon already installed with test extras ($PYTHON)"
        return 0
    fi
    log "pip install -e '.[test]' ($("$PYTHON" --version 2>&1), $(command -v "$PYTHON"))"
    "$PYTHON" -m pip install -q -e '.[test]' </dev/null
    touch "$stamp"
}

# The Kubernetes test cluster's binaries, built once per machine into RECON_K8S_CACHE (cold: about 22
# minutes on 2 cores) in the background while the other steps and tests run; tests/kubernetes waits
# for `setup-kubernetes.sh status` and brings the cluster up itself.
if skip SKIP_KUBERNETES; then log "SKIP_KUBERNETES=1: no Kubernetes build (its tests will fail)"; else
    k8s_cache="${RECON_K8S_CACHE:-/var/cache/recon-k8s}"
    mkdir -p "$k8s_cache"
    log "Kubernetes binaries: $(bash "$here/setup-kubernetes.sh" status) (build log: $k8s_cache/build.log)"
    nice -n 19 setsid bash "$here/setup-kubernetes.sh" build >>"$k8s_cache/build.log" 2>&1 </dev/null &
fi
# The plan readers of tests/readers (a Go program over hashicorp/terraform-json, and OPA), built once per
# machine from the Go module proxy into RECON_READERS_CACHE, in the background like the Kubernetes
# binaries; tests/readers waits for `setup-plan-readers.sh status`.
if skip SKIP_PLAN_READERS; then log "SKIP_PLAN_READERS=1: no plan readers build (tests/readers will fail)"; else
    readers_cache="${RECON_READERS_CACHE:-/var/cache/recon-plan-readers}"
    mkdir -p "$readers_cache"
    log "plan readers: $(bash "$here/setup-plan-readers.sh" status) (build log: $readers_cache/build.log)"
    nice -n 19 setsid bash "$here/setup-plan-readers.sh" build >>"$readers_cache/build.log" 2>&1 </dev/null &
fi
if skip SKIP_INSTALL; then log "SKIP_INSTALL=1: not installing"; else step install install_package; fi
lint() {  # ruff and mypy (strict, pyproject.toml) over the package; pinned versions, so blocking
    "$PYTHON" -m ruff check --quiet .
    log "ruff: clean"
    "$PYTHON" -m mypy reconciler providers states
    log "mypy: clean"
}
step lint lint
if skip SKIP_DOCKER; then
    log "SKIP_DOCKER=1: no Docker setup (Docker tests will skip)"
else
    step docker-engine bash "$here/setup-docker.sh"
    step base-image bash "$here/build-base-image.sh"
fi
if skip SKIP_POSTGRES; then log "SKIP_POSTGRES=1: no PostgreSQL setup"; else step postgres bash "$here/setup-postgres.sh"; fi
# Debian's Prometheus server for tests/runtime/test_prometheus_scrape.py (which runs this script too when it is missing)
if skip SKIP_PROMETHEUS; then log "SKIP_PROMETHEUS=1: no Prometheus setup"; else step prometheus bash "$here/setup-prometheus.sh"; fi
# Azurite (npm) for the Azure provider's tests; tests/azure starts it (and installs it if this was skipped)
if skip SKIP_AZURITE; then log "SKIP_AZURITE=1: no Azurite setup"; else step azurite bash "$here/setup-azurite.sh"; fi
# azureml-core for tests/migrate/test_oracle.py (which runs this script too, so a skipped step only moves the wait)
if skip SKIP_AZUREML_CORE; then log "SKIP_AZUREML_CORE=1: no azureml-core setup"; else
    step azureml-core env PYTHON="$PYTHON" bash "$here/setup-azureml-core.sh"
fi

# Arguments go to pytest; without a path among them, the whole of tests/ runs.
pytest_args=("$@")
has_path=0
for a in "$@"; do case "$a" in -*) ;; *) [ -e "${a%%::*}" ] && has_path=1 ;; esac; done
[ "$has_path" = 1 ] || pytest_args+=(tests/)

rc=0
t0="$(now)"
out="$(mktemp /tmp/recon-pytest.XXXXXX)"
# A hard cap well inside CI's limit: SIGINT lets pytest print its summary of what ran. tests/kubernetes
# reads the deadline: a cold Kubernetes build that cannot finish in time fails its tests with a message.
export RECON_PYTEST_DEADLINE="$(( $(date +%s) + ${PYTEST_WALL_LIMIT:-3300} ))"
timeout --signal=INT --kill-after=60 "${PYTEST_WALL_LIMIT:-3300}" \
    "$PYTHON" -m pytest -q -ra --durations=30 "${pytest_args[@]}" </dev/null | tee "$out" || rc=$?
timings+=("$(printf '%-22s %6ss' pytest "$(elapsed "$t0")")")

log "step times:"
for line in "${timings[@]}"; do printf '    %s\n' "$line" >&2; done
case "$rc" in
    0) log "tests passed" ;;
    5) log "FAILED: pytest collected no tests (exit 5); a suite that runs nothing is not a pass"; rc=1 ;;
    124) log "FAILED: the test suite ran past ${PYTEST_WALL_LIMIT:-3300}s and was stopped"; rc=1 ;;
    *) log "FAILED: pytest exit code $rc" ;;
esac
# pytest's own closing line ("N passed, N failed in Ns") is the last line of the output.
summary="$(grep -v '^[[:space:]]*$' "$out" | tail -n 1 || true)"
rm -f "$out"
[ -n "$summary" ] && printf '%s\n' "$summary"
exit "$rc"
