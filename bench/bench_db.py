"""The volume database's costs: one write (lease + pull + commit + publish) at 1/10/50 MB, and bootstrap on an
empty vs a 10k-row volume. The ratio column compares with the smallest case measured in the same run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from backend.config import load_settings
from backend.db.models import Profile
from backend.db.volume_db import VolumeDatabase
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap


def _settings(root: Path, name: str):  # type: ignore[no-untyped-def]
    return load_settings(
        {
            "VOICEBOX_VOLUME": str(root / "volume"),
            "VOICEBOX_LOCAL_DIR": str(root / f"local-{name}"),
            "VOICEBOX_DB_REFRESH_SECONDS": "0",
            "VOICEBOX_BACKUP_INTERVAL": "0",  # write figures without the hourly backup (bench_backup)
        }
    )


def _grow(db: VolumeDatabase, megabytes: int) -> None:
    """Pad the database with history-like rows until it reaches ``megabytes``."""
    filler = "x" * 1000
    with db.write() as session:
        conn = session.connection()
        rows = int(megabytes * 680)  # ~1.47 kB per row on disk with its index entries
        conn.execute(
            text(
                "INSERT INTO generations (id, text, language, engine, status, is_favorited, source, "
                "created_at) VALUES (:id, :text, 'en', 'qwen', 'completed', 0, 'manual', "
                "'2026-01-01 00:00:00')"
            ),
            [{"id": f"pad-{i}", "text": filler} for i in range(rows)],
        )


def bench_writes(short: bool) -> list[dict]:
    results = []
    sizes = (1, 10) if short else (1, 10, 50)
    repeats = 3 if short else 7
    base = None
    for mb in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            settings = _settings(root, "a")
            (root / "volume").mkdir()
            bootstrap(settings, run_fsck=False)
            db = VolumeDatabase(settings, expected_revision=head_revision())
            _grow(db, mb)
            peer = VolumeDatabase(_settings(root, "b"), expected_revision=head_revision())
            peer.refresh(force=True)
            times = []
            for i in range(repeats):
                # alternate writers so every write has to pull the other's publish first
                writer = db if i % 2 == 0 else peer
                started = time.perf_counter()
                with writer.write() as session:
                    session.add(Profile(name=f"bench-{mb}-{i}"))
                times.append(time.perf_counter() - started)
            size = settings.db_path.stat().st_size / 1e6
            p50 = statistics.median(times)
            base = base or p50
            results.append(
                {
                    "bench": f"db write (lease+pull+commit+publish) @ {size:.0f} MB",
                    "p50_ms": round(p50 * 1000, 1),
                    "max_ms": round(max(times) * 1000, 1),
                    "ratio": round(p50 / base, 2),
                }
            )
    return results


def bench_bootstrap(short: bool) -> list[dict]:
    results = []
    base = None
    for rows in (0, 10_000):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "volume").mkdir()
            settings = _settings(root, "seed")
            bootstrap(settings, run_fsck=False)
            if rows:
                db = VolumeDatabase(settings, expected_revision=head_revision())
                with db.write() as session:
                    session.connection().execute(
                        text(
                            "INSERT INTO generations (id, text, language, engine, status, "
                            "is_favorited, source, created_at) VALUES (:id, 'hello', 'en', 'qwen', "
                            "'completed', 0, 'manual', '2026-01-01 00:00:00')"
                        ),
                        [{"id": f"row-{i}"} for i in range(rows)],
                    )
            started = time.perf_counter()
            bootstrap(_settings(root, "cold"), run_fsck=True)  # a new worker: empty local dir
            seconds = time.perf_counter() - started
            base = base or seconds
            results.append(
                {
                    "bench": f"bootstrap to ready, {rows} history rows",
                    "p50_ms": round(seconds * 1000, 1),
                    "max_ms": round(seconds * 1000, 1),
                    "ratio": round(seconds / base, 2),
                }
            )
    return results


def run(short: bool = False) -> list[dict]:
    return bench_writes(short) + bench_bootstrap(short)


if __name__ == "__main__":
    for row in run(short=False):
        print(row)
