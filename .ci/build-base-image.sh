#!/usr/bin/env bash
# Build the small local base image local/py-base:bookworm without pulling anything: mmdebstrap
# makes a Debian bookworm root file system with python3, python3-venv, python3-pip and
# ca-certificates from Debian's packages and streams it as a tar into `docker import`.
# The host's CA bundle is copied in, so that pip inside a container reaches the package index.
# Idempotent: does nothing when the image exists (FORCE=1 rebuilds). Needs a running engine
# (.ci/setup-docker.sh). About 40 s here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

IMAGE="${BASE_IMAGE:-local/py-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already exists (FORCE=1 rebuilds)"
    exit 0
fi
docker info >/dev/null 2>&1 || die "no docker engine answers; run .ci/setup-docker.sh first"
[ -s "$CA_BUNDLE" ] || die "$CA_BUNDLE is missing; install ca-certificates on the host"
command -v mmdebstrap >/dev/null || apt_install mmdebstrap

start="$(now)"
log "building $IMAGE with mmdebstrap (bookworm, $MIRROR) | docker import"
# Check-Valid-Until off: the machine's mirror may serve a dated snapshot of the archive.
# The customize hooks run on the host after the packages are installed: the host's bundle
# replaces the image's one (it may hold extra roots this network needs), and caches go away.
mmdebstrap \
    --quiet \
    --variant=apt \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="copy-in $CA_BUNDLE /etc/ssl/certs" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm - "$MIRROR" \
| docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV SSL_CERT_FILE=$CA_BUNDLE" \
    --change "ENV REQUESTS_CA_BUNDLE=$CA_BUNDLE" \
    --change "ENV PIP_CERT=$CA_BUNDLE" \
    --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'LABEL org.opencontainers.image.title="recon local python base (Debian bookworm)"' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
log "built $IMAGE in $(elapsed "$start") s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"

# Verify: Python with ssl and venv works, and the CA bundle is the host's.
docker run --rm "$IMAGE" python3 -c "import ssl, venv; print('ok')" | grep -qx ok \
    || die "$IMAGE: python3 -c 'import ssl, venv' failed"
docker run --rm "$IMAGE" sha256sum "$CA_BUNDLE" | awk '{print $1}' | grep -qx "$(sha256sum "$CA_BUNDLE" | awk '{print $1}')" \
    || die "$IMAGE: CA bundle differs from the host's"
# pip inside a container reaches the package index through the host's CA bundle.
if [ "${SKIP_PIP_CHECK:-0}" != 1 ]; then
    docker run --rm "$IMAGE" sh -c \
        'python3 -m venv /tmp/v && /tmp/v/bin/pip install -q --no-cache-dir six && /tmp/v/bin/python -c "import six"' \
        || die "$IMAGE: pip install inside a container failed (CA bundle or network; SKIP_PIP_CHECK=1 skips)"
fi
log "$IMAGE verified (python3 ssl+venv, host CA bundle, pip reaches the index)"
