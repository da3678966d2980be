#!/usr/bin/env bash
# Rehearse the Docker image without Docker: the Dockerfile's steps in a debootstrap'ed Debian root of the base
# image's release (CPU torch), then the serverless CMD with --test_input (demo models, throwaway volume, no
# network) and the pod's `serve`. Needs root, debootstrap, unshare, ip. See scripts/rehearse_image.py.
#   sudo scripts/rehearse-image.sh [--keep] [--report FILE] [--mirror URL]
# Cache (debootstrap tarball, apt .debs, pip): $VOICEBOX_REHEARSAL_CACHE or ~/.cache/voicebox-worker/rehearsal.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/rehearse_image.py "$@"
