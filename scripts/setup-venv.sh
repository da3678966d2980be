#!/usr/bin/env bash
# Create or refresh ./.venv from requirements.lock (the versions CI and the image use).
#   scripts/setup-venv.sh [dev|server|client]     default dev: the worker and the test tools
# The install itself is scripts/install-deps.sh (shared with the Dockerfile): torch (the CPU build here; set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu where no local CPU wheel exists), the project editable,
# every package pinned by the lock, then a check that nothing differs from the lock.
# Re-running is cheap: a stamp of the lock and the install scripts skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${1:-dev}
stamp=".venv/.voicebox-setup-$(cat pyproject.toml requirements.lock scripts/setup-venv.sh scripts/install-deps.sh scripts/lockcheck.py | sha256sum | cut -c1-16)-${EXTRAS}"
# The demo models prebuilt once into the venv (dev and server): scripts/run-local.sh's fresh volume copies them
# (VOICEBOX_DEMO_PREBUILT) instead of building them at its first start (~7 s of CPU).
DEMO_PREBUILT=.venv/voicebox-demo-models
build_demo_models() {
  case "$EXTRAS" in dev|server) ;; *) return 0 ;; esac
  [ -f "$DEMO_PREBUILT/hub/models--voicebox-demo--tiny-whisper/refs/main" ] && return 0
  echo "setup-venv: building the tiny demo models into $DEMO_PREBUILT (offline, once)" >&2
  rm -rf "$DEMO_PREBUILT.partial"
  .venv/bin/python -c "import sys; from pathlib import Path; from backend.engines.tiny import install_tiny_models; install_tiny_models(Path(sys.argv[1]))" "$DEMO_PREBUILT.partial"
  rm -rf "$DEMO_PREBUILT" && mv "$DEMO_PREBUILT.partial" "$DEMO_PREBUILT"
}
if [ -f "$stamp" ]; then build_demo_models; exit 0; fi
fresh=0
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fresh=1; fi
echo "setup-venv: installing requirements.lock ($EXTRAS) into .venv (a few minutes the first time)" >&2
if ! PYTHON=.venv/bin/python scripts/install-deps.sh "$EXTRAS" "-e ."; then
  [ "$fresh" = 1 ] && exit 1
  echo "setup-venv: .venv differs from requirements.lock; recreating it" >&2
  rm -rf .venv
  "$PYTHON" -m venv .venv
  PYTHON=.venv/bin/python scripts/install-deps.sh "$EXTRAS" "-e ."
fi
rm -f .venv/.voicebox-setup-*
touch "$stamp"
build_demo_models
