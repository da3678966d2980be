"""Benchmark: a fresh ``scripts/run-local.sh`` to its first answer, phase by phase.

Why: the README promises the first answer of the local worker within 10 s of ``scripts/run-local.sh`` once the
venv exists, and a RunPod cold start bills the same phases. This starts the script as a user would (the demo
models, a fresh volume; the first start builds the models into it, later starts reuse them) and reports for each
start the wall time to the first ``/runsync`` answer and the worker's own ``cold_start`` phase line
(``bootstrap``, ``engines``, ``app``, ``server``, ``sdk``). The import phases inside ``engines`` are measured
separately, in fresh interpreters (torch, transformers' model code, qwen_tts with librosa/numba/scipy, Whisper's
classes, the RunPod SDK), and so is the first generation after a start (voice prompt + synthesis, a job).

The machine's load average is printed with every figure: on a shared 2-core machine the same start takes 6 s or
15 s depending on what runs beside it, so read the best and the median together with the load.

    python -m bench.bench_cold_start            # 1 + 5 starts, 3 import breakdowns
    python -m bench --only cold_start --short   # 1 + 1 starts, 1 import breakdown (CI)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: run in a fresh interpreter: each step's seconds, in order (the later steps reuse what the earlier imported)
IMPORT_STEPS = r"""
import gc, json, sys, time
gc.disable()  # as the worker's cold start does (backend/serverless/fast_start.py)
steps = {}
def step(name, fn):
    started = time.perf_counter(); fn(); steps[name] = round(time.perf_counter() - started, 3)
step("python + backend.config", lambda: __import__("backend.config"))
step("torch", lambda: __import__("torch"))
step("transformers (model code)", lambda: __import__("transformers.modeling_utils"))
def qwen():
    from backend.engines.qwen import import_qwen_tts
    import_qwen_tts()
step("qwen_tts (librosa, numba, scipy)", qwen)
def whisper():
    from transformers import WhisperForConditionalGeneration, WhisperProcessor  # noqa: F401
step("whisper classes", whisper)
step("app (fastapi, services)", lambda: (__import__("backend.app"), __import__("backend.services.container")))
step("runpod SDK (+ cpuinfo probe)", lambda: __import__("runpod"))
print(json.dumps(steps))
"""


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _runsync(url: str, job: dict, timeout: float) -> dict:
    request = urllib.request.Request(
        f"{url}/runsync",
        data=json.dumps({"input": job}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _wav(path: Path, seconds: float = 3.0, rate: int = 24_000) -> None:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def _first_generation(url: str, workdir: Path) -> float:
    """A profile with one sample, then one short generation as a job: the seconds of the generate job."""
    import base64

    profile = _runsync(url, {"path": "/profiles", "body": {"name": "Bench"}}, 60)
    profile_id = profile["output"]["body"]["id"]
    _wav(workdir / "ref.wav")
    sample = base64.b64encode((workdir / "ref.wav").read_bytes()).decode()
    _runsync(
        url,
        {
            "path": f"/profiles/{profile_id}/samples",
            "files": {"file": {"filename": "ref.wav", "content_base64": sample}},
            "form": {"reference_text": "A short reference sentence."},
        },
        120,
    )
    started = time.perf_counter()
    answer = _runsync(
        url,
        {
            "path": "/generate",
            "body": {"profile_id": profile_id, "text": "Hello there."},
            "inline_audio": True,  # the job ends with the audio, not with a queued generation
        },
        300,
    )
    output = answer.get("output") or {}
    if answer.get("status") != "COMPLETED" or output.get("status_code", 500) >= 400:
        raise RuntimeError(f"the first generation failed: {str(answer)[:500]}")
    return time.perf_counter() - started


def start_once(workdir: Path, *, generate: bool = False, timeout: float = 300) -> dict[str, Any]:
    """``scripts/run-local.sh`` on ``workdir/volume``: seconds to the first answer, its phase line, the load."""
    port = _free_port()
    log = workdir / f"run-local-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEBOX_", "RUNPOD_"))}
    env.update(
        PORT=str(port),
        VOICEBOX_VOLUME=str(workdir / "volume"),
        VOICEBOX_LOCAL_DIR=str(workdir / "local"),
    )
    load = _load()
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "run-local.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"run-local.sh exited:\n{log.read_text()[-2000:]}")
            try:
                answer = _runsync(url, {"method": "GET", "path": "/health"}, 10)
            except OSError:
                answer = {}
            if answer.get("status") == "COMPLETED":
                break
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"no answer within {timeout} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        first_answer = time.perf_counter() - started
        result: dict[str, Any] = {"first_answer_s": round(first_answer, 2), "load": load}
        line = next(
            (x for x in log.read_text().splitlines() if x.startswith('{"event": "cold_start"')),
            None,
        )
        if line:
            fields = json.loads(line)
            result["phases_s"] = fields["phases_s"]
            result["ready_s"] = fields["total_s"]
            result["cpu_s"] = fields.get("cpu_s")
        if generate:
            result["first_generation_s"] = round(_first_generation(url, workdir), 2)
        return result
    finally:
        _stop(process)


def import_breakdown() -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_STEPS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(short: bool = False) -> list[dict]:
    warm_starts = 1 if short else 5
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        first = start_once(workdir)
        rows.append(
            {
                "bench": "run-local.sh to first answer",
                "case": "fresh volume: copies the demo models setup-venv prebuilt",
                "p50_ms": round(first["first_answer_s"] * 1000),
                "ratio": 1.0,
                "load": first["load"],
                "ready_s": first.get("ready_s"),
                "cpu_s": first.get("cpu_s"),
                **{f"{name}_s": value for name, value in first.get("phases_s", {}).items()},
            }
        )
        starts = [start_once(workdir, generate=(i == 0)) for i in range(warm_starts)]
        times = [s["first_answer_s"] for s in starts]
        median = statistics.median(times)
        phases = {
            name: round(statistics.median(s["phases_s"][name] for s in starts), 3)
            for name in starts[0].get("phases_s", {})
        }
        rows.append(
            {
                "bench": "run-local.sh to first answer",
                "case": f"warm volume, {warm_starts} starts",
                "p50_ms": round(median * 1000),
                "ratio": round(median / first["first_answer_s"], 2),
                "best_s": min(times),
                "max_s": max(times),
                "loads": "/".join(str(s["load"]) for s in starts),
                "ready_s_p50": statistics.median(s.get("ready_s", 0.0) for s in starts),
                "cpu_s_p50": statistics.median(s.get("cpu_s") or 0.0 for s in starts),
                **{f"{name}_s": value for name, value in phases.items()},
            }
        )
        rows.append(
            {
                "bench": "first generation after a cold start",
                "case": "voice prompt + 'Hello there.', one job",
                "p50_ms": round(starts[0]["first_generation_s"] * 1000),
                "ratio": round(starts[0]["first_generation_s"] / starts[0]["first_answer_s"], 2),
                "load": _load(),
            }
        )
    breakdowns = [import_breakdown() for _ in range(1 if short else 3)]
    total = statistics.median(sum(b.values()) for b in breakdowns)
    for name in breakdowns[0]:
        value = statistics.median(b[name] for b in breakdowns)
        rows.append(
            {
                "bench": "cold-start import",
                "case": name,
                "p50_ms": round(value * 1000),
                "ratio": round(value / total, 2),
                "load": _load(),
            }
        )
    return rows


if __name__ == "__main__":
    short = "--short" in sys.argv[1:]
    for row in run(short=short):
        print(json.dumps(row))
