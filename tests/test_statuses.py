"""Generation statuses: one enum, final and active sets that partition it, importable without the server."""

from __future__ import annotations

import subprocess
import sys

from backend import statuses
from backend.statuses import ACTIVE, FINAL, RETRYABLE, GenerationStatus, is_active, is_final


def test_final_and_active_partition_the_statuses() -> None:
    assert set(GenerationStatus) == FINAL | ACTIVE and not FINAL & ACTIVE
    assert RETRYABLE <= FINAL and GenerationStatus.COMPLETED not in RETRYABLE
    assert is_final("cancelled") and is_final("failed") and is_final("completed")
    assert not is_final("generating") and not is_final("not_found") and not is_final(None)
    assert is_active("queued") and is_active("loading_model") and not is_active("completed")


def test_statuses_are_plain_strings_on_the_wire() -> None:
    import json

    assert json.dumps({"status": GenerationStatus.CANCELLED}) == '{"status": "cancelled"}'
    assert GenerationStatus("failed") is GenerationStatus.FAILED


def test_module_needs_only_the_standard_library() -> None:
    code = (
        "import sys; import backend.statuses; "
        "bad = [m for m in ('numpy', 'torch', 'sqlalchemy', 'fastapi', 'pydantic') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert statuses.__doc__


def test_every_holder_uses_the_one_set() -> None:
    from backend.client import client
    from backend.services import generation
    from volume_bootstrap import fsck

    assert generation.FINAL is FINAL and generation.ACTIVE is ACTIVE
    assert set(fsck.ACTIVE_STATUSES) == ACTIVE
    assert ACTIVE <= client.PENDING_GENERATION and not FINAL & client.PENDING_GENERATION


def test_no_bare_status_literals_in_the_code_that_writes_or_filters_them() -> None:
    """Statuses are written and compared through ``GenerationStatus`` and its sets, never as string literals
    (a literal typo would silently match nothing)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    holders = [
        "backend/db/models.py",
        *sorted(
            f"backend/services/bundles/{p.name}"
            for p in (root / "backend/services/bundles").glob("*.py")
        ),
        "backend/services/generation.py",
        "backend/services/history.py",
        "backend/services/generation_output.py",
        "backend/services/generation_rows.py",
        "backend/services/profiles.py",
        *sorted(
            f"volume_bootstrap/adopt/{p.name}"
            for p in (root / "volume_bootstrap/adopt").glob("*.py")
        ),
        "volume_bootstrap/fsck.py",
    ]
    values = {status.value for status in GenerationStatus}
    found = []
    for rel in holders:
        tree = ast.parse((root / rel).read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        found += [
            f"{rel}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and node.value in values
            and id(node) not in docstrings
        ]
    assert found == []
