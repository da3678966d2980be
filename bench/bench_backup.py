"""The cost of a rotating backup (copy + fsync + ``integrity_check`` + row counts, then rotation) at 10 and
50 MB, next to one ordinary write of the same database: the one write per ``VOICEBOX_BACKUP_INTERVAL`` that takes
the backup pays it, while still holding the lease. The ratio compares with the write at the same size.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from backend.config import load_settings
from backend.db.backups import take_backup
from backend.db.models import Profile
from backend.db.volume_db import VolumeDatabase
from bench.bench_db import _grow
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap


def run(short: bool = False) -> list[dict]:
    results = []
    sizes = (10,) if short else (10, 50)
    repeats = 2 if short else 5
    for megabytes in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
            root = Path(tmp)
            (root / "volume").mkdir()
            settings = load_settings(
                {
                    "VOICEBOX_VOLUME": str(root / "volume"),
                    "VOICEBOX_LOCAL_DIR": str(root / "local"),
                    "VOICEBOX_BACKUP_INTERVAL": "0",  # taken by hand below, not by the writes
                    "VOICEBOX_BACKUPS_KEEP": "2",
                }
            )
            bootstrap(settings, run_fsck=False)
            db = VolumeDatabase(settings, expected_revision=head_revision())
            _grow(db, megabytes)
            writes, backups = [], []
            for i in range(repeats):
                started = time.perf_counter()
                with db.write() as session:
                    session.add(Profile(name=f"bench-{i}"))
                writes.append(time.perf_counter() - started)
                started = time.perf_counter()
                info = take_backup(settings, db.local_path, db.local_revision)
                backups.append(time.perf_counter() - started)
            write_p50, backup_p50 = statistics.median(writes), statistics.median(backups)
            results.append(
                {
                    "bench": "rotating backup",
                    "case": f"{megabytes} MB",
                    "p50_ms": round(backup_p50 * 1000, 1),
                    "max_ms": round(max(backups) * 1000, 1),
                    "write_p50_ms": round(write_p50 * 1000, 1),
                    "ratio": round(backup_p50 / write_p50, 2),
                    "size_mb": round(info.facts.size / 2**20, 1),
                }
            )
    return results
