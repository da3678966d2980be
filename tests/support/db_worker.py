"""A worker process for the volume-database simulations (``python -m tests.support.db_worker MODE``).

Modes:
- ``bootstrap``: cold start on the volume, print the report's migration as one JSON line.
- ``writer ACK_FILE``: insert profiles in a loop; after each write returns, append its name to ACK_FILE
  (fsync'd). A name in ACK_FILE is an acknowledged commit: it must survive any kill.
- ``hold-write NAME SECONDS``: open a write, print ``holding``, sleep, insert NAME, then publish; prints
  ``published`` or ``conflict: ...`` (used to pause a holder with SIGSTOP).
- ``slow-migrate SECONDS``: upgrade the volume database, sleeping inside the migration transaction.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from backend.config import load_settings
from backend.db.errors import DatabaseError, WriteConflictError
from backend.db.factory import open_database
from backend.db.interface import Database
from backend.db.models import Profile


def _db() -> Database:
    from migrations.runner import head_revision

    return open_database(load_settings(), expected_revision=head_revision())


def bootstrap() -> int:
    from volume_bootstrap.bootstrap import bootstrap as run

    report = run(load_settings(), run_fsck=False)
    print(json.dumps(report.migration), flush=True)
    return 0


def writer(ack_file: str) -> int:
    db = _db()
    worker = load_settings().worker_id
    with open(ack_file, "a", encoding="utf-8") as acks:
        while True:
            name = f"{worker}-{uuid.uuid4().hex[:12]}"
            try:
                with db.write() as session:
                    session.add(Profile(name=name, language="en"))
            except DatabaseError:
                continue  # not acknowledged: a conflict or timeout is reported to the client as 503
            acks.write(name + "\n")
            acks.flush()
            os.fsync(acks.fileno())


def hold_write(name: str, seconds: float) -> int:
    db = _db()
    try:
        with db.write() as session:
            print("holding", flush=True)
            time.sleep(seconds)
            session.add(Profile(name=name, language="en"))
    except WriteConflictError as exc:
        print(f"conflict: {exc}", flush=True)
        return 3
    print("published", flush=True)
    return 0


def slow_migrate(seconds: float) -> int:
    from alembic import command

    import volume_bootstrap.migrate as migrate

    real_upgrade = command.upgrade

    def upgrade_then_sleep(cfg, target, **kwargs):  # type: ignore[no-untyped-def]
        real_upgrade(cfg, target, **kwargs)
        print("migrated-uncommitted", flush=True)
        time.sleep(seconds)

    command.upgrade = upgrade_then_sleep
    settings = load_settings()
    result = migrate.migrate_volume(settings, _db())
    print(json.dumps(result.as_dict()), flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, *rest = argv
    if mode == "bootstrap":
        return bootstrap()
    if mode == "writer":
        return writer(rest[0])
    if mode == "hold-write":
        return hold_write(rest[0], float(rest[1]))
    if mode == "slow-migrate":
        return slow_migrate(float(rest[0]))
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
