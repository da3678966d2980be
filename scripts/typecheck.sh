#!/usr/bin/env bash
# mypy over backend/, volume_bootstrap/ and migrations/ ([tool.mypy] in pyproject.toml), except the modules
# listed in PENDING: they still have type errors (issue 13 part 2 clears them and empties the list); imports
# into them are followed silently. `scripts/typecheck.sh --all` checks every file and shows what is left.
set -euo pipefail
cd "$(dirname "$0")/.."
PENDING=(
  backend/services/bundles.py
  volume_bootstrap/adopt.py
  volume_bootstrap/adopt_extras.py
  volume_bootstrap/fsck.py
  volume_bootstrap/migrate.py
  migrations/env.py
)
if [ "${1:-}" = --all ]; then exec .venv/bin/mypy backend volume_bootstrap migrations; fi
mapfile -t files < <(git ls-files -co --exclude-standard 'backend/*.py' 'volume_bootstrap/*.py' 'migrations/*.py' \
  | sort -u | grep -v -x -F -f <(printf '%s\n' "${PENDING[@]}"))
exec .venv/bin/mypy "${files[@]}"
