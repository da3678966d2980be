"""The one durable-write path (``backend/storage/atomic.py``): the steps in order, nothing half-written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.storage import atomic


def _trace(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_write_bytes_fsyncs_file_then_replaces_then_fsyncs_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _trace(monkeypatch)
    target = tmp_path / "out" / "a.bin"
    atomic.write_bytes(target, b"hello", tmp_path / ".tmp", prefix="t-")
    assert target.read_bytes() == b"hello"
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".tmp" / "t-"))
    assert events[2][1] == str(target.parent)
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_failed_write_leaves_neither_target_nor_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    with pytest.raises(RuntimeError), atomic.AtomicFile(tmp_path / ".tmp") as out:
        out.write(b"half")
        raise RuntimeError("killed mid-write")
    assert not target.exists() and list((tmp_path / ".tmp").iterdir()) == []


def test_exclusive_commit_refuses_an_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"first")
    out = atomic.AtomicFile(tmp_path / ".tmp")
    out.write(b"second")
    with pytest.raises(FileExistsError):
        out.commit(target, exclusive=True)
    assert target.read_bytes() == b"first" and list((tmp_path / ".tmp").iterdir()) == []


def test_publish_moves_a_staged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staged = tmp_path / "staged.part"
    staged.write_bytes(b"data")
    events = _trace(monkeypatch)
    atomic.publish(staged, tmp_path / "x" / "final.bin")
    assert [k for k, _ in events] == ["fsync", "replace", "fsync"]
    assert (tmp_path / "x" / "final.bin").read_bytes() == b"data" and not staged.exists()


def test_fsync_dir_tolerates_a_missing_folder(tmp_path: Path) -> None:
    atomic.fsync_dir(tmp_path / "nope")  # no exception


def test_only_the_atomic_module_spells_the_durable_write_sequence() -> None:
    """Every writer of volume files goes through ``backend/storage/atomic.py``; only the volume probes, which
    time or test the raw operations themselves, call ``os.fsync`` on their own."""
    root = Path(__file__).resolve().parent.parent
    probes = {"backend/storage/atomic.py", "backend/storage/probe.py", "volume_bootstrap/layout.py"}
    found = [
        f"{rel}: {needle}"
        for top in ("backend", "volume_bootstrap", "migrations")
        for path in sorted((root / top).rglob("*.py"))
        if (rel := str(path.relative_to(root))) not in probes
        for needle in ("os.fsync(", "def fsync_dir", "def fsync_path")
        if needle in path.read_text()
    ]
    assert found == []
