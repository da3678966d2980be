"""The layers contract (``[tool.importlinter]`` in pyproject.toml) holds, and a back-reaching import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT.exists(), reason="import-linter is not installed (dev extra)"
)


def _tree(tmp_path: Path) -> Path:
    for name in ("backend", "volume_bootstrap", "migrations"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    )


def test_the_code_keeps_the_contracts(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("backend/storage/blobs.py", "import backend.services.profiles", "Layers"),
        ("backend/services/profiles.py", "import backend.api.profiles", "Layers"),
        ("backend/db/models.py", "import volume_bootstrap.fsck", "Layers"),
        ("backend/services/health.py", "import backend.client.client", "leaf"),
        ("backend/storage/paths.py", "import backend.storage.blobs", "cycles"),
    ],
)
def test_a_back_reaching_import_breaks_the_build(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout


def test_the_contracts_carry_no_exception_but_the_client_commands() -> None:
    """The one import the layers allow by name is the CLI registering the client's commands; anything else
    would be a back-reaching import or a cycle waived instead of fixed."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    waived = [
        rule for contract in config["contracts"] for rule in contract.get("ignore_imports", [])
    ]
    assert waived == ["backend.cli.main -> backend.client.cli"]
