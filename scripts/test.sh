#!/usr/bin/env bash
# The test command: set up ./.venv on a fresh machine, lint, then run every test.
# bindfs (FUSE) is optional: installed when apt can, otherwise those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh dev
if ! command -v bindfs >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (timeout 180 apt-get install -y -q bindfs >/dev/null 2>&1 || true)
fi
# PostgreSQL server binaries: the suite starts its own server from them (tests/support/postgres.py) to run the
# API, bundle, adoption, migration and generation suites on both databases.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing the PostgreSQL server (apt-get install postgresql) for the PostgreSQL tests" >&2
    (timeout 300 apt-get install -y -q postgresql >/dev/null 2>&1 \
      || { timeout 120 apt-get update -q >/dev/null 2>&1 && timeout 300 apt-get install -y -q postgresql >/dev/null 2>&1; } \
      || echo "test.sh: could not install postgresql; the PostgreSQL tests will fail" >&2)
  else
    echo "test.sh: no PostgreSQL server in /usr/lib/postgresql/*/bin and not root: the PostgreSQL tests will fail (install postgresql)" >&2
  fi
fi
export VOICEBOX_REQUIRE_POSTGRES="${VOICEBOX_REQUIRE_POSTGRES:-1}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
