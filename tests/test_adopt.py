"""Adoption of legacy Voicebox databases (fork, upstream, older fork) with their files.

What must hold (issue 2, item 7): every profile, sample, generation and its audio is accounted for; paths end up
relative and resolve to the same bytes; the schema is exactly ours at head; what has no place in our schema is
dropped only with a count in the report; a partial schema, a non-empty volume or a failure part-way — including a
SIGKILL — leaves the shared database as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.config import Settings
from backend.db.models import Generation, Profile, ProfileSample
from backend.db.sqlite_files import integrity_check, read_revision
from backend.db.volume_db import VolumeDatabase
from backend.storage.blobs import UnsafePathError
from migrations.runner import head_revision, schema_differences
from tests.support.legacy_schemas import (
    BUILDERS,
    FORK_ROOT,
    LegacyFixture,
    build_fork,
    build_fork_old,
    build_partial,
    build_upstream,
)
from volume_bootstrap.adopt import (
    AdoptionError,
    LegacySchemaError,
    adopt_data_dir,
    adopt_database_file,
    build_plan,
    database_file,
    relativize,
    values,
)
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.layout import ensure_layout
from volume_bootstrap.migrate import list_backups

ROOT = Path(__file__).resolve().parents[1]
PATH_COLUMNS = (
    ("profiles", "avatar_path"),
    ("profile_samples", "audio_path"),
    ("generations", "audio_path"),
    ("generation_versions", "audio_path"),
)


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture
def settings(make_settings) -> Settings:
    s = make_settings()
    ensure_layout(s)
    return s


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(settings: Settings, sql: str) -> list[sqlite3.Row]:
    """Raw rows of the published database (a private copy: SQLite never opens the shared file in place)."""
    copy = settings.local_dir / f"inspect-{time.monotonic_ns()}.db"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.db_path, copy)
    conn = sqlite3.connect(copy)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
        copy.unlink()


def table_counts(settings: Settings) -> dict[str, int]:
    return {
        t: rows(settings, f"SELECT count(*) AS n FROM {t}")[0]["n"]
        for t in ("profiles", "profile_samples", "generations")
    }


def core_counts(fx: LegacyFixture) -> dict[str, int]:
    return {t: fx.expected_after[t] for t in ("profiles", "profile_samples", "generations")}


def volume_files(settings: Settings) -> list[str]:
    found = []
    for top in ("profiles", "generations"):
        base = settings.data_dir / top
        found += [
            p.relative_to(settings.data_dir).as_posix() for p in base.rglob("*") if p.is_file()
        ]
    return sorted(found)


def assert_adopted(
    settings: Settings, fx: LegacyFixture, report: dict, *, with_hashes: bool
) -> None:
    """The checks every adoption must pass, whichever way it ran."""
    assert read_revision(settings.db_path) == head_revision()
    assert integrity_check(settings.db_path) == "ok"
    assert report["schema"] == fx.schema
    assert report["counts_before"] == fx.counts
    assert report["counts_after"] == fx.expected_after
    assert table_counts(settings) == core_counts(fx)
    assert report["dropped_tables"] == fx.dropped_tables
    assert "audio_channels" in report["dropped_tables"]
    assert not {"stories", "story_items"} & set(report["dropped_tables"])  # carried, not dropped
    assert rows(settings, "SELECT count(*) AS n FROM stories")[0]["n"] == fx.counts["stories"]
    assert set(fx.dropped_columns) <= set(report["dropped_columns"])
    assert report["soft_deleted_generations"] == len(fx.soft_deleted)
    assert sorted(g["id"] for g in report["soft_deleted"]) == sorted(fx.soft_deleted)
    assert report["failed_unfinished"] == len(fx.unfinished)

    local = settings.local_dir / "check.db"
    shutil.copyfile(settings.db_path, local)
    assert schema_differences(local) == []

    # Nothing lost: every kept id is there, every path is relative and resolves to the very same bytes.
    sample_ids = {r["id"] for r in rows(settings, "SELECT id FROM profile_samples")}
    assert sample_ids == set(fx.sample_ids)
    gen_ids = {r["id"] for r in rows(settings, "SELECT id FROM generations")}
    assert gen_ids == set(fx.generation_ids)
    missing = {m["id"] for m in report["missing_files"]}
    assert missing == set(fx.missing_rows)
    for table, column in PATH_COLUMNS:
        for row in rows(settings, f"SELECT * FROM {table} WHERE {column} IS NOT NULL"):
            rel = row[column]
            assert not rel.startswith("/") and ":" not in rel and "\\" not in rel, rel
            assert rel.split("/")[0] in ("profiles", "generations"), rel
            target = settings.data_dir / rel
            if row["id"] in fx.missing_rows:
                assert not target.exists()
                continue
            assert target.is_file(), (table, row["id"], rel)
            assert sha(target) == fx.file_sha[rel]
            if table != "profiles":
                if with_hashes:
                    assert row["sha256"] == fx.file_sha[rel]
                assert row["size_bytes"] == target.stat().st_size

    # The typed view the services use: timestamps parse, defaults are filled, names denormalised.
    db = VolumeDatabase(settings)
    with db.read() as session:
        profiles = {p.id: p for p in session.scalars(select(Profile))}
        for sample in session.scalars(select(ProfileSample)):
            assert sample.created_at is not None
            assert sample.duration == pytest.approx(1.0, abs=0.01)
        for gen in session.scalars(select(Generation)):
            assert gen.created_at is not None
            assert gen.engine and gen.source == "manual"
            assert gen.profile_name == profiles[gen.profile_id].name
            if gen.id in fx.unfinished:
                assert gen.status == "failed" and "unfinished" in (gen.error or "")
                assert gen.audio_path is None
            elif gen.id in fx.default_version_path:
                assert gen.audio_path == fx.default_version_path[gen.id]
        for profile in profiles.values():
            assert profile.created_at is not None and profile.updated_at is not None
            assert profile.language
    db.close()


# ---------------------------------------------------------------------------------------------- data dir
@pytest.mark.parametrize("schema", sorted(BUILDERS))
def test_adopt_data_dir(schema: str, settings: Settings, tmp_path: Path) -> None:
    fx = BUILDERS[schema](tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)
    assert_adopted(settings, fx, report, with_hashes=True)
    present = [rel for rel in fx.file_sha if (settings.data_dir / rel).exists()]
    assert report["files_copied"] == len(present)
    assert {m["id"] for m in report["files_missing"]} == set(fx.missing_rows)
    # Every legacy file is either adopted or named in the report.
    assert sorted(present + report["files_not_adopted"]) == sorted(fx.file_sha)
    assert all((fx.data_dir / rel).is_file() for rel in fx.file_sha)  # copy leaves the source
    assert report["backup"] is None  # there was no volume database to back up


def test_fork_specifics(settings: Settings, tmp_path: Path) -> None:
    fx = build_fork(tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)
    assert report["generation_jobs_by_status"] == {"complete": 4, "queued": 1, "error": 1}
    assert report["paths_rewritten"] >= 7
    gens = rows(settings, "SELECT * FROM generations")
    assert {g["status"] for g in gens} == {"completed"}
    assert all(g["is_favorited"] == 0 and g["synthesis_seconds"] == 2.5 for g in gens)
    assert not any(fx.soft_deleted[0] == g["id"] for g in gens)
    soft = report["soft_deleted"][0]
    assert soft["audio_path"] in report["files_not_adopted"]


def test_upstream_specifics(settings: Settings, tmp_path: Path) -> None:
    fx = build_upstream(tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)
    assert "effect_presets" not in report["dropped_tables"]
    assert "generation_versions" not in report["dropped_tables"]
    assert report["dropped_column_values"]["profiles.voice_type"] == 2
    assert report["unadopted_versions"] == []
    assert report["presets_merged"] == ["Radio", "Echo Chamber", "Deep Voice"]
    versions = rows(settings, "SELECT generation_id, label, is_default FROM generation_versions")
    assert sorted(
        (v["label"], v["is_default"])
        for v in versions
        if v["generation_id"] in fx.default_version_path
    ) == [("original", 0), ("original", 1), ("reverb", 1)]
    chains = rows(settings, "SELECT effects_chain FROM profiles WHERE name='Carol'")
    assert [c["effects_chain"] for c in chains] == ['[{"type":"reverb"}]']
    statuses = sorted(r["status"] for r in rows(settings, "SELECT status FROM generations"))
    assert statuses == ["completed", "completed", "failed", "failed", "failed"]
    failed = rows(settings, "SELECT error FROM generations WHERE status='failed'")
    assert any(r["error"] == "CUDA out of memory" for r in failed)


def test_move_removes_only_adopted_sources_after_publish(
    settings: Settings, tmp_path: Path
) -> None:
    fx = build_fork(tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir, move=True)
    assert read_revision(settings.db_path) == head_revision()
    left = sorted(
        p.relative_to(fx.data_dir).as_posix()
        for p in fx.data_dir.rglob("*")
        if p.is_file() and p.suffix in (".wav", ".png")
    )
    assert left == report["files_not_adopted"] == [report["soft_deleted"][0]["audio_path"]]
    assert report["files_moved"] == report["files_copied"]


def test_adopt_replaces_an_empty_volume_database_with_a_backup(
    settings: Settings, tmp_path: Path
) -> None:
    bootstrap(settings, run_fsck=False)
    fx = build_fork_old(tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)
    assert report["backup"] and len(list_backups(settings)) == 1
    assert table_counts(settings) == core_counts(fx)


def test_refuses_to_merge_into_a_volume_with_data(settings: Settings, tmp_path: Path) -> None:
    adopt_data_dir(settings, build_fork_old(tmp_path / "first").data_dir)
    before, files = sha(settings.db_path), volume_files(settings)
    with pytest.raises(AdoptionError, match="does not merge"):
        adopt_data_dir(settings, build_upstream(tmp_path / "second").data_dir)
    assert sha(settings.db_path) == before
    assert volume_files(settings) == files


@pytest.mark.parametrize("schema", sorted(BUILDERS))
def test_rerunning_the_same_adoption_is_a_no_op(
    schema: str, settings: Settings, tmp_path: Path
) -> None:
    fx = BUILDERS[schema](tmp_path / "legacy")
    first = adopt_data_dir(settings, fx.data_dir)
    assert first["already_adopted"] is False
    before, files = sha(settings.db_path), volume_files(settings)
    backups = list_backups(settings)  # the first adoption's publish may have started the rotation
    again = adopt_data_dir(settings, fx.data_dir)
    assert again["already_adopted"] is True and "already adopted" in again["message"]
    assert again["counts_after"] == first["counts_after"] == fx.expected_after
    assert again["files_copied"] == 0 and again["backup"] is None
    assert sha(settings.db_path) == before and volume_files(settings) == files
    assert list_backups(settings) == backups  # a no-op publishes nothing, so it backs up nothing


def test_identical_files_already_on_the_volume_are_reused_and_counted(
    settings: Settings, tmp_path: Path
) -> None:
    """The report's file figures: what was written (and its bytes) and what an identical copy already on
    the volume saved (an operator copied some files over first)."""
    fx = build_upstream(tmp_path / "legacy")
    conn = sqlite3.connect(fx.db_path)
    conn.row_factory = sqlite3.Row
    try:
        plan = build_plan(
            lambda sql: [dict(r) for r in conn.execute(sql)], [str(fx.data_dir.absolute())]
        )
    finally:
        conn.close()
    adopted = sorted(rel for rel in plan.referenced_files() if (fx.data_dir / rel).is_file())
    copied_first = adopted[: len(adopted) // 2]
    for rel in copied_first:
        (settings.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fx.data_dir / rel, settings.data_dir / rel)
    report = adopt_data_dir(settings, fx.data_dir)
    written = sorted(set(adopted) - set(copied_first))
    assert report["files_reused"] == len(copied_first) > 0
    assert report["files_copied"] == len(written) > 0
    assert report["bytes_copied"] == sum((fx.data_dir / rel).stat().st_size for rel in written)
    assert volume_files(settings) == adopted


def test_rerun_after_the_library_grew_is_still_a_no_op(settings: Settings, tmp_path: Path) -> None:
    fx = build_upstream(tmp_path / "legacy")
    adopt_data_dir(settings, fx.data_dir)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    with db.write() as session:
        session.add(Profile(name="Made after adoption", language="en"))
    db.close()
    assert adopt_data_dir(settings, fx.data_dir)["already_adopted"] is True


def test_partial_schema_is_refused_and_the_volume_untouched(
    settings: Settings, tmp_path: Path
) -> None:
    bootstrap(settings, run_fsck=False)
    before = sha(settings.db_path)
    fx = build_partial(tmp_path / "legacy")
    with pytest.raises(LegacySchemaError, match="partial Voicebox schema.*no profile_samples"):
        adopt_data_dir(settings, fx.data_dir)
    assert sha(settings.db_path) == before
    assert volume_files(settings) == []


def test_not_a_voicebox_database_is_refused(settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "legacy"
    data.mkdir()
    conn = sqlite3.connect(data / "voicebox.db")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LegacySchemaError, match="not a Voicebox database"):
        adopt_data_dir(settings, data)
    assert not settings.db_path.exists()


def test_path_escaping_the_data_dir_is_refused(settings: Settings, tmp_path: Path) -> None:
    fx = build_fork(tmp_path / "legacy")
    conn = sqlite3.connect(fx.db_path)
    bad = conn.execute("SELECT id FROM profile_samples LIMIT 1").fetchone()[0]
    conn.execute(
        "UPDATE profile_samples SET audio_path=? WHERE id=?", (f"{FORK_ROOT}/../../etc/passwd", bad)
    )
    conn.commit()
    conn.close()
    with pytest.raises(AdoptionError, match=f"profile_samples {bad}.*escapes"):
        adopt_data_dir(settings, fx.data_dir)
    assert not settings.db_path.exists()
    assert volume_files(settings) == []


def test_failure_part_way_publishes_nothing_and_removes_copied_files(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap(settings, run_fsck=False)
    before = os.stat(settings.db_path)
    fx = build_upstream(tmp_path / "legacy")
    original = database_file._insert_rows

    def insert_then_fail(conn, plan) -> None:  # type: ignore[no-untyped-def]
        original(conn, plan)
        raise RuntimeError("injected failure inside the adoption transaction")

    monkeypatch.setattr(database_file, "_insert_rows", insert_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        adopt_data_dir(settings, fx.data_dir)
    after = os.stat(settings.db_path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert volume_files(settings) == []
    assert list(settings.tmp_dir.iterdir()) == []
    assert [p.name for p in (settings.data_dir / "profiles").iterdir()] == []  # folders undone
    assert (settings.data_dir / "generations").is_dir()  # the layout stays
    assert table_counts(settings) == {"profiles": 0, "profile_samples": 0, "generations": 0}


def test_orphans_are_reported_not_lost(settings: Settings, tmp_path: Path) -> None:
    fx = build_fork_old(tmp_path / "legacy")
    conn = sqlite3.connect(fx.db_path)
    conn.execute(
        "INSERT INTO profile_samples VALUES ('orphan-s', 'gone', 'profiles/gone/x.wav', 'r')"
    )
    conn.execute(
        "INSERT INTO generations (id, profile_id, text, audio_path, duration) "
        "VALUES ('orphan-g', 'gone', 't', 'generations/none.wav', 1.0)"
    )
    conn.commit()
    conn.close()
    report = adopt_data_dir(settings, fx.data_dir)
    assert [s["id"] for s in report["orphan_samples"]] == ["orphan-s"]
    assert report["orphan_generations"] == ["orphan-g"]
    row = rows(settings, "SELECT * FROM generations WHERE id='orphan-g'")[0]
    assert row["profile_id"] is None and row["status"] == "completed"
    assert {"table": "generations", "id": "orphan-g", "path": "generations/none.wav"} in report[
        "files_missing"
    ]


# ---------------------------------------------------------------------------------------------- bootstrap
def place_on_volume(fx: LegacyFixture, settings: Settings) -> None:
    """What an operator does by hand: the legacy DB at the volume's DB path, its folders beside it."""
    shutil.copyfile(fx.db_path, settings.db_path)
    for top in ("profiles", "generations"):
        if (fx.data_dir / top).is_dir():
            shutil.copytree(fx.data_dir / top, settings.data_dir / top, dirs_exist_ok=True)


def test_bootstrap_adopts_a_legacy_database_on_the_volume(
    settings: Settings, tmp_path: Path
) -> None:
    fx = build_fork(tmp_path / "legacy")
    place_on_volume(fx, settings)
    result = bootstrap(settings, run_fsck=False)
    migration = result.migration
    assert migration is not None and migration["action"] == "adopted"
    assert migration["from_revision"] is None and migration["to_revision"] == head_revision()
    assert migration["backup"] and len(list_backups(settings)) == 1
    report = migration["adoption"]
    assert_adopted(settings, fx, report, with_hashes=False)
    again = bootstrap(settings)  # the next cold start, fsck included, works on the adopted data
    assert again.migration["action"] == "current"  # type: ignore[index]
    assert again.fsck is not None
    assert [m.split(":")[0] for m in again.fsck["missing_files"]] == fx.missing_rows


def test_bootstrap_refuses_a_partial_schema(settings: Settings, tmp_path: Path) -> None:
    fx = build_partial(tmp_path / "legacy")
    shutil.copyfile(fx.db_path, settings.db_path)
    before = sha(settings.db_path)
    with pytest.raises(LegacySchemaError, match="partial Voicebox schema"):
        bootstrap(settings, run_fsck=False)
    assert sha(settings.db_path) == before


KILL_IN_TRANSACTION = """
import os, signal, sys
from pathlib import Path
import volume_bootstrap.adopt as adopt
import volume_bootstrap.adopt.database_file as database_file
original = database_file._insert_rows
def die(conn, plan):
    original(conn, plan)  # legacy tables dropped, ours created and filled, nothing committed
    print("inserted", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
database_file._insert_rows = die
from backend.config import load_settings
if sys.argv[1] == "file":
    adopt.adopt_database_file(load_settings(), Path(sys.argv[2]))
else:
    from volume_bootstrap.bootstrap import bootstrap
    bootstrap(load_settings(), run_fsck=False)
"""


def run_killer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILL_IN_TRANSACTION, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kill_inside_the_transaction_leaves_the_legacy_file(subprocess_env, tmp_path: Path) -> None:
    fx = build_upstream(tmp_path / "legacy")
    work = tmp_path / "work.db"
    shutil.copyfile(fx.db_path, work)
    proc = run_killer(subprocess_env("killer"), "file", str(work))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "inserted" in proc.stdout
    assert Path(f"{work}-journal").exists()  # the hot journal SQLite rolls back on next open
    conn = sqlite3.connect(work)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in fx.counts}
    conn.close()
    assert "alembic_version" not in tables
    assert counts == fx.counts


def test_kill_during_bootstrap_adoption_leaves_the_shared_database(
    settings: Settings, subprocess_env, tmp_path: Path
) -> None:
    fx = build_fork(tmp_path / "legacy")
    place_on_volume(fx, settings)
    before = sha(settings.db_path)
    proc = run_killer(subprocess_env("killer"), "bootstrap")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sha(settings.db_path) == before
    assert read_revision(settings.db_path) is None
    # The next cold start takes the dead holder's lease over and adopts.
    result = bootstrap(settings, run_fsck=False)
    assert result.migration["action"] == "adopted"  # type: ignore[index]
    assert table_counts(settings) == core_counts(fx)


def test_kill_at_a_random_moment_leaves_old_or_new(
    settings: Settings, subprocess_env, tmp_path: Path
) -> None:
    fx = build_fork(tmp_path / "legacy")
    place_on_volume(fx, settings)
    before = sha(settings.db_path)
    seed = random.randrange(1 << 30)
    delay = random.Random(seed).uniform(0.2, 2.0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.db_worker", "bootstrap"],
        env=subprocess_env("random-kill"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if sha(settings.db_path) != before:  # it finished first: then it is the whole new database
        assert read_revision(settings.db_path) == head_revision(), f"seed {seed}"
        assert integrity_check(settings.db_path) == "ok"
    result = bootstrap(settings, run_fsck=False)
    assert result.migration["action"] in ("adopted", "current"), f"seed {seed}"  # type: ignore[index]
    assert table_counts(settings) == core_counts(fx), f"seed {seed}"


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_db_adopt_json(subprocess_env, tmp_path: Path, volume_dir: Path) -> None:
    fx = build_upstream(tmp_path / "legacy")
    proc = subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "adopt", str(fx.data_dir), "--json"],
        env=subprocess_env("cli"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["schema"] == "upstream"
    assert report["counts_after"] == fx.expected_after
    assert report["counts_before"] == fx.counts
    assert report["revision"] == head_revision()
    assert report["files_copied"] == len(fx.file_sha) - len(report["files_not_adopted"])


def test_cli_db_adopt_rerun_exits_0_and_another_source_is_refused_in_json(
    subprocess_env, tmp_path: Path, volume_dir: Path
) -> None:
    fx = build_upstream(tmp_path / "legacy")

    def adopt_cli(data_dir: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backend.cli", "db", "adopt", str(data_dir), "--json"],
            env=subprocess_env("cli"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert adopt_cli(fx.data_dir).returncode == 0
    again = adopt_cli(fx.data_dir)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report["already_adopted"] is True and report["counts_after"] == fx.expected_after
    other = adopt_cli(build_fork(tmp_path / "other").data_dir)
    assert other.returncode == 1
    refusal = json.loads(other.stdout.strip().splitlines()[-1])
    assert refusal["ok"] is False and "does not merge" in refusal["error"]


def test_cli_db_adopt_partial_exits_with_a_clear_line(subprocess_env, tmp_path: Path) -> None:
    fx = build_partial(tmp_path / "legacy")
    proc = subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "adopt", str(fx.data_dir), "--json"],
        env=subprocess_env("cli"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert "partial Voicebox schema" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------- paths
ROOTS = ["/data/legacy", "/vol/voicebox", FORK_ROOT]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/app/data/profiles/p/s.wav", "profiles/p/s.wav"),
        ("/app/data/generations/j.wav", "generations/j.wav"),
        ("profiles/p/s.wav", "profiles/p/s.wav"),
        ("data/profiles/p/s.wav", "profiles/p/s.wav"),
        ("./data/generations/g.wav", "generations/g.wav"),
        ("/data/legacy/generations/g_processed.wav", "generations/g_processed.wav"),
        ("/vol/voicebox/profiles/p/avatar.png", "profiles/p/avatar.png"),
        ("/home/u/.voicebox/data/profiles/p/s.wav", "profiles/p/s.wav"),
        ("/mnt/profiles/vb/data/profiles/p/s.wav", "profiles/p/s.wav"),
        ("voicebox/generations/g.wav", "generations/g.wav"),
        ("C:\\Users\\me\\AppData\\voicebox\\data\\profiles\\p\\s.wav", "profiles/p/s.wav"),
        (None, None),
        ("", None),
    ],
)
def test_relativize(raw: str | None, expected: str | None) -> None:
    assert relativize(raw, ROOTS) == expected


@pytest.mark.parametrize(
    "raw",
    ["/app/data/../../etc/passwd", "profiles/../../x.wav", "/etc/passwd", "generations", "x.wav"],
)
def test_relativize_refuses_escapes(raw: str) -> None:
    with pytest.raises(UnsafePathError):
        relativize(raw, ROOTS)


def test_adopt_database_file_refuses_a_versioned_database(
    settings: Settings, tmp_path: Path
) -> None:
    bootstrap(settings, run_fsck=False)
    copy = tmp_path / "ours.db"
    shutil.copyfile(settings.db_path, copy)
    with pytest.raises(AdoptionError, match="Alembic revision"):
        adopt_database_file(settings, copy)


def test_a_schema_that_differs_from_the_baseline_rolls_back(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx = build_fork(tmp_path / "legacy")
    work = tmp_path / "work.db"
    shutil.copyfile(fx.db_path, work)
    original = database_file._insert_rows

    def with_a_stray_table(conn, plan) -> None:  # type: ignore[no-untyped-def]
        original(conn, plan)
        conn.exec_driver_sql("CREATE TABLE stray (id INTEGER)")

    monkeypatch.setattr(database_file, "_insert_rows", with_a_stray_table)
    with pytest.raises(AdoptionError, match=r"differs from 0001_baseline in \['table:stray'\]"):
        adopt_database_file(settings, work)
    conn = sqlite3.connect(work)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == set(fx.counts)


@pytest.mark.parametrize(
    ("value", "as_int", "as_float"),
    [
        (None, None, None),
        ("", None, None),
        ("12", 12, 12.0),
        (b"7", 7, 7.0),
        (3, 3, 3.0),
        (2.5, 2, 2.5),
        ("1.5", None, 1.5),
        ("seven", None, None),
        (b"", None, None),
        ([1], None, None),
    ],
)
def test_legacy_numbers_are_read_leniently(value: object, as_int: object, as_float: object) -> None:
    """Legacy columns hold whatever the old app wrote: a number it cannot read becomes NULL, not an error."""
    assert values.as_int(value) == as_int
    assert values.as_float(value) == as_float
