#!/usr/bin/env bash
# Azure's safe-rollout sequence, done declaratively: each folder NN-*/ is the whole desired state
# at one step. This script makes live/ (a project beside the steps, so that the relative paths in
# the files stay valid) and, step by step, puts that step's files in live/, shows the plan and
# applies it. Usage: examples/safe-rollout/rollout.sh [--pause] [--destroy]
#   --pause    wait for Enter before each apply (read the plan first)
#   --destroy  tear everything down at the end
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
live="$here/live"
pause=0 destroy=0
for arg in "$@"; do
    case "$arg" in
        --pause) pause=1 ;;
        --destroy) destroy=1 ;;
        *) echo "usage: $0 [--pause] [--destroy]" >&2; exit 2 ;;
    esac
done
mkdir -p "$live"
printf '*\n' >"$live/.gitignore"   # live/ and its .recon/ state are never committed
request="$here/../quickstart/sample-request.json"

for step in "$here"/[0-9][0-9]-*/; do
    name="$(basename "$step")"
    echo "=== $name"
    rm -f "$live"/*.yml "$live"/recon.yaml
    cp "$step"/*.yml "$step"/recon.yaml "$live"/
    recon -C "$live" plan
    if [ "$pause" = 1 ]; then read -r -p "apply $name? [Enter] " _; fi
    recon -C "$live" apply --auto-approve
    recon -C "$live" invoke my-endpoint --request-file "$request"
    if [ "$name" = 03-add-green ]; then
        echo "--- green has no traffic yet; call it by name (azureml-model-deployment header):"
        recon -C "$live" invoke my-endpoint --deployment green --request-file "$request"
    fi
done
if [ "$destroy" = 1 ]; then recon -C "$live" destroy --auto-approve; fi
