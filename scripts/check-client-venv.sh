#!/usr/bin/env bash
# The torch-free client, checked as a user gets it: a fresh venv with `pip install '.[client]'` (versions from
# requirements.lock), which must hold no torch, transformers or numpy; then `voicebox-worker remote --help`,
# `voicebox-worker bridge --help` and the bridge/client tests run in that venv (pytest added, nothing else).
#   scripts/check-client-venv.sh [VENV]      default: a temporary folder, removed afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=${1:-}
if [ -z "$venv" ]; then
  venv=$(mktemp -d)/client-venv
  trap 'rm -rf "$(dirname "$venv")"' EXIT
fi
"$PYTHON" -m venv "$venv"
PYTHON="$venv/bin/python" scripts/install-deps.sh client .
"$venv/bin/python" -m pip install -q -c requirements.lock pytest pytest-timeout
"$venv/bin/python" scripts/lockcheck.py --extras client >/dev/null 2>&1 || true
for heavy in torch transformers numpy; do
  if "$venv/bin/python" -c "import $heavy" 2>/dev/null; then
    echo "check-client-venv: $heavy is importable in the client venv" >&2
    exit 1
  fi
done
"$venv/bin/voicebox-worker" remote --help >/dev/null
"$venv/bin/voicebox-worker" bridge --help >/dev/null
# the tests' conftest needs only backend.config (stdlib); the tests named here use no server code
(cd "$venv/.." && "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$OLDPWD" \
  -c "$OLDPWD/pyproject.toml" "$OLDPWD/tests/test_bridge.py" "$OLDPWD/tests/test_client.py" \
  "$OLDPWD/tests/test_client_cli.py")
echo "check-client-venv: OK ($("$venv/bin/python" -m pip list 2>/dev/null | tail -n +3 | wc -l) packages, no torch/transformers/numpy)" >&2
