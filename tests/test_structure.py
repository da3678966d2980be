"""Modules stay small and functions simple: the limits in docs/architecture.md ("Size and complexity") hold.

The line limit is checked here; the complexity limit is ruff's C901 (``[tool.ruff.lint.mccabe]`` in
pyproject.toml), which ``scripts/test.sh`` runs; the tests below prove that rule is on and bites.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("backend", "volume_bootstrap", "migrations", "scripts")
MAX_LINES = 500
MAX_COMPLEXITY = 15
RUFF = Path(sys.executable).with_name("ruff")


def _product_modules() -> list[Path]:
    return sorted(
        path
        for top in PRODUCT
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_no_product_module_is_over_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in _product_modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these modules (limit {MAX_LINES} lines): {too_long}"


def test_the_complexity_rule_is_configured() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"]
    assert lint["mccabe"]["max-complexity"] == MAX_COMPLEXITY


def test_no_complexity_waiver_in_product_code() -> None:
    waived = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _product_modules()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "noqa" in line and "C901" in line
    ]
    assert waived == []


#: places outside this repository that code and docs must not send a reader to (split so this file does not match)
OUTSIDE = ("../" + "shared", "reference/" + "notes", "DESIGN" + ".md")


def test_code_and_docs_speak_of_this_repository_only() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".sh", ".toml", ".yml", ".yaml", ".json", ""}:
            continue
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert offenders == []


def _branchy(branches: int) -> str:
    body = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(branches))
    return f"def branchy(x: int) -> int:\n{body}    return -1\n"


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed (dev extra)")
@pytest.mark.parametrize(
    ("branches", "flagged"), [(MAX_COMPLEXITY - 1, False), (MAX_COMPLEXITY, True)]
)
def test_ruff_flags_a_function_over_the_limit(tmp_path: Path, branches: int, flagged: bool) -> None:
    module = tmp_path / "branchy.py"
    module.write_text(_branchy(branches))
    result = subprocess.run(
        [
            str(RUFF),
            "check",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--select",
            "C901",
            str(module),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ("C901" in result.stdout) is flagged, result.stdout + result.stderr
