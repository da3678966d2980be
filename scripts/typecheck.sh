#!/usr/bin/env bash
# mypy over backend/, volume_bootstrap/ and migrations/ ([tool.mypy] in pyproject.toml): every file, 0 errors.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mypy backend volume_bootstrap migrations
