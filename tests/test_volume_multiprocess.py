"""Several worker PROCESSES on one volume: cold-start storm, writers under SIGKILL, kills mid-migration,
a paused lease holder. These fail if the lease or the fence before publish is taken out.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.config import load_settings
from backend.db.models import Profile
from backend.db.sqlite_files import integrity_check, read_revision
from backend.db.volume_db import VolumeDatabase
from migrations.runner import head_revision
from volume_bootstrap.migrate import list_backups

pytestmark = pytest.mark.slow
WORKER = [sys.executable, "-m", "tests.support.db_worker"]
ROOT = Path(__file__).resolve().parents[1]


def spawn(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        WORKER + args,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def old_database(subprocess_env) -> None:
    """A volume database at the first revision: the next cold start has to migrate it."""
    env = subprocess_env("setup")
    subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "upgrade", "--to", "0001_baseline"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def test_cold_start_storm_migrates_once(subprocess_env, make_settings) -> None:
    old_database(subprocess_env)
    settings = make_settings()
    assert read_revision(settings.db_path) == "0001_baseline"
    procs = [spawn(["bootstrap"], subprocess_env(f"boot{i}")) for i in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    actions = sorted(r["action"] for r in results)
    assert actions == ["current", "current", "current", "upgraded"], actions
    assert len(list_backups(settings)) == 1
    assert read_revision(settings.db_path) == head_revision()
    assert integrity_check(settings.db_path) == "ok"


def _names(settings) -> set[str]:
    db = VolumeDatabase(settings)
    with db.read() as session:
        return set(session.scalars(select(Profile.name)))


def run_writers_with_kills(
    subprocess_env,
    tmp_path: Path,
    seconds: float,
    workers: int = 4,
    pause: tuple[float, float] = (0.2, 0.6),
    min_acks: int = 0,
):
    """Writers SIGKILLed at random for ``seconds``; on a loaded machine the kills go on past that, three times
    less often (so a restarted writer gets past its start-up), until more than ``min_acks`` commits were
    acknowledged (at most three times as long), so the loss check always has enough to look at."""
    acks = [tmp_path / f"acks-{i}.txt" for i in range(workers)]
    rng = random.Random(1234)
    procs = [spawn(["writer", str(acks[i])], subprocess_env(f"wr{i}")) for i in range(workers)]
    kills = 0
    started = time.monotonic()

    def enough() -> bool:
        elapsed = time.monotonic() - started
        if elapsed >= 3 * seconds:
            return True
        return elapsed >= seconds and len(_acked(acks)) > min_acks

    while not enough():
        time.sleep(rng.uniform(*pause) * (1 if time.monotonic() - started < seconds else 3))
        i = rng.randrange(workers)
        procs[i].send_signal(signal.SIGKILL)
        procs[i].wait()
        kills += 1
        procs[i] = spawn(["writer", str(acks[i])], subprocess_env(f"wr{i}-{kills}"))
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return _acked(acks), kills


def _acked(acks: list[Path]) -> set[str]:
    acked: set[str] = set()
    for path in acks:
        if path.exists():
            acked |= {line for line in path.read_text().splitlines() if line}
    return acked


def test_writers_under_sigkill_lose_nothing(subprocess_env, make_settings, tmp_path) -> None:
    settings = make_settings()
    from volume_bootstrap.bootstrap import bootstrap

    bootstrap(settings, run_fsck=False)
    acked, kills = run_writers_with_kills(subprocess_env, tmp_path, seconds=12, min_acks=20)
    assert kills >= 15
    assert len(acked) > 20, "the writers made too little progress to prove anything"
    present = _names(make_settings())
    lost = acked - present
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged commits lost"
    assert integrity_check(settings.db_path) == "ok"
    print(f"acked={len(acked)} present={len(present)} kills={kills}")


def test_kill_during_migration_leaves_old_database(subprocess_env, make_settings) -> None:
    old_database(subprocess_env)
    settings = make_settings()
    before = settings.db_path.read_bytes()
    proc = spawn(["slow-migrate", "30"], subprocess_env("mig"))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "migrated-uncommitted" in line, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert settings.db_path.read_bytes() == before  # nothing half-migrated was published
    assert read_revision(settings.db_path) == "0001_baseline"
    # The next cold start takes over the dead holder's lease and migrates.
    result = subprocess.run(
        WORKER + ["bootstrap"],
        env=subprocess_env("next"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert read_revision(settings.db_path) == head_revision()
    assert integrity_check(settings.db_path) == "ok"


def test_random_kills_during_migration(subprocess_env, make_settings) -> None:
    """Whatever instant the kill lands, the shared file is the old revision or the new one, intact."""
    settings = make_settings()
    rng = random.Random(7)
    for attempt in range(6):
        if settings.db_path.exists():
            settings.db_path.unlink()
        # a new volume each round: the last round's backups would (rightly) make a deleted database a
        # refused library instead of a new volume
        shutil.rmtree(settings.backups_dir, ignore_errors=True)
        old_database(subprocess_env)
        proc = spawn(["bootstrap"], subprocess_env(f"rk{attempt}"))
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert read_revision(settings.db_path) in {"0001_baseline", head_revision()}
        assert integrity_check(settings.db_path) == "ok"
    result = subprocess.run(
        WORKER + ["bootstrap"],
        env=subprocess_env("final"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_paused_holder_that_lost_its_lease_does_not_publish(subprocess_env, make_settings) -> None:
    settings = make_settings()
    from volume_bootstrap.bootstrap import bootstrap

    bootstrap(settings, run_fsck=False)
    holder = spawn(["hold-write", "paused-writer", "1.0"], subprocess_env("holder"))
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    holder.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        peer = VolumeDatabase(make_settings(), expected_revision=head_revision())
        with peer.write() as session:  # waits for the lease to expire (2 s), then takes it over
            session.add(Profile(name="peer-writer"))
        waited = time.monotonic() - started
    finally:
        holder.send_signal(signal.SIGCONT)
    out, _ = holder.communicate(timeout=60)
    assert "conflict" in out, out
    assert holder.returncode == 3
    assert 1.5 <= waited < 30
    assert _names(make_settings()) == {"peer-writer"}


def test_killed_holder_is_taken_over(subprocess_env, make_settings) -> None:
    settings = make_settings()
    from volume_bootstrap.bootstrap import bootstrap

    bootstrap(settings, run_fsck=False)
    holder = spawn(["hold-write", "never", "60"], subprocess_env("dead"))
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    peer = VolumeDatabase(make_settings(), expected_revision=head_revision())
    with peer.write() as session:
        session.add(Profile(name="after-kill"))
    assert time.monotonic() - started < settings.lease_seconds + 5
    assert _names(make_settings()) == {"after-kill"}


def bindfs_available() -> bool:
    return bool(shutil.which("bindfs")) and os.path.exists("/dev/fuse") and os.geteuid() == 0


@pytest.mark.fuse
@pytest.mark.skipif(
    not bindfs_available(), reason="bindfs/FUSE not available (apt-get install bindfs)"
)
def test_writers_over_two_bindfs_aliases(tmp_path, subprocess_env) -> None:
    """Two FUSE mounts of one folder have separate lock tables, like two hosts on one volume."""
    backing, alias_a, alias_b = tmp_path / "backing", tmp_path / "a", tmp_path / "b"
    for path in (backing, alias_a, alias_b):
        path.mkdir()
    mounted = []
    try:
        for alias in (alias_a, alias_b):
            res = subprocess.run(
                ["bindfs", "--no-allow-other", str(backing), str(alias)],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                pytest.skip(f"bindfs mount failed: {res.stderr.strip()}")
            mounted.append(alias)
        envs = []
        for i in range(4):
            alias = alias_a if i % 2 == 0 else alias_b
            envs.append(subprocess_env(f"fuse{i}", VOICEBOX_VOLUME=str(alias)))
        boot = subprocess.run(
            WORKER + ["bootstrap"],
            env=envs[0],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stderr
        acks = [tmp_path / f"fuse-acks-{i}.txt" for i in range(4)]
        procs = [spawn(["writer", str(acks[i])], envs[i]) for i in range(4)]
        rng = random.Random(99)
        kills = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 0.8))
            i = rng.randrange(4)
            procs[i].send_signal(signal.SIGKILL)
            procs[i].wait()
            kills += 1
            procs[i] = spawn(["writer", str(acks[i])], envs[i])
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        acked = set()
        for path in acks:
            if path.exists():
                acked |= set(path.read_text().split())
        settings = load_settings(
            {"VOICEBOX_VOLUME": str(backing), "VOICEBOX_LOCAL_DIR": str(tmp_path / "verify")}
        )
        present = _names(settings)
        assert acked and not (acked - present)
        assert integrity_check(settings.db_path) == "ok"
    finally:
        for alias in mounted:
            subprocess.run(["fusermount", "-u", str(alias)], capture_output=True)
            subprocess.run(["umount", "-l", str(alias)], capture_output=True)
