"""A real PostgreSQL server for the suite: ``initdb`` + ``pg_ctl`` in a temp folder on a free port.

Why a private server: the tests must exercise the real SQL, locks and errors, and CI is a clean machine with no
database running. The server binaries come from ``/usr/lib/postgresql/<major>/bin`` (``scripts/test.sh``
installs ``postgresql`` when they are missing). As root, PostgreSQL refuses to run, so the data folder is given
to the ``postgres`` user and the server runs as it. Each test gets a fresh database cloned from a migrated
template (``CREATE DATABASE ... TEMPLATE``, a few milliseconds). Without binaries the PostgreSQL cases skip with
the reason (set ``VOICEBOX_REQUIRE_POSTGRES=1`` to make that a failure, as CI does).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ROOTS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]
PASSWORD = "s3cret-pw-never-logged"
USER = "voicebox"


def pg_bin() -> Path | None:
    override = os.environ.get("VOICEBOX_PG_BIN")
    if override:
        return Path(override)
    for root in PG_ROOTS:
        if (root / "initdb").exists() and (root / "pg_ctl").exists():
            return root
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    bin: Path
    data: Path
    port: int
    run_as: str | None

    def url(self, database: str, *, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=PASSWORD,
            dbname="postgres",
            autocommit=True,
        )

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        return name

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        return _run(cmd, self.run_as, check=check)

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast", "-w", check=False)

    def start(self) -> None:
        self.ctl(
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            str(self.data.parent / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=64MB",
        )


def _run(cmd: list[str], run_as: str | None, *, check: bool) -> subprocess.CompletedProcess[str]:
    if run_as:
        user = pwd.getpwnam(run_as)

        def demote() -> None:  # runs in the child: PostgreSQL refuses to start as root
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return subprocess.run(
            cmd, capture_output=True, text=True, check=check, preexec_fn=demote, cwd="/"
        )
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def start_server(root: Path) -> PgServer:
    binary = pg_bin()
    if binary is None:
        raise FileNotFoundError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    run_as = None
    if os.geteuid() == 0:
        run_as = "postgres"
        pwd.getpwnam(run_as)  # KeyError: no such user
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(pwfile, user.pw_uid, user.pw_gid)
        root.chmod(0o700)
    _run(
        [
            str(binary / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        run_as,
        check=True,
    )
    server = PgServer(binary, data, free_port(), run_as)
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The suite's PostgreSQL server (one per session); skips the test without binaries."""
    if pg_bin() is None:
        if os.environ.get("VOICEBOX_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                "VOICEBOX_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries are installed"
            )
        pytest.skip("PostgreSQL server binaries not installed (scripts/test.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="vbx-pg-"))
    # the postgres user must be able to reach the folder
    root.chmod(0o755)
    server = start_server(root / "pg")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A database migrated to head once per session; each test clones it."""
    from backend.config import load_settings
    from backend.db.postgres import PostgresDatabase
    from migrations.runner import head_revision
    from volume_bootstrap.migrate import migrate_volume

    name = pg_server.create_database()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "VOICEBOX_VOLUME": tmp,
                "VOICEBOX_LOCAL_DIR": tmp + "/local",
                "VOICEBOX_DATABASE_URL": pg_server.url(name),
            }
        )
        db = PostgresDatabase(settings, expected_revision=head_revision())
        migrate_volume(settings, db)
        db.close()
    return name


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A URL to a fresh, empty database (not migrated)."""
    return pg_server.url(pg_server.create_database())


@pytest.fixture
def pg_migrated_url(pg_server: PgServer, pg_template: str) -> str:
    """A URL to a fresh database at head (cloned from the session's template)."""
    return pg_server.url(pg_server.create_database(pg_template))


@contextlib.contextmanager
def server_stopped(server: PgServer) -> Iterator[None]:
    """The server down for the body, up again after (fault tests)."""
    server.stop()
    try:
        yield
    finally:
        server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                server.admin().close()
                break
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.2)
