#!/usr/bin/env bash
# The test command (CI: .ci/run). With no arguments: set up ./.venv from requirements.lock, lint, every test,
# the torch-free client check and the image rehearsal. With arguments: lint (ruff, the import layers) and
# `pytest ARGS` only; the type check (mypy) runs only without arguments.
# System packages a step needs are installed with apt-get when this runs as root, each announced with why;
# a step whose tool is missing and cannot be installed says so and is skipped (never silently).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test.sh: $*" >&2; }
apt_updated=0
# need COMMAND PACKAGE WHY: make COMMAND available (apt-get as root) or explain why the step is skipped
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the Debian package $2 with apt-get: $3"
    if [ "$apt_updated" = 0 ]; then timeout 300 apt-get update -q >/dev/null && apt_updated=1 || true; fi
    if timeout 300 apt-get install -y -q --no-install-recommends "$2" >/dev/null; then return 0; fi
    say "could not install $2"
  fi
  say "skipping what needs $1 ($3): install the Debian package $2"
  return 1
}

scripts/setup-venv.sh dev
need bindfs bindfs "the FUSE volume tests (tests/test_volume_*.py skip them otherwise)" || true
need strace strace "tests/test_no_network.py traces a worker start for network attempts" || true
# The suite starts its own PostgreSQL server from these binaries (tests/support/postgres.py) to run the API,
# bundle, adoption, migration and generation suites on both databases; CI (.ci/run) makes their absence a failure.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need initdb postgresql "the PostgreSQL tests (tests/test_postgres.py, the both_backends suites)" || true
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "layers contract: lint-imports ([tool.importlinter] in pyproject.toml)"
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
if [ $# -gt 0 ]; then exec .venv/bin/python -m pytest -q "$@"; fi
say "type check: mypy over backend/, volume_bootstrap/, migrations/ (scripts/typecheck.sh)"
scripts/typecheck.sh
.venv/bin/python -m pytest -q
say "torch-free client: a fresh venv with voicebox-worker[client] (scripts/check-client-venv.sh)"
scripts/check-client-venv.sh
if [ "$(id -u)" = 0 ] && need debootstrap debootstrap "the image rehearsal (scripts/rehearse-image.sh)"; then
  say "image rehearsal: the Dockerfile's steps in a debootstrap'ed Debian root (scripts/rehearse-image.sh)"
  scripts/rehearse-image.sh
else
  say "SKIPPED the image rehearsal: it needs root and debootstrap (CI runs it)"
fi
