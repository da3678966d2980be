"""The type check covers every product file: no module skipped or silenced, every ignore names its code.

``scripts/typecheck.sh`` (run by ``scripts/test.sh``) runs mypy itself; these checks keep its scope from
shrinking quietly.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("backend", "volume_bootstrap", "migrations")


def test_mypy_checks_every_product_file() -> None:
    script = (ROOT / "scripts" / "typecheck.sh").read_text()
    command = [line for line in script.splitlines() if "mypy" in line and not line.startswith("#")]
    assert command == ["exec .venv/bin/mypy backend volume_bootstrap migrations"]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    for override in config.get("overrides", []):
        # only third-party packages without types may be relaxed, and only in what is imported from them
        assert set(override) == {"module", "ignore_missing_imports"}, override
        assert not any(m.split(".")[0] in PRODUCT for m in override["module"]), override
    assert "exclude" not in config and config.get("warn_unused_ignores") is True


def test_every_type_ignore_names_its_error_code() -> None:
    bare = re.compile(r"#\s*type:\s*ignore(?!\[[a-z-]+(,\s*[a-z-]+)*\])")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for top in PRODUCT
        for path in sorted((ROOT / top).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert found == []
