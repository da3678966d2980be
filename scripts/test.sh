#!/usr/bin/env bash
# The test command: set up ./.venv on a fresh machine, lint, then run every test.
# bindfs (FUSE) is optional: installed when apt can, otherwise those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh dev
if ! command -v bindfs >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (timeout 180 apt-get install -y -q bindfs >/dev/null 2>&1 || true)
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
