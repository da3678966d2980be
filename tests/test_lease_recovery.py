"""What FUSE and NFS volumes do that local disks do not: a dead holder's lease marker that filelock cannot take
over (no RENAME_EXCHANGE), and a shared file whose name is hidden for a moment by a rename over it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.db.lease_recovery import MarkerRecord, StaleMarkerBreaker, process_is_gone

LEASE = 2.0


def marker_text(pid: int, host: str, token: str = "abc123") -> bytes:
    return (
        f"filelock/2\npid={pid}\nhost={host}\nmode=lease\ntoken={token}\nduration={LEASE}\n"
    ).encode()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_marker_record_parses_filelock_owner_lines() -> None:
    record = MarkerRecord.parse(marker_text(42, "vm", "f00d"))
    assert record == MarkerRecord(pid=42, host="vm", token="f00d")
    assert MarkerRecord.parse(b"") == MarkerRecord(None, None, None)


def test_process_is_gone_tells_a_live_process_from_a_reaped_one() -> None:
    assert process_is_gone(os.getpid()) is False
    assert process_is_gone(dead_pid()) is True


def test_marker_of_a_dead_holder_on_this_host_is_broken_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "voicebox.db.lease"
    marker.write_bytes(marker_text(dead_pid(), socket.gethostname()))
    reason = StaleMarkerBreaker(marker, LEASE).poll()
    assert reason is not None and "is gone" in reason
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []  # the aside copy is removed too


def test_marker_of_a_live_holder_is_left_while_it_changes(tmp_path: Path) -> None:
    marker = tmp_path / "voicebox.db.lease"
    marker.write_bytes(marker_text(os.getpid(), socket.gethostname()))
    clock = FakeClock()
    breaker = StaleMarkerBreaker(marker, LEASE, clock=clock)
    for step in range(5):
        assert breaker.poll() is None
        clock.now += LEASE * 0.6
        stamp = time.time() + step + 1  # the heartbeat's refresh: a new mtime each time
        os.utime(marker, (stamp, stamp))
    assert marker.exists()


def test_marker_of_another_host_is_broken_only_after_a_lease_unchanged(tmp_path: Path) -> None:
    """A holder elsewhere cannot be asked whether it runs: a whole lease with no refresh is the rule."""
    marker = tmp_path / "voicebox.db.lease"
    marker.write_bytes(marker_text(1, "another-host"))
    clock = FakeClock()
    breaker = StaleMarkerBreaker(marker, LEASE, clock=clock)
    assert breaker.poll() is None
    clock.now += LEASE * 0.9
    assert breaker.poll() is None and marker.exists()
    clock.now += LEASE * 0.2
    reason = breaker.poll()
    assert reason is not None and "not renewed" in reason
    assert not marker.exists()


def test_a_marker_replaced_between_judgement_and_rename_is_kept(tmp_path: Path) -> None:
    marker = tmp_path / "voicebox.db.lease"
    marker.write_bytes(marker_text(1, "another-host"))
    breaker = StaleMarkerBreaker(marker, LEASE)
    st = os.stat(marker)
    identity = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    marker.unlink()
    marker.write_bytes(marker_text(os.getpid(), socket.gethostname(), token="fresh-holder-token"))
    assert breaker._move_aside(identity) is False
    assert b"fresh-holder-token" in marker.read_bytes()


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux-only")
def test_writer_takes_over_a_killed_holder_when_rename_exchange_is_refused(
    make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What FUSE and NFS answer to RENAME_EXCHANGE (EINVAL) must not wedge the volume's writers."""
    import filelock._soft._exclusive._recovery as recovery

    from backend.db.models import Profile
    from backend.db.volume_db import VolumeDatabase
    from migrations.runner import head_revision
    from volume_bootstrap.bootstrap import bootstrap

    settings = make_settings(VOICEBOX_LEASE_SECONDS="3", VOICEBOX_LEASE_TIMEOUT="8")
    bootstrap(settings, run_fsck=False)
    a = VolumeDatabase(settings, expected_revision=head_revision())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from filelock import SoftFileLease\n"
            f"lease = SoftFileLease({str(a.lease_path)!r}, lease_duration={a.settings.lease_seconds})\n"
            "lease.acquire(); print('held', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    monkeypatch.setattr(recovery, "exchange_names", lambda source, target: False)
    started = time.monotonic()
    with a.write() as session:
        session.add(Profile(name="after-a-killed-holder"))
    assert time.monotonic() - started < a.settings.lease_seconds
    with a.read() as session:
        assert session.query(Profile).filter_by(name="after-a-killed-holder").count() == 1


def test_a_shared_file_hidden_for_a_moment_is_not_missing(tmp_path: Path) -> None:
    """libfuse hides a renamed-over target for a moment; that must not read as a missing database."""
    import threading

    from backend.db.sqlite_files import version_key

    shared = tmp_path / "voicebox.db"
    shared.write_bytes(b"\0" * 100)
    hidden = tmp_path / ".fuse_hidden0001"
    shared.rename(hidden)
    threading.Timer(0.05, lambda: hidden.rename(shared)).start()
    assert version_key(shared) is not None
    shared.unlink()
    assert version_key(shared) is None
