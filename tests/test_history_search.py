"""History search on the FTS5 trigram index (SQLite) keeps Voicebox's "contains" answer exactly.

The index is built by ``0005_history_fts`` for rows that existed before it, kept in sync by triggers on insert,
update and delete, and every search answers what the old ``LIKE`` scan answered (the API tests run the same
searches on PostgreSQL's ``pg_trgm`` indexes).
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select, update

from backend.db.models import Generation
from backend.db.search import contains
from backend.db.volume_db import VolumeDatabase
from backend.services.container import Services
from migrations.runner import head_revision

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "The quick brown fox",
    "jumps over the lazy dog",
    "Ünïcode ÉTÉ naïve café",
    'quotes "inside" and 50%_off',
    "ab",
    "",
]


def _scan_count(session, term: str) -> int:  # type: ignore[no-untyped-def]
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = select(func.count()).where(
        Generation.text.ilike(pattern, escape="\\")
        | Generation.profile_name.ilike(pattern, escape="\\")
    )
    return int(session.scalar(query) or 0)


def _indexed_count(session, term: str) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).where(contains(session, term))) or 0)


def _fts_check(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:  # raises when the external-content index disagrees with the table
        conn.execute(
            "INSERT INTO generations_fts(generations_fts, rank) VALUES ('integrity-check', 1)"
        )
    finally:
        conn.close()


def test_migration_indexes_existing_rows_and_triggers_follow_changes(
    make_settings, subprocess_env
) -> None:  # type: ignore[no-untyped-def]
    env = subprocess_env("old")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "db",
            "upgrade",
            "--to",
            "0004_versions_effects_stories",  # the revision before the index
        ],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    settings = make_settings()
    db = VolumeDatabase(settings)
    with db.write_file(check_schema=False) as work:
        conn = sqlite3.connect(work.path)
        conn.executemany(
            "INSERT INTO generations (id, text, profile_name, language, engine, status, "
            "is_favorited, source, created_at) VALUES (?, ?, ?, 'en', 'qwen', 'completed', 0, "
            "'manual', '2026-01-01')",
            [(f"old-{i}", text, "Narrator") for i, text in enumerate(TEXTS)],
        )
        conn.commit()
        conn.close()
    upgraded = subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    db = VolumeDatabase(settings, expected_revision=head_revision())
    with db.read() as session:
        assert _indexed_count(session, "QUICK") == 1  # rows from before the index exist in it
        assert _indexed_count(session, "narr") == len(TEXTS)  # the profile name is searched too
    with db.write() as session:
        session.execute(
            update(Generation).where(Generation.id == "old-0").values(text="slow turtle")
        )
        session.delete(session.get(Generation, "old-1"))
        session.add(
            Generation(id="new-1", text="a brand new quick line", language="en", status="completed")
        )
    with db.read() as session:
        assert (
            _indexed_count(session, "quick") == 1
        )  # only the new row; the old text left the index
        assert _indexed_count(session, "turtle") == 1
        assert _indexed_count(session, "lazy") == 0
    db.refresh(force=True)
    _fts_check(db.local_path)


def test_every_search_answers_what_the_scan_answered(api_services: Services) -> None:
    rng = random.Random(5)
    alphabet = "abcdeÉé %_\\\"'"
    with api_services.db.write() as session:
        for i in range(300):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            session.add(
                Generation(
                    id=f"g-{i}",
                    text=text,
                    profile_name=rng.choice(["Alice", "bob", None]),
                    language="en",
                    status="completed",
                )
            )
    terms = ["abc", "ÉÉ", "a%b", "_", "\\", '"', "' ", "ALI", "cde cd", "zzz", "ab", "e"]
    terms += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(60)]
    with api_services.db.read() as session:
        for term in terms:
            assert _indexed_count(session, term) == _scan_count(session, term), term


def test_db_check_reports_an_index_out_of_sync(make_settings, subprocess_env) -> None:  # type: ignore[no-untyped-def]
    env = subprocess_env("check")
    run = [sys.executable, "-m", "backend.cli"]
    assert subprocess.run([*run, "bootstrap", "--no-fsck"], env=env, cwd=ROOT).returncode == 0
    assert subprocess.run([*run, "db", "check"], env=env, cwd=ROOT).returncode == 0
    db = VolumeDatabase(make_settings())
    with db.write_file(check_schema=False) as work:  # a change the triggers never saw
        conn = sqlite3.connect(work.path)
        conn.execute("DROP TRIGGER generations_fts_insert")
        conn.execute(
            "INSERT INTO generations (id, text, language, engine, status, is_favorited, source, "
            "created_at) VALUES ('x', 'unindexed text', 'en', 'qwen', 'completed', 0, 'manual', "
            "'2026-01-01')"
        )
        conn.commit()
        conn.close()
    checked = subprocess.run(
        [*run, "db", "check", "--json"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 3 and "out of sync" in checked.stdout
