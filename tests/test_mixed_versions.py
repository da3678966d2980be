"""Mixed image versions on one volume: old code never writes a schema it does not know.

Why this matters on RunPod: a rolling release runs old and new workers against one network volume for a while.
The first new worker migrates the shared database; from then on an old worker must not write rows of the old
shape into it (silently dropping the new columns' meaning), and it must say why rather than fail obscurely.

The "newer image" is this repository plus one extra Alembic revision, made in a copy of ``migrations/`` and run
in a subprocess (``migrations.runner.migrations_dir`` pointed at the copy, the rest of the code as is),
exactly as a new image would run its bootstrap. The "worker from before a migration" is this code with the
previous revision as its expected head, holding a local copy at that revision when a peer migrates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app import create_app
from backend.db.errors import SchemaMismatchError
from backend.db.models import Profile
from backend.db.sqlite_files import read_revision
from backend.db.volume_db import VolumeDatabase
from backend.services.container import Services
from backend.storage.blobs import BlobStore
from migrations.runner import head_revision, known_revisions, migrations_dir
from tests.support.api import audio_bytes, files_under
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.migrate import list_backups

ROOT = Path(__file__).resolve().parents[1]
NEWER = "zz_newer_image"

#: Runs ``voicebox-worker ARGS`` as an image whose migrations folder is ``sys.argv[1]``.
IMAGE_DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import migrations.runner as runner

    runner.migrations_dir = lambda: Path(sys.argv[1])
    from backend.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)

NEWER_REVISION = '''\
"""A revision only the newer image has: a table and a column this code's models do not know."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voice_presets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("pronunciation", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("pronunciation")
    op.drop_table("voice_presets")
'''


@pytest.fixture
def newer_migrations(tmp_path: Path) -> Path:
    """A copy of ``migrations/`` with one revision on top of this code's head."""
    copy = tmp_path / "newer-image" / "migrations"
    shutil.copytree(migrations_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / f"{NEWER}.py").write_text(
        NEWER_REVISION.format(revision=NEWER, down=head_revision())
    )
    return copy


def run_image(
    migrations: Path | None, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess:
    """``voicebox-worker ARGS`` in a fresh process: this code, or this code with ``migrations``."""
    command = [sys.executable, "-m", "backend.cli", *args]
    if migrations is not None:
        command = [sys.executable, "-c", IMAGE_DRIVER, str(migrations), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def migrate_as_newer_image(
    newer_migrations: Path, subprocess_env, settings
) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    result = run_image(newer_migrations, subprocess_env("newer"), "bootstrap", "--no-fsck")
    assert result.returncode == 0, result.stderr
    assert read_revision(settings.db_path) == NEWER
    return result


@pytest.fixture
def old_worker(make_settings) -> Iterator[tuple[TestClient, Services]]:  # type: ignore[no-untyped-def]
    """A worker of this code, bootstrapped and serving, with one profile (and sample) on the volume."""
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as c:
        pid = c.post("/profiles", json={"name": "Before the upgrade"}).json()["id"]
        r = c.post(
            f"/profiles/{pid}/samples",
            files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
            data={"reference_text": "hello"},
        )
        assert r.status_code == 200, r.text
        yield c, services
    services.close()


def _names_both(message: str, found: str, expected: str) -> bool:
    return repr(found) in message and repr(expected) in message


def test_newer_image_migrates_once_with_a_backup(
    newer_migrations: Path, subprocess_env, make_settings
) -> None:  # type: ignore[no-untyped-def]
    """The setup the other tests rely on: the newer image really migrates this code's database."""
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    migrate_as_newer_image(newer_migrations, subprocess_env, settings)
    assert [b.name.split("-")[1] for b in list_backups(settings)] == [head_revision()]
    assert NEWER not in known_revisions()


def test_older_image_bootstrap_exits_naming_both_revisions(
    newer_migrations: Path, subprocess_env, make_settings
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    migrate_as_newer_image(newer_migrations, subprocess_env, settings)
    before = settings.db_path.read_bytes()

    result = run_image(None, subprocess_env("older"), "bootstrap", "--no-fsck")

    assert result.returncode == 3, (result.returncode, result.stderr)  # EXIT_DB
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if NEWER in line]
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("voicebox-worker: "), line
    assert _names_both(line, NEWER, head_revision()), line
    assert "newer image" in line
    assert result.stdout.strip() == ""  # no bootstrap report: it did not become ready
    assert settings.db_path.read_bytes() == before  # the refusal wrote nothing
    assert read_revision(settings.db_path) == NEWER


def test_running_older_worker_answers_503_on_writes_and_keeps_reading(
    newer_migrations: Path, subprocess_env, old_worker
) -> None:  # type: ignore[no-untyped-def]
    client, services = old_worker
    settings = services.settings
    profile = client.get("/profiles").json()[0]
    sample = client.get(f"/profiles/{profile['id']}/samples").json()[0]

    migrate_as_newer_image(newer_migrations, subprocess_env, settings)
    published = file_identity(settings.db_path)
    files_before = files_under(settings.data_dir / "profiles")

    writes = [
        client.post("/profiles", json={"name": "After the upgrade"}),
        client.put(f"/profiles/{profile['id']}", json={"name": "Renamed"}),
        client.put(f"/profiles/samples/{sample['id']}", json={"reference_text": "changed"}),
        client.post(
            f"/profiles/{profile['id']}/samples",
            files={"file": ("b.wav", audio_bytes(3.0, seed=5), "audio/wav")},
            data={"reference_text": "more"},
        ),
        client.delete(f"/profiles/{profile['id']}"),
    ]
    for r in writes:
        assert r.status_code == 503, (r.request.method, r.request.url, r.status_code, r.text)
        detail = r.json()["detail"]
        assert _names_both(detail, NEWER, head_revision()), detail
        assert "newer image" in detail and "will not write" in detail

    # Reads of existing data still work, on the migrated file.
    r = client.get("/profiles")
    assert r.status_code == 200 and [p["name"] for p in r.json()] == ["Before the upgrade"]
    r = client.get(f"/profiles/{profile['id']}/samples")
    assert r.status_code == 200 and r.json()[0]["reference_text"] == "hello"
    r = client.get(f"/samples/{sample['id']}")
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    assert client.get("/history").status_code == 200
    assert services.db.local_revision == NEWER

    # Nothing of the refused writes reached the volume.
    assert file_identity(settings.db_path) == published
    assert files_under(settings.data_dir / "profiles") == files_before
    assert files_under(settings.tmp_dir) == []


def _old_profile_insert(name: str):  # type: ignore[no-untyped-def]
    """A profile row as the previous revision's code writes it (the head models may have more columns)."""
    from sqlalchemy import text

    return text(
        "INSERT INTO profiles (id, name, language, created_at, updated_at) "
        "VALUES (:id, :name, 'en', '2026-01-01', '2026-01-01')"
    ).bindparams(id=str(uuid.uuid4()), name=name)


def test_worker_from_before_a_migration_refuses_its_next_write(
    subprocess_env, make_settings
) -> None:  # type: ignore[no-untyped-def]
    """A worker built at the previous revision, still running (its local copy at that revision, no refresh
    due for an hour), after a peer runs the real migration to this code's head: its next write is refused
    before anything is published, so no row of the old shape lands in the new schema."""
    revisions = known_revisions()
    assert len(revisions) >= 2, "needs a migration to cross"
    previous, head = revisions[-2], revisions[-1]
    setup = subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "upgrade", "--to", previous],
        env=subprocess_env("setup"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    settings = make_settings(VOICEBOX_DB_REFRESH_SECONDS="3600")
    assert read_revision(settings.db_path) == previous

    old = VolumeDatabase(settings, expected_revision=previous)
    with old.write() as session:  # it works while the volume is at its revision
        session.execute(_old_profile_insert("written by the old worker"))
    assert old.local_revision == previous

    peer = run_image(None, subprocess_env("peer"), "bootstrap", "--no-fsck")
    assert peer.returncode == 0, peer.stderr
    assert read_revision(settings.db_path) == head
    migrated = settings.db_path.read_bytes()

    # Its reads are still served from the old local copy (no refresh due for an hour).
    with old.read() as session:
        assert session.scalar(select(Profile.name)) == "written by the old worker"
    assert old.local_revision == previous

    with pytest.raises(SchemaMismatchError) as info, old.write() as session:
        session.execute(_old_profile_insert("old-shaped row"))
    assert _names_both(str(info.value), head, previous), str(info.value)
    assert settings.db_path.read_bytes() == migrated  # nothing was published

    # The same worker as an HTTP server answers 503 with that message.
    services = Services(settings=settings, db=old, blobs=BlobStore(settings))
    with TestClient(create_app(settings, services=services)) as client:
        r = client.post("/profiles", json={"name": "old-shaped row"})
        assert r.status_code == 503 and _names_both(r.json()["detail"], head, previous), r.text
        assert client.get("/profiles").status_code == 200
    assert settings.db_path.read_bytes() == migrated
    verify = VolumeDatabase(make_settings())
    with verify.read() as session:
        assert list(session.scalars(select(Profile.name))) == ["written by the old worker"]
    verify.close()


def file_identity(path: Path) -> tuple[int, int, int]:
    """Inode, size and mtime: on local disk, unchanged means the file was not replaced."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)
