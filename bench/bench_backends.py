"""The volume's SQLite and PostgreSQL side by side: one write at 1/10/50 MB-equivalent libraries, aggregate
write throughput with 1/4/8 writer processes, and history search + a deep page at 100k rows (1M with --long).

PostgreSQL is the suite's private server (``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql``, fsync off like
the tests: a lower bound on a real server's commit cost, which a managed database adds as network round trips),
or ``VOICEBOX_BENCH_DATABASE_URL``. Without either the PostgreSQL rows say so instead of a figure.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session

from backend.config import Settings, load_settings
from backend.db.factory import open_database
from backend.db.interface import Database
from backend.db.models import Generation, Profile
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap

ROOT = Path(__file__).resolve().parents[1]
_VOCAB_RNG = random.Random(11)
#: a vocabulary of 5,000 made-up words: one is in ~0.2 % of the rows, like a name or topic in a real history
WORDS = sorted(
    {
        "".join(
            _VOCAB_RNG.choice("bcdfghjklmnprstvz") + _VOCAB_RNG.choice("aeiou") for _ in range(4)
        )
        for _ in range(5200)
    }
)[:5000]
#: rows of ~1.47 kB on disk per MB of SQLite file, as bench_db grows its libraries
ROWS_PER_MB = 680


@contextlib.contextmanager
def postgres() -> Iterator[Callable[[], str] | None]:
    """A factory of fresh PostgreSQL database URLs, or None when no server can be had."""
    given = os.environ.get("VOICEBOX_BENCH_DATABASE_URL")
    if given:
        yield lambda: given
        return
    try:
        sys.path.insert(0, str(ROOT))
        from tests.support.postgres import pg_bin, start_server
    except ImportError:
        yield None
        return
    if pg_bin() is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="vbx-bench-pg-"))
    root.chmod(0o755)
    server = start_server(root / "pg")
    try:
        yield lambda: server.url(server.create_database())
    finally:
        server.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _settings(root: Path, name: str, url: str | None) -> Settings:
    env = {
        "VOICEBOX_VOLUME": str(root / "volume"),
        "VOICEBOX_LOCAL_DIR": str(root / f"local-{name}"),
        "VOICEBOX_DB_REFRESH_SECONDS": "0",
        "VOICEBOX_BACKUP_INTERVAL": "0",
        "VOICEBOX_TTS_MODEL": "fake",
        "VOICEBOX_STT_MODEL": "fake",
        "VOICEBOX_WORKER_ID": name,
    }
    if url:
        env["VOICEBOX_DATABASE_URL"] = url
    return load_settings(env)


def _fresh(root: Path, url: str | None) -> Settings:
    (root / "volume").mkdir(exist_ok=True)
    settings = _settings(root, "seed", url)
    bootstrap(settings, run_fsck=False)
    return settings


def fill_history(db: Database, rows: int, *, text_bytes: int = 0, seed: int = 7) -> None:
    """``rows`` generations with a few random words each (searchable), padded to ``text_bytes``."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    batch = 20_000
    with db.write() as session:  # one unit: on the volume, one publish (not one per batch)
        for offset in range(0, rows, batch):
            _insert_batch(session, rng, start, offset, min(rows, offset + batch), text_bytes)


def _insert_batch(
    session: Session, rng: random.Random, start: datetime, first: int, stop: int, text_bytes: int
) -> None:
    values = []
    for i in range(first, stop):
        words = " ".join(rng.choice(WORDS) for _ in range(8))
        values.append(
            {
                "id": f"h-{i:08d}",
                "text": (words + " " + "x" * text_bytes)[: max(len(words), text_bytes)],
                "profile_name": rng.choice(WORDS).title(),
                "language": "en",
                "engine": "qwen",
                "status": "completed",
                "is_favorited": False,
                "source": "manual",
                "created_at": start + timedelta(seconds=i),
            }
        )
    session.execute(insert(Generation), values)


def _p50(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 2)


def bench_one_write(
    kind: str,
    url_factory: Callable[[], str] | None,
    mb: int,
    repeats: int,
    *,
    history_rows: int | None = None,
    two_copy: bool = False,
):
    """p50 of one small write (a profile) by two workers taking turns, on a library of ``mb`` MB (or of
    ``history_rows`` generations of ~500 characters, the shape of a real history).

    ``two_copy`` (the volume only): the cycle writes used before the one-copy write, kept for migrations and
    restores (``VolumeDatabase.write_file``: local copy → work copy, the unit, the backup API onto the
    volume), measured on the same library for the before/after figure.
    """
    url = url_factory() if url_factory else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = _fresh(root, url)
        head = head_revision()
        a = open_database(settings, expected_revision=head)
        if history_rows:
            fill_history(a, history_rows, text_bytes=500)
        else:
            fill_history(a, mb * ROWS_PER_MB, text_bytes=1000)
        b = open_database(_settings(root, "b", url), expected_revision=head)
        times = []
        for i in range(repeats):
            writer = a if i % 2 == 0 else b
            started = time.perf_counter()
            if two_copy:
                _two_copy_write(writer, f"bench-{i}")
            else:
                with writer.write() as session:
                    session.add(Profile(name=f"bench-{i}"))
            times.append(time.perf_counter() - started)
        a.close()
        b.close()
        size = (
            f"{settings.db_path.stat().st_size / 1e6:.0f} MB file"
            if kind == "sqlite"
            else f"{history_rows or mb * ROWS_PER_MB} rows"
        )
        name = (
            f"one write @ {history_rows // 1000}k history rows"
            if history_rows
            else f"one write @ {mb} MB-equivalent library"
        )
        if two_copy:
            name += ", two-copy cycle (before)"
        return {
            "bench": name,
            "case": kind,
            "p50_ms": _p50(times),
            "max_ms": round(max(times) * 1000, 1),
            "size": size,
        }


def _two_copy_write(db: Database, name: str) -> None:
    from backend.db.sqlite_files import sqlite_engine
    from backend.db.volume_db import VolumeDatabase

    assert isinstance(db, VolumeDatabase)
    with db.write_file() as work:
        engine = sqlite_engine(work.path)
        try:
            with Session(engine) as session, session.begin():
                session.add(Profile(name=name))
        finally:
            engine.dispose()


def bench_throughput(kind: str, url_factory, writers: int, seconds: float):  # type: ignore[no-untyped-def]
    """Acknowledged writes per second of ``writers`` processes writing as fast as they can."""
    url = url_factory() if url_factory else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _fresh(root, url)
        procs, acks = [], []
        for i in range(writers):
            ack = root / f"acks-{i}"
            ack.touch()
            acks.append(ack)
            env = dict(os.environ)
            env.update({k: str(v) for k, v in _env(root, f"w{i}", url).items()})
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.support.db_worker", "writer", str(ack)],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        def count() -> int:
            return sum(len(p.read_text().splitlines()) for p in acks)

        time.sleep(3.0)  # interpreters started, first writes done
        before, started = count(), time.monotonic()
        time.sleep(seconds)
        done, elapsed = count() - before, time.monotonic() - started
        for proc in procs:
            proc.kill()
            proc.wait()
        rate = done / elapsed
        return {
            "bench": f"write throughput, {writers} writer process(es)",
            "case": kind,
            "p50_ms": round(1000 / rate, 2) if rate else "",
            "writes_per_s": round(rate, 1),
        }


def _env(root: Path, name: str, url: str | None) -> dict[str, str]:
    env = {
        "VOICEBOX_VOLUME": str(root / "volume"),
        "VOICEBOX_LOCAL_DIR": str(root / f"local-{name}"),
        "VOICEBOX_WORKER_ID": name,
        "VOICEBOX_BACKUP_INTERVAL": "0",
        "VOICEBOX_LEASE_SECONDS": "5",
        "PYTHONPATH": str(ROOT),
    }
    if url:
        env["VOICEBOX_DATABASE_URL"] = url
    return env


def bench_search(kind: str, url_factory, rows: int, repeats: int):  # type: ignore[no-untyped-def]
    """History search (a word, as the app searches) and a deep page, on ``rows`` history rows."""
    from backend.services.container import Services

    url = url_factory() if url_factory else None
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = _fresh(root, url)
        services = Services.create(settings)
        fill_history(services.db, rows)
        services.history.list(limit=50)  # warm: the local copy pulled, the pool connected
        search, deep, keyset, first, totals = [], [], [], [], []
        rng = random.Random(3)
        cursor = f"h-{50:08d}"  # the next-to-last page, by key (rows are newest-last by id)
        for _ in range(repeats):
            term = rng.choice(WORDS)
            started = time.perf_counter()
            _found, total = services.history.list(search=term, limit=50)
            search.append(time.perf_counter() - started)
            totals.append(total)
            started = time.perf_counter()
            services.history.list(limit=50)
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            services.history.list(limit=50, offset=rows - 50)
            deep.append(time.perf_counter() - started)
            started = time.perf_counter()
            services.history.list(limit=50, after=cursor)
            keyset.append(time.perf_counter() - started)
        services.close()
        label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}M"
        out.append(
            {
                "bench": f"history search (a word) @ {label} rows",
                "case": kind,
                "p50_ms": _p50(search),
                "matches_p50": int(statistics.median(totals)),
            }
        )
        out.append(
            {
                "bench": f"history deep page by key (after=) @ {label} rows",
                "case": kind,
                "p50_ms": _p50(keyset),
            }
        )
        out.append(
            {"bench": f"history first page @ {label} rows", "case": kind, "p50_ms": _p50(first)}
        )
        out.append(
            {
                "bench": f"history deep page (offset {rows - 50}) @ {label} rows",
                "case": kind,
                "p50_ms": _p50(deep),
            }
        )
    return out


def run(short: bool = False, long: bool = False) -> list[dict]:
    rows: list[dict] = []
    sizes = (1,) if short else (1, 10, 50)
    writers = (1, 4) if short else (1, 4, 8)
    history_rows = (2_000,) if short else ((100_000, 1_000_000) if long else (100_000,))
    with postgres() as pg:
        for kind, factory in (("sqlite", None), ("postgresql", pg)):
            if kind == "postgresql" and pg is None:
                rows.append(
                    {"bench": "PostgreSQL rows", "case": "no server binaries", "p50_ms": ""}
                )
                continue
            for mb in sizes:
                rows.append(bench_one_write(kind, factory, mb, 3 if short else 9))
            if not short:
                rows.append(bench_one_write(kind, factory, 0, 9, history_rows=100_000))
            if kind == "sqlite":  # the one-copy write's before/after, on the same library
                n, repeats = (2_000, 3) if short else (100_000, 9)
                if short:
                    rows.append(bench_one_write(kind, None, 0, repeats, history_rows=n))
                rows.append(bench_one_write(kind, None, 0, repeats, history_rows=n, two_copy=True))
            for n in writers:
                rows.append(bench_throughput(kind, factory, n, 2.0 if short else 8.0))
            for n in history_rows:
                rows.extend(bench_search(kind, factory, n, 3 if short else 9))
    base = {}
    for row in rows:  # ratio: PostgreSQL against the volume's SQLite, same bench
        if row.get("case") == "sqlite":
            base[row["bench"]] = row.get("p50_ms")
        elif isinstance(row.get("p50_ms"), float | int) and base.get(row["bench"]):
            row["ratio"] = round(row["p50_ms"] / base[row["bench"]], 2)
    for row in rows:
        if row.get("case") == "sqlite":
            row["ratio"] = 1.0
    return rows
