"""PostgreSQL as the database (``VOICEBOX_DATABASE_URL``), against a real server the suite starts itself.

Migrations (every revision up and down, one migrator at a time, the newer-revision refusal, the backup rule),
faults (wrong URL, refused connection, wrong password, a connection killed mid-write, the server down and back:
one clear line or 503 + Retry-After, nothing half-written, no password anywhere), four writer processes under
SIGKILL, and ``db copy`` SQLite → PostgreSQL → SQLite giving back the identical library.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from backend.app import create_app
from backend.config import SettingsError, load_settings, redact_url
from backend.db.copy import digests
from backend.db.errors import DatabaseUnavailableError, SchemaMismatchError
from backend.db.factory import open_database
from backend.db.interface import DatabaseKind
from backend.db.models import Profile
from backend.db.postgres import PostgresDatabase, pg_engine
from backend.db.sqlite_files import sqlite_engine
from backend.db.volume_db import VolumeDatabase
from backend.services.container import Services
from migrations.runner import alembic_config, compare_schema, head_revision, known_revisions
from tests.support.api import add_generation, api_settings_for, audio_bytes
from tests.support.postgres import PASSWORD, PgServer, server_stopped
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.migrate import migrate_volume
from volume_bootstrap.migrate_pg import BackupRequiredError

ROOT = Path(__file__).resolve().parents[1]


def pg_settings(tmp_path: Path, url: str, name: str = "w1"):  # type: ignore[no-untyped-def]
    volume = tmp_path / "volume"
    volume.mkdir(exist_ok=True)
    return api_settings_for(
        volume, tmp_path / f"local-{name}", worker_id=name, VOICEBOX_DATABASE_URL=url
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------------------------------- migrations
def test_every_revision_runs_up_and_down_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    settings = pg_settings(tmp_path, pg_url)
    db = open_database(settings, expected_revision=head_revision())
    assert isinstance(db, PostgresDatabase) and db.kind is DatabaseKind.POSTGRESQL
    result = migrate_volume(settings, db)
    assert (result.action, result.to_revision) == ("created", head_revision())
    engine = pg_engine(settings, pool=False)
    try:
        with engine.connect() as conn:
            assert compare_schema(conn) == []  # the models and the migrated schema agree
            indexes = {
                row[0]
                for row in conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE tablename = 'generations'")
                )
            }
            assert {"ix_generations_text_trgm", "ix_generations_profile_name_trgm"} <= indexes
            conn.rollback()
            with conn.begin():
                command.downgrade(alembic_config(conn), "base")
            with conn.begin():
                command.upgrade(alembic_config(conn), "head")
            assert compare_schema(conn) == []
    finally:
        engine.dispose()
    assert db.current_revision() == head_revision()
    assert migrate_volume(settings, db).action == "current"
    db.close()


def test_cold_start_storm_migrates_once_under_the_advisory_lock(
    tmp_path: Path, pg_url: str, subprocess_env
) -> None:  # type: ignore[no-untyped-def]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.db_worker", "bootstrap"],
            env=subprocess_env(f"boot{i}", VOICEBOX_DATABASE_URL=pg_url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    actions = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        actions.append(json.loads(out.strip().splitlines()[-1])["action"])
    assert sorted(actions) == ["created", "current", "current", "current"], actions


def test_newer_revision_is_refused_by_migrator_and_writers(
    tmp_path: Path, pg_migrated_url: str
) -> None:
    settings = pg_settings(tmp_path, pg_migrated_url)
    services = Services.create(settings)
    client = TestClient(create_app(settings, services=services), raise_server_exceptions=False)
    assert client.post("/profiles", json={"name": "Before"}).status_code == 200
    engine = pg_engine(settings, pool=False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zz_newer_image'"))
    engine.dispose()
    with pytest.raises(SchemaMismatchError, match="zz_newer_image"):
        migrate_volume(settings, PostgresDatabase(settings))
    answer = client.post("/profiles", json={"name": "After"})
    assert answer.status_code == 503 and "zz_newer_image" in answer.json()["detail"]
    assert [p["name"] for p in client.get("/profiles").json()] == ["Before"]  # reads still work
    services.close()


def test_upgrade_of_a_library_takes_a_pg_dump_or_refuses_naming_the_revision(
    tmp_path: Path, pg_migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pg_settings(tmp_path, pg_migrated_url)
    previous = known_revisions()[-2]
    engine = pg_engine(settings, pool=False)
    with engine.connect() as conn:
        with conn.begin():
            command.downgrade(alembic_config(conn), previous)
        with conn.begin():
            conn.execute(
                text(
                    "INSERT INTO profiles (id, name, language, created_at, updated_at) "
                    "VALUES ('p1', 'Kept', 'en', now(), now())"
                )
            )
    engine.dispose()
    import volume_bootstrap.migrate_pg as migrate_pg

    monkeypatch.setattr(migrate_pg.shutil, "which", lambda _name: None)
    with pytest.raises(BackupRequiredError) as refused:
        migrate_volume(settings, PostgresDatabase(settings))
    message = str(refused.value)
    assert previous in message and "pg_dump" in message and "--backed-up" in message
    assert PASSWORD not in message
    assert PostgresDatabase(settings).current_revision() == previous  # untouched
    monkeypatch.undo()
    result = migrate_volume(settings, PostgresDatabase(settings))
    assert result.action == "upgraded" and result.backup
    dump = settings.backups_dir / result.backup
    assert dump.stat().st_size > 0 and previous in dump.name


def test_backed_up_flag_skips_the_dump(tmp_path: Path, pg_migrated_url: str) -> None:
    settings = pg_settings(tmp_path, pg_migrated_url)
    engine = pg_engine(settings, pool=False)
    with engine.connect() as conn, conn.begin():
        command.downgrade(alembic_config(conn), known_revisions()[-2])
    engine.dispose()
    result = migrate_volume(settings, PostgresDatabase(settings), backed_up=True)
    assert result.action == "upgraded" and result.backup is None


# ------------------------------------------------------------------------------------- faults
def test_bad_urls_and_secrets_in_settings() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"VOICEBOX_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(err.value) and "postgresql+psycopg" in str(err.value)
    for bad in ("not a url", "postgresql://u:hunter2@h:notaport/d", "postgresql://u:hunter2@/d"):
        with pytest.raises(SettingsError) as err:
            load_settings({"VOICEBOX_DATABASE_URL": bad})
        assert "hunter2" not in str(err.value)
    ok = load_settings({"VOICEBOX_DATABASE_URL": "postgres://u:p@h:5/d?sslmode=require"})
    assert ok.database_url == "postgresql+psycopg://u:p@h:5/d?sslmode=require"
    assert redact_url("postgresql+psycopg://u:hunter2@h:5/d?password=x&sslmode=require") == (
        "postgresql+psycopg://u:***@h:5/d?password=***&sslmode=require"
    )


@pytest.mark.parametrize("fault", ["refused", "password"])
def test_unreachable_or_wrong_password_is_one_line_without_the_secret(
    tmp_path: Path, pg_server: PgServer, subprocess_env, fault: str
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.postgres import free_port

    secret = "wr0ng-secret-pw"
    url = (
        pg_server.url("postgres", password=secret, port=free_port())
        if fault == "refused"
        else pg_server.url("postgres", password=secret)
    )
    env = subprocess_env("cli", VOICEBOX_DATABASE_URL=url, VOICEBOX_DB_CONNECT_TIMEOUT="3")
    for args in (["bootstrap", "--no-fsck"], ["db", "current"], ["db", "upgrade"]):
        result = cli(env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.startswith("voicebox-worker:")]
        assert len(lines) == 1, result.stderr
        assert "unavailable" in lines[0] and "nothing was written" in lines[0]
        assert secret not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr


def test_connection_killed_mid_write_commits_nothing_and_recovers(
    tmp_path: Path, pg_migrated_url: str, pg_server: PgServer
) -> None:
    settings = pg_settings(tmp_path, pg_migrated_url)
    db = PostgresDatabase(settings, expected_revision=head_revision())
    with pytest.raises(DatabaseUnavailableError) as err, db.write() as session:
        session.add(Profile(name="Half", language="en"))
        session.flush()
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        with pg_server.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        session.add(Profile(name="Half 2", language="en"))
        session.flush()
    assert PASSWORD not in str(err.value)
    with db.write() as session:
        session.add(Profile(name="After", language="en"))
    with db.read() as session:
        assert set(session.scalars(select(Profile.name))) == {"After"}
    db.close()


def test_server_down_answers_503_then_recovers(
    tmp_path: Path, pg_migrated_url: str, pg_server: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = pg_settings(tmp_path, pg_migrated_url).with_overrides(db_connect_timeout=2.0)
    services = Services.create(settings)
    caplog.set_level(logging.DEBUG)
    with TestClient(
        create_app(settings, services=services), raise_server_exceptions=False
    ) as client:
        assert client.post("/profiles", json={"name": "Up"}).status_code == 200
        with server_stopped(pg_server):
            for method, path, body in (
                ("POST", "/profiles", {"name": "Down"}),
                ("GET", "/profiles", None),
                ("GET", "/history", None),
            ):
                answer = client.request(method, path, json=body)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers.get("Retry-After"), path
                assert PASSWORD not in answer.text
            health = client.get("/health").json()
            assert health["status"] == "degraded" and PASSWORD not in json.dumps(health)
        assert client.post("/profiles", json={"name": "Back"}).status_code == 200
        names = {p["name"] for p in client.get("/profiles").json()}
        assert names == {"Up", "Back"}  # nothing of the failed write
    services.close()
    assert PASSWORD not in caplog.text


# ------------------------------------------------------------------------------------- concurrency
@pytest.mark.slow
def test_four_writers_under_sigkill_lose_nothing_on_postgresql(
    tmp_path: Path, pg_migrated_url: str, subprocess_env
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_volume_multiprocess import run_writers_with_kills

    def env(name: str, **extra: str) -> dict[str, str]:
        return subprocess_env(name, VOICEBOX_DATABASE_URL=pg_migrated_url, **extra)

    # a kill every 0.5-1.5 s: a PostgreSQL writer needs its interpreter started before it writes at all
    acked, kills = run_writers_with_kills(env, tmp_path, seconds=12, pause=(0.5, 1.5), min_acks=50)
    assert kills >= 8
    assert len(acked) > 50, "the writers made too little progress to prove anything"
    db = PostgresDatabase(pg_settings(tmp_path, pg_migrated_url))
    with db.read() as session:
        present = set(session.scalars(select(Profile.name)))
    db.close()
    lost = acked - present
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged commits lost"


# ------------------------------------------------------------------------------------- db copy
def _library(settings) -> None:  # type: ignore[no-untyped-def]
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services)) as client:
        for i in range(3):
            pid = client.post("/profiles", json={"name": f"Voice {i}"}).json()["id"]
            client.post(
                f"/profiles/{pid}/samples",
                files={"file": ("s.wav", audio_bytes(2.0, seed=i), "audio/wav")},
                data={"reference_text": f"sample {i}"},
            )
            gens = [
                add_generation(
                    services, profile_id=pid, profile_name=f"Voice {i}", text=f"line {i}-{j} ü"
                )
                for j in range(4)
            ]
        # migration 0004's tables: a version with effects, a user preset, a story with items
        echo = [{"type": "reverb", "enabled": True, "params": {"room_size": 0.7}}]
        version = client.post(
            f"/generations/{gens[0]}/versions/apply-effects", json={"effects_chain": echo}
        )
        assert version.status_code == 200, version.text
        preset = client.post("/effects/presets", json={"name": "Mine", "effects_chain": echo})
        assert preset.status_code == 200, preset.text
        story = client.post("/stories", json={"name": "Saga"}).json()["id"]
        for gen in gens[:2]:
            item = client.post(f"/stories/{story}/items", json={"generation_id": gen})
            assert item.status_code == 200, item.text
    services.close()


def _sqlite_digests(settings):  # type: ignore[no-untyped-def]
    db = VolumeDatabase(settings)
    db.refresh(force=True)
    engine = sqlite_engine(db.local_path)
    with engine.connect() as conn:
        found = digests(conn)
    engine.dispose()
    db.close()
    return found


def test_copy_sqlite_to_postgresql_and_back_is_identical(
    tmp_path: Path, pg_url: str, pg_server: PgServer, subprocess_env, volume_template: Path
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.api import fresh_volume

    source_volume = fresh_volume(volume_template, tmp_path / "source")
    source = api_settings_for(source_volume, tmp_path / "local-src")
    _library(source)
    original = _sqlite_digests(source)
    assert original["generations"].rows == 12 and original["profile_samples"].rows == 3
    assert original["generation_versions"].rows == 12 + 1  # every default + one with effects
    assert original["story_items"].rows == 2 and original["stories"].rows == 1
    assert original["effect_presets"].rows == 9 + 1  # the built-ins + one of the user's

    env = subprocess_env("copy", VOICEBOX_VOLUME=str(source_volume))
    first = cli(env, "db", "copy", "--to", pg_url, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["action"] == "copied" and PASSWORD not in first.stdout + first.stderr
    pg_db = PostgresDatabase(pg_settings(tmp_path, pg_url))
    with pg_db.engine.connect() as conn:
        assert digests(conn) == original
    pg_db.close()
    again = cli(env, "db", "copy", "--to", pg_url, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["action"] == "already identical"

    # a different library in the way: refused unless --replace
    other = pg_server.url(pg_server.create_database())
    other_settings = pg_settings(tmp_path, other, "other")
    migrate_volume(other_settings, PostgresDatabase(other_settings))
    with PostgresDatabase(other_settings).write() as session:
        session.add(Profile(name="Stranger", language="en"))
    refused = cli(env, "db", "copy", "--to", other, "--json")
    assert refused.returncode == 1 and "--replace" in refused.stderr
    replaced = cli(env, "db", "copy", "--to", other, "--replace", "--json")
    assert replaced.returncode == 0 and json.loads(replaced.stdout)["replaced_rows"] == 1

    # and back onto a volume with no database at all
    back_volume = tmp_path / "back"
    back_volume.mkdir()
    back_env = subprocess_env("back", VOICEBOX_VOLUME=str(back_volume))
    back = cli(back_env, "db", "copy", "--from", pg_url, "--json")
    assert back.returncode == 0, back.stderr
    back_settings = api_settings_for(back_volume, tmp_path / "local-back")
    assert _sqlite_digests(back_settings) == original
    again = cli(back_env, "db", "copy", "--from", pg_url, "--json")
    assert json.loads(again.stdout)["action"] == "already identical"


def test_api_on_postgresql_sees_a_copied_library(
    tmp_path: Path, pg_url: str, volume_template: Path
) -> None:
    """After ``db copy --to`` the same volume (audio) serves the library from PostgreSQL."""
    from tests.support.api import fresh_volume
    from volume_bootstrap.library_copy import copy_to_postgres

    volume = fresh_volume(volume_template, tmp_path / "volume")
    settings = api_settings_for(volume, tmp_path / "local")
    _library(settings)
    copy_to_postgres(settings, pg_url)
    pg = api_settings_for(volume, tmp_path / "local-pg", VOICEBOX_DATABASE_URL=pg_url)
    report = bootstrap(pg)  # fsck included: the audio on the volume matches the rows
    assert report.migration and report.migration["action"] == "current"
    assert report.fsck and not report.fsck.get("missing")
    services = Services.create(pg)
    with TestClient(create_app(pg, services=services)) as client:
        hits = client.get("/history", params={"search": "LINE 1-"}).json()
        assert hits["total"] == 4
        gen = hits["items"][0]["id"]
        assert client.get(f"/audio/{gen}").status_code == 200
    services.close()


# ------------------------------------------------------------------------------------- adoption
@pytest.mark.parametrize("schema", ["upstream", "fork-old"])
def test_adopt_a_voicebox_data_dir_straight_into_postgresql(
    tmp_path: Path, pg_url: str, schema: str
) -> None:
    from tests.support.legacy_schemas import BUILDERS
    from volume_bootstrap.adopt import adopt_data_dir
    from volume_bootstrap.layout import ensure_layout

    settings = pg_settings(tmp_path, pg_url)
    ensure_layout(settings)
    fx = BUILDERS[schema](tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)
    assert report["counts_after"] == fx.expected_after
    assert report["database_copy"]["action"] == "copied"
    assert not settings.db_path.exists()  # nothing went to the volume's SQLite
    db = PostgresDatabase(settings, expected_revision=head_revision())
    assert db.current_revision() == head_revision()
    with db.engine.connect() as conn:
        # rows per table (the report's version and preset figures are what adoption carried, not totals)
        tables = ("profiles", "profile_samples", "generations", "stories", "story_items")
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
        versions = conn.execute(text("SELECT count(*) FROM generation_versions")).scalar()
        assert compare_schema(conn) == []
    assert counts == {t: fx.expected_after[t] for t in tables}
    assert versions >= max(fx.expected_after["generation_versions"], 1)
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services)) as client:
        for item in client.get("/history", params={"limit": 100}).json()["items"]:
            if item["audio_path"]:
                assert client.get(f"/audio/{item['id']}").status_code == 200
    services.close()
    db.close()


# ------------------------------------------------------------------------------------- mixed versions
def test_newer_image_migrates_postgresql_and_old_workers_stop_writing(
    tmp_path: Path, pg_migrated_url: str, subprocess_env
) -> None:  # type: ignore[no-untyped-def]
    """A rolling release on PostgreSQL: the newer image's bootstrap dumps and migrates; this code refuses."""
    import shutil as sh

    from migrations.runner import migrations_dir
    from tests.test_mixed_versions import NEWER, NEWER_REVISION, run_image

    newer = tmp_path / "newer-image" / "migrations"
    sh.copytree(migrations_dir(), newer, ignore=sh.ignore_patterns("__pycache__"))
    (newer / "versions" / f"{NEWER}.py").write_text(
        NEWER_REVISION.format(revision=NEWER, down=head_revision())
    )
    settings = pg_settings(tmp_path, pg_migrated_url)
    services = Services.create(settings)
    client = TestClient(create_app(settings, services=services), raise_server_exceptions=False)
    assert client.post("/profiles", json={"name": "Old"}).status_code == 200

    env = subprocess_env("newer", VOICEBOX_DATABASE_URL=pg_migrated_url)
    result = run_image(newer, env, "bootstrap", "--no-fsck")
    assert result.returncode == 0, result.stderr
    assert PostgresDatabase(settings).current_revision() == NEWER
    dumps = list(settings.backups_dir.glob(f"voicebox-pg-{head_revision()}-*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_size > 0  # the backup before the upgrade

    answer = client.post("/profiles", json={"name": "Refused"})
    assert answer.status_code == 503
    assert NEWER in answer.json()["detail"] and head_revision() in answer.json()["detail"]
    assert [p["name"] for p in client.get("/profiles").json()] == ["Old"]
    services.close()
    again = run_image(
        None, subprocess_env("old", VOICEBOX_DATABASE_URL=pg_migrated_url), "bootstrap"
    )
    assert again.returncode == 3 and NEWER in again.stderr
    assert PASSWORD not in again.stderr + result.stderr


def test_serverless_cold_start_with_the_database_down_fails_with_one_line(
    tmp_path: Path, pg_server: PgServer, subprocess_env
) -> None:  # type: ignore[no-untyped-def]
    """RunPod: the worker exits at cold start (RunPod replaces it) instead of taking jobs it cannot serve."""
    from tests.support.postgres import free_port

    url = pg_server.url("voicebox", password="n0t-logged-pw", port=free_port())
    env = subprocess_env("rp", VOICEBOX_DATABASE_URL=url, VOICEBOX_DB_CONNECT_TIMEOUT="2")
    result = subprocess.run(
        [sys.executable, "-m", "backend.serverless_handler"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    failures = [line for line in out.splitlines() if "cold start failed" in line]
    assert len(failures) == 1, out
    assert "phase 'bootstrap'" in failures[0] and "DatabaseUnavailableError" in failures[0]
    assert "n0t-logged-pw" not in out and "Traceback" not in out
