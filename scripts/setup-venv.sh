#!/usr/bin/env bash
# Create or refresh ./.venv with everything the worker and its tests need.
# Order matters: torch first (the CPU wheel here, a CUDA wheel in the image), then the project with its pins,
# then qwen-tts with --no-deps (its metadata over-pins; its real needs are in pyproject.toml).
# Re-running is cheap: a stamp of pyproject.toml skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${1:-dev}
stamp=".venv/.voicebox-setup-$(sha256sum pyproject.toml scripts/setup-venv.sh | sha256sum | cut -c1-16)-${EXTRAS}"
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
.venv/bin/python -m pip install -q --no-deps "qwen-tts==0.1.1"
rm -f .venv/.voicebox-setup-*
touch "$stamp"
