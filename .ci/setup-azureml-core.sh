#!/usr/bin/env bash
# Make azureml-core (Azure ML SDK v1, PyPI) available for the import-v1 oracle test
# (tests/migrate/test_oracle.py): a virtualenv of its own in RECON_AZUREML_CORE_DIR (default
# /var/cache/recon-azureml-core), pinned, once per machine. Its own interpreter, because
# azureml-core 1.61.0 would downgrade packages of the test interpreter (cryptography 48 -> 46,
# packaging 26 -> 25, pathspec 1.1 -> 0.12, the last one below what mypy wants); the test runs
# it in a subprocess. Idempotent; safe to run by hand. `setup-azureml-core.sh path` prints the
# interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

AZUREML_CORE_VERSION="${AZUREML_CORE_VERSION:-1.61.0}"
dir="${RECON_AZUREML_CORE_DIR:-/var/cache/recon-azureml-core}"
venv="$dir/venv-$AZUREML_CORE_VERSION"
py="$venv/bin/python"

if [ "${1:-}" = path ]; then echo "$py"; exit 0; fi

installed() { "$py" -c 'import importlib.metadata as m; print(m.version("azureml-core"))' 2>/dev/null || true; }
if [ "$(installed)" != "$AZUREML_CORE_VERSION" ]; then
    PYTHON="${PYTHON:-python3}"
    log "pip install azureml-core==$AZUREML_CORE_VERSION into $venv ($("$PYTHON" --version 2>&1))"
    mkdir -p "$dir"
    # built beside, then renamed: a run stopped half-way leaves no venv that looks complete
    tmp="$(mktemp -d "$dir/.venv.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -m venv "$tmp"
    "$tmp/bin/python" -m pip install -q --disable-pip-version-check "azureml-core==$AZUREML_CORE_VERSION" </dev/null
    rm -rf "$venv"
    mv "$tmp" "$venv"
    trap - EXIT
fi
# a venv's scripts name the folder they were made in; the interpreter itself does not care
[ "$(installed)" = "$AZUREML_CORE_VERSION" ] || die "azureml-core $AZUREML_CORE_VERSION not importable from $py"
log "azureml-core $(installed): $py"
