#!/usr/bin/env bash
# Install the locked stack (requirements.lock) into the Python environment of $PYTHON. The one install
# procedure: scripts/setup-venv.sh (local venvs, CI), the Dockerfile and the image rehearsal all run it.
#   scripts/install-deps.sh EXTRAS [PROJECT]
#     EXTRAS   client | server | dev          (the extras of pyproject.toml)
#     PROJECT  what to install, default "." (scripts/setup-venv.sh passes "-e ." for an editable install)
#   env: PYTHON (default python3), TORCH_CUDA (cpu | the CUDA release of the torch build, e.g. 13.0; checked),
#        TORCH_INDEX (an extra index for torch, e.g. https://download.pytorch.org/whl/cpu for a CPU build).
# Order matters: pip from the lock, torch, the project with every other package pinned by the lock (pip
# constraints), then the packages installed --no-deps; last, scripts/lockcheck.py fails when anything
# installed differs from the lock (a pip resolution change, a package the lock does not know).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:?usage: scripts/install-deps.sh client|server|dev [PROJECT]}
PROJECT=${2:-.}
PY=${PYTHON:-python3}
LOCK=requirements.lock
TORCH_CUDA=${TORCH_CUDA:-cpu}
pin() { grep -i -m1 "^$1==" "$LOCK" || { echo "install-deps: $1 is not in $LOCK (run scripts/lock.sh)" >&2; exit 1; }; }
pip_() { "$PY" -m pip install -q --no-input -c "$LOCK" "$@"; }

"$PY" -m pip install -q --no-input "$(pin pip)" "$(pin setuptools)"  # venv seeds: the lock's too
if [ "$EXTRAS" != client ]; then
  if [ -n "${TORCH_INDEX:-}" ]; then pip_ --extra-index-url "$TORCH_INDEX" torch; else pip_ torch; fi
fi
# shellcheck disable=SC2086  # PROJECT may be "-e ."
pip_ $PROJECT"[$EXTRAS]"
if [ "$EXTRAS" != client ]; then
  for spec in $("$PY" scripts/lockcheck.py --no-deps-names); do pip_ --no-deps "$spec"; done
fi
"$PY" scripts/lockcheck.py --extras "$EXTRAS" --torch-cuda "$TORCH_CUDA"
