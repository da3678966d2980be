"""The benchmark command runs in CI in its short mode and prints one table (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_bench_short_prints_one_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    names = " ".join(table)
    for needle in (
        "db write",
        "rotating backup",
        "bootstrap to ready",
        "handler_overhead",
        "effects 4-chain",
        "story export",
        "base64",
        "GET /history",
        "voice prompt",
        "tiny Qwen load",
        "one write @ 1 MB-equivalent library (sqlite)",
        "one write @ 1 MB-equivalent library (postgresql)",
        "write throughput, 4 writer process(es) (postgresql)",
        "history search (a word)",
        "history deep page by key",
        "two-copy cycle (before)",
        "stream first audio",
        "run-local.sh to first answer",
        "cold-start import",
    ):
        assert needle in names, f"{needle!r} missing from the bench table"
    assert any(line.startswith("machine: ") for line in result.stdout.splitlines())
