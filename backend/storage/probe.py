"""``voicebox-worker volume probe``: measure what a real volume guarantees, and say which design assumptions hold.

Why: our research ran on a loopback MooseFS, not on RunPod's volumes. The database design needs only atomic rename
and exclusive create; the probe checks both there, times the operations the design pays for (fsync, rename,
publish), measures lease takeover after a killed holder, and — when two workers run it at the same time on one
volume — whether each sees the other's files and whether POSIX locks cross workers.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from backend.config import Settings
from backend.storage.mounts import mount_info

PEER_WINDOW_SECONDS = 20.0


@dataclass
class ProbeReport:
    volume: str
    worker_id: str
    mount: dict[str, str] | None = None
    checks: dict[str, object] = field(default_factory=dict)
    timings_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    peers: dict[str, object] = field(default_factory=dict)
    verdict: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "volume": self.volume,
            "worker_id": self.worker_id,
            "mount": self.mount,
            "checks": self.checks,
            "timings_ms": self.timings_ms,
            "peers": self.peers,
            "verdict": self.verdict,
        }


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p99": round(p99 * 1000, 3),
        "n": len(ordered),
    }


def exclusive_create_race(folder: Path, rounds: int = 50) -> bool:
    """Eight threads race O_EXCL on one name per round: exactly one must win each time."""
    for _ in range(rounds):
        target = folder / f"excl-{uuid.uuid4().hex}"
        wins: list[int] = []
        barrier = threading.Barrier(8)

        def contender(
            i: int,
            target: Path = target,
            wins: list[int] = wins,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            try:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            wins.append(i)

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        target.unlink(missing_ok=True)
        if len(wins) != 1:
            return False
    return True


def rename_atomicity(folder: Path, seconds: float = 1.5) -> dict[str, object]:
    """A writer replaces a 256 kB file while a reader re-opens it: the reader must only see whole versions."""
    target = folder / "atomic.bin"
    size = 256 * 1024
    target.write_bytes(b"\x00" * size)
    stop = threading.Event()
    torn = 0
    reads = 0

    def writer() -> None:
        version = 0
        while not stop.is_set():
            version = (version + 1) % 250
            tmp = folder / f"atomic.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(bytes([version + 1]) * size)
            os.replace(tmp, target)

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = target.read_bytes()
        reads += 1
        if len(data) != size or data.count(data[:1]) != size:
            torn += 1
    stop.set()
    thread.join()
    target.unlink(missing_ok=True)
    return {"reads": reads, "torn": torn, "ok": torn == 0}


def op_latencies(folder: Path, rounds: int) -> dict[str, dict[str, float]]:
    create, fsync, rename, unlink = [], [], [], []
    for _ in range(rounds):
        a, b = folder / f"lat-{uuid.uuid4().hex}", folder / f"lat-{uuid.uuid4().hex}"
        t0 = time.perf_counter()
        fd = os.open(a, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        t1 = time.perf_counter()
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        t2 = time.perf_counter()
        os.close(fd)
        os.replace(a, b)
        t3 = time.perf_counter()
        os.unlink(b)
        t4 = time.perf_counter()
        create.append(t1 - t0)
        fsync.append(t2 - t1)
        rename.append(t3 - t2)
        unlink.append(t4 - t3)
    return {
        "create": _percentiles(create),
        "fsync_4k": _percentiles(fsync),
        "rename": _percentiles(rename),
        "unlink": _percentiles(unlink),
    }


def publish_times(settings: Settings, folder: Path, sizes_mb: tuple[int, ...]) -> dict[str, float]:
    """Time the database publish step (backup API → fsync → replace → fsync dir) at several sizes."""
    import sqlite3

    from backend.storage.atomic import publish

    result = {}
    for mb in sizes_mb:
        local = settings.local_dir / f"probe-{mb}.db"
        local.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(local)
        conn.execute("CREATE TABLE IF NOT EXISTS pad (x BLOB)")
        conn.execute("DELETE FROM pad")
        conn.executemany("INSERT INTO pad VALUES (?)", [(os.urandom(1024),)] * (mb * 1000))
        conn.commit()
        conn.close()
        target = folder / f"publish-{mb}.db"
        tmp = folder / f"publish-{mb}.db.tmp"
        started = time.perf_counter()
        src, dst = sqlite3.connect(local), sqlite3.connect(tmp)
        dst.execute("PRAGMA journal_mode=OFF")
        src.backup(dst)
        dst.close()
        src.close()
        publish(tmp, target)
        result[f"{mb}MB"] = round((time.perf_counter() - started) * 1000, 1)
        target.unlink(missing_ok=True)
        local.unlink(missing_ok=True)
    return result


def lease_takeover_seconds(folder: Path, lease_seconds: float = 2.0) -> float:
    """A child process takes the lease and is SIGKILLed; how long until this process gets it."""
    lease_path = folder / "probe.lease"
    code = (
        "import sys, time\nfrom filelock import SoftFileLease\n"
        f"lease = SoftFileLease({str(lease_path)!r}, lease_duration={lease_seconds})\n"
        "lease.acquire()\nprint('held', flush=True)\ntime.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait()
    from filelock import SoftFileLease

    started = time.perf_counter()
    lease = SoftFileLease(str(lease_path), lease_duration=lease_seconds)
    lease.acquire(timeout=lease_seconds * 10 + 30)
    waited = time.perf_counter() - started
    lease.release()
    return round(waited, 3)


def peer_checks(folder: Path, worker_id: str, wait_seconds: float) -> dict[str, object]:
    """Announce ourselves, hold an flock, and look for a peer doing the same within the window."""
    peers_dir = folder / "peers"
    peers_dir.mkdir(exist_ok=True)
    mine = peers_dir / f"{worker_id}.json"
    lock_path = peers_dir / "flock"
    lock_fd = os.open(lock_path, os.O_CREAT | os.O_RDWR)
    got_lock = True
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        got_lock = False
    mine.write_text(json.dumps({"worker": worker_id, "at": time.time(), "holds_flock": got_lock}))
    deadline = time.monotonic() + wait_seconds
    seen: dict[str, dict] = {}
    while time.monotonic() < deadline:
        for path in peers_dir.glob("*.json"):
            if path == mine:
                continue
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if time.time() - float(info.get("at", 0)) < PEER_WINDOW_SECONDS + wait_seconds:
                seen[info["worker"]] = info
        if seen:
            time.sleep(1.5)  # stay visible long enough for the peer's next look
            break
        time.sleep(0.25)
    fcntl.flock(lock_fd, fcntl.LOCK_UN)
    os.close(lock_fd)
    mine.unlink(missing_ok=True)
    if not seen:
        return {"peer_seen": False, "note": "run the probe on two workers at once to test crossing"}
    both_locked = got_lock and any(p.get("holds_flock") for p in seen.values())
    return {
        "peer_seen": True,
        "peers": sorted(seen),
        "flock_crosses_workers": not both_locked,
        "this_worker_got_flock": got_lock,
    }


def run_probe(
    settings: Settings, *, quick: bool = False, peer_wait: float = 0.0, publish: bool = True
) -> ProbeReport:
    folder = settings.data_dir / ".probe" / f"{settings.worker_id}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True, exist_ok=True)
    report = ProbeReport(str(settings.volume), settings.worker_id)
    info = mount_info(settings.volume)
    report.mount = info.as_dict() if info else None
    try:
        report.checks["exclusive_create"] = exclusive_create_race(folder, 10 if quick else 50)
        report.checks["rename_atomic"] = rename_atomicity(folder, 0.5 if quick else 1.5)
        report.timings_ms = op_latencies(folder, 20 if quick else 200)
        if publish:
            sizes = (1,) if quick else (1, 10, 50)
            report.timings_ms["publish"] = publish_times(settings, folder, sizes)
        report.checks["lease_takeover_seconds"] = lease_takeover_seconds(folder)
        report.peers = peer_checks(settings.data_dir / ".probe", settings.worker_id, peer_wait)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    report.verdict = verdict(report)
    return report


def verdict(report: ProbeReport) -> dict[str, str]:
    out = {}
    out["exclusive_create"] = "holds" if report.checks.get("exclusive_create") else "BROKEN"
    rename = report.checks.get("rename_atomic", {})
    out["atomic_rename"] = "holds" if isinstance(rename, dict) and rename.get("ok") else "BROKEN"
    out["leased_snapshot_swap"] = (
        "safe: the volume gives what the database design needs"
        if out["exclusive_create"] == "holds" and out["atomic_rename"] == "holds"
        else "UNSAFE: run with one worker (max workers = 1) until this is understood"
    )
    peers = report.peers
    if peers.get("peer_seen"):
        out["posix_locks_cross_workers"] = (
            "yes" if peers.get("flock_crosses_workers") else "NO (locks are local to each worker)"
        )
    else:
        out["posix_locks_cross_workers"] = "unknown (no peer ran the probe at the same time)"
    return out
