"""A real local worker for tests that talk to it as a user would: ``scripts/run-local.sh`` on a free port.

The worker runs the demo models (built once into the fixture's volume by the worker itself), through the RunPod
SDK's local API, exactly as the README's first command starts it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalWorker:
    url: str
    volume: Path
    log: Path
    first_answer_s: float
    process: subprocess.Popen

    def runsync(self, job_input: dict, timeout: float = 120) -> dict:
        request = urllib.request.Request(
            f"{self.url}/runsync",
            data=json.dumps({"input": job_input}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.load(answer)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_local_worker(workdir: Path, *, timeout: float = 240.0, **env: str) -> LocalWorker:
    """Start ``scripts/run-local.sh`` with a fresh volume under ``workdir``; return once it answered a job."""
    port = free_port()
    volume = workdir / "volume"
    log = workdir / "run-local.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEBOX_", "RUNPOD_"))}
    environ.update(
        {
            "PORT": str(port),
            "VOICEBOX_VOLUME": str(volume),
            "VOICEBOX_LOCAL_DIR": str(workdir / "local"),
            **env,
        }
    )
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "run-local.sh")],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = LocalWorker(f"http://127.0.0.1:{port}", volume, log, 0.0, process)
    deadline = started + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"run-local.sh exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            answer = worker.runsync({"method": "GET", "path": "/health"}, timeout=10)
        except OSError:
            answer = None
        if answer and answer.get("status") == "COMPLETED":
            worker.first_answer_s = time.perf_counter() - started
            return worker
        if time.perf_counter() > deadline:
            worker.stop()
            raise RuntimeError(f"no answer within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
