"""Taking the volume-wide write lease (``backend.db.lease.acquire_write_lease``): a busy lease is waited for
until the timeout and then refused with a message naming it; a held lease is ours until released."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.db.errors import LeaseTimeoutError
from backend.db.lease import acquire_write_lease


def test_a_busy_lease_is_refused_after_the_timeout_and_free_again_after_release(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db" / "voicebox.db.lease"  # its folder is created on the way
    held = acquire_write_lease(path, lease_seconds=30, timeout=1)
    try:
        assert held.lost_reason(path) is None
        started = time.monotonic()
        with pytest.raises(
            LeaseTimeoutError, match=r"voicebox\.db\.lease\) stayed busy for 0\.5 s"
        ):
            acquire_write_lease(path, lease_seconds=30, timeout=0.5)
        assert time.monotonic() - started >= 0.5
    finally:
        held.release()
    again = acquire_write_lease(path, lease_seconds=30, timeout=1)
    try:
        assert again.lost_reason(path) is None
        assert held.lost_reason(path) == "another worker took the lease over"
    finally:
        again.release()
