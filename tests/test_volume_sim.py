"""The bounded volume simulation in CI: 3 worker processes, ≥ 30 SIGKILLs, zero lost acknowledged writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_sim(*args: str, timeout: float = 400) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "volume-sim"), "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-3000:]
    report = json.loads(lines[-1])
    report["returncode"] = result.returncode
    return report


def test_bounded_simulation_loses_nothing() -> None:
    # a loaded box goes on past 60 s (at most 180 s) until 51 operations were acknowledged
    report = run_sim(
        "--workers", "3", "--seconds", "60", "--kill-rate", "0.6", "--seed", "11",
        "--min-operations", "51",
    )  # fmt: skip
    details = report.get("details", {})
    print(json.dumps({k: v for k, v in report.items() if k != "details"}))
    assert report["kills"] >= 30
    assert report["operations_acknowledged"] > 50  # a loaded 2-core CI box still does >100
    assert report["lost"] == 0, details.get("lost")
    assert report["missing_files"] == 0 and report["partial_files"] == 0
    assert report["integrity"] == "ok"
    assert report["lease"] in ("released", "expired")
    assert report["server_errors"] == 0, report.get("failures")
    assert report["ok"] and report["returncode"] == 0


@pytest.mark.fuse
@pytest.mark.skipif(
    not (shutil.which("bindfs") and os.path.exists("/dev/fuse")), reason="bindfs/FUSE not available"
)
def test_simulation_over_two_bindfs_aliases() -> None:
    report = run_sim("--mode", "bindfs", "--workers", "2", "--seconds", "20", "--kill-rate", "0.4")
    if "skipped" in report:
        pytest.skip(report["skipped"])
    assert report["lost"] == 0, report.get("details", {}).get("lost")
    summary = {k: v for k, v in report.items() if k != "details"}
    assert report["integrity"] == "ok" and report["ok"], summary


def test_simulation_with_sqlite_locks_off() -> None:
    """SQLite's unix-none VFS (locks that cross no one): the lease and fence alone keep every write."""
    report = run_sim(
        "--mode", "unix-none", "--workers", "2", "--seconds", "20", "--kill-rate", "0.5"
    )
    assert report["kills"] >= 5
    assert report["lost"] == 0, report.get("details", {}).get("lost")
    summary = {k: v for k, v in report.items() if k != "details"}
    assert report["integrity"] == "ok" and report["ok"], summary


def _load_sim():  # type: ignore[no-untyped-def]
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(
        "volume_sim", str(ROOT / "scripts" / "volume-sim")
    )
    spec = importlib.util.spec_from_loader("volume_sim", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["volume_sim"] = module  # its dataclasses look their module up
    loader.exec_module(module)
    return module


def test_any_5xx_fails_the_simulation() -> None:
    sim = _load_sim()
    failures = {"generate:400": 3, "create_profile:503": 1, "add_sample:500": 2, "x:ReadTimeout": 4}
    assert sim.count_server_errors(failures) == {"create_profile:503": 1, "add_sample:500": 2}
    assert sim.count_server_errors({"generate:429": 2, "generate:400": 1}) == {}


def test_a_slow_run_goes_on_until_enough_operations(monkeypatch) -> None:
    """``--min-operations``: past ``--seconds`` the loop goes on while too few operations were acknowledged,
    and stops at ``--max-seconds`` whatever the count."""
    sim = _load_sim()
    clock = {"now": 100.0}
    monkeypatch.setattr(sim.time, "monotonic", lambda: clock["now"])
    deadline = sim.RunDeadline(60, 180, 51)
    clock["now"] = 159.0
    assert not deadline.reached(500)  # before --seconds: never
    assert deadline.kill_slowdown() == 1.0
    clock["now"] = 161.0
    assert not deadline.reached(50)  # past --seconds, too few: go on, killing less often
    assert deadline.kill_slowdown() == 3.0
    assert deadline.reached(51)
    clock["now"] = 280.0
    assert deadline.reached(0)  # --max-seconds: stop whatever the count
    assert sim.RunDeadline(60, 10, 0).max_seconds == 60  # never shorter than --seconds


def test_the_acknowledged_count_is_read_under_the_ledger_lock() -> None:
    """The chaos loop reads the count while client threads add new operation names: an unlocked sum over the
    growing dict could raise "dictionary changed size during iteration"."""
    import threading

    sim = _load_sim()
    ledger = sim.Ledger()
    ledger.count("create_profile", True)
    ledger.count("generate", True)
    ledger.count("generate", False, 503)
    assert ledger.acknowledged() == 2  # failures are not acknowledged
    answer: list[int] = []
    with ledger.lock:  # a client thread is counting
        reader = threading.Thread(target=lambda: answer.append(ledger.acknowledged()))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive() and answer == []  # it waits for the lock
    reader.join(5)
    assert answer == [2]


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python")
def test_runs_from_a_plain_shell() -> None:
    """Started by the system python with a bare environment, it re-executes itself with the project venv."""
    result = subprocess.run(
        ["/usr/bin/python3", str(ROOT / "scripts" / "volume-sim"), "--json", "--workers", "1"]
        + ["--seconds", "3", "--kill-rate", "0", "--lease-seconds", "1"],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["server_errors"] == 0


def test_simulation_on_postgresql_loses_nothing(pg_migrated_url: str) -> None:
    """``--database-url``: the same workers and kills with the rows on PostgreSQL, the audio on the volume."""
    report = run_sim(
        "--workers",
        "3",
        "--seconds",
        "25",
        "--kill-rate",
        "0.5",
        "--seed",
        "5",
        # one client per worker: six clients importing the same bundle at ~30 ops/s still drew a 503 now and
        # then (SERIALIZABLE conflicts on the unique profile name outlasting the retries; docs/reliability.md)
        "--clients",
        "3",
        "--database-url",
        pg_migrated_url,
    )
    details = report.get("details", {})
    print(json.dumps({k: v for k, v in report.items() if k != "details"}))
    assert report["database"] == "postgresql"
    assert report["kills"] >= 5
    assert report["operations_acknowledged"] > 50
    assert report["lost"] == 0, details.get("lost")
    assert report["missing_files"] == 0 and report["partial_files"] == 0
    assert report["server_errors"] == 0, report.get("failures")
    assert report["ok"] and report["returncode"] == 0
    assert "s3cret" not in json.dumps(report)
