"""The worker as RunPod runs it: subprocesses, the SDK's local modes and its production loop.

Two workers are driven: the stub (the real launcher and SDK around the stand-in app; always runs) and the real
``python -m backend.serverless_handler`` with the fake engines (skipped, with the reason, until ``backend.app``
is importable). Every wait is bounded; worker output goes to a file that failures print.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.audio import wav_bytes
from tests.support.serverless import (
    REAL,
    REPO,
    STUB,
    MockJobServer,
    b64,
    big_bytes,
    real_app_available,
    runsync,
    serve_api,
    spawn,
    worker_env,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

_REAL_OK, _REAL_WHY = real_app_available()
needs_real_app = pytest.mark.skipif(not _REAL_OK, reason=f"real worker: {_REAL_WHY}")


def answer(result: dict) -> dict:
    """The one answer of an ordinary job. With the plain handler (the default) the output is the answer; with
    the generator handler (``VOICEBOX_STREAM_JOBS=1``) RunPod aggregates what it yields: ``[answer]``."""
    output = result["output"]
    if isinstance(output, list):
        assert len(output) == 1, result
        return output[0]
    assert isinstance(output, dict), result
    return output


def _run(
    cmd: list[str], env: dict[str, str], *args: str, timeout: float = 90
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def _cold_start_line(output: str) -> dict:
    line = next(x for x in output.splitlines() if x.startswith('{"event": "cold_start"'))
    return json.loads(line)


# -- --test_input -------------------------------------------------------------------------------------------


def test_test_input_exit_codes(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "vol")
    ok = _run(
        STUB, env, "--test_input", json.dumps({"input": {"method": "GET", "path": "/health"}})
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    line = _cold_start_line(ok.stdout)
    assert set(line["phases_s"]) == {"bootstrap", "engines", "app", "server", "sdk"}
    assert line["cpu_s"] > 0 and line["total_s"] > 0
    bad = _run(STUB, env, "--test_input", json.dumps({"input": {"method": "GET"}}))
    assert bad.returncode == 1
    assert "input.path" in bad.stdout + bad.stderr
    # No flag: the SDK reads ./test_input.json (the repo's health job).
    default = _run(STUB, env)
    assert default.returncode == 0, default.stdout + default.stderr
    assert json.loads((REPO / "test_input.json").read_text())["input"]["path"] == "/health"


# -- cold-start failures: one clear line, non-zero, fast ----------------------------------------------------


def test_never_ready_exits_non_zero(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "vol", STUB_READY_DELAY="30", VOICEBOX_READY_TIMEOUT_SECONDS="1")
    started = time.monotonic()
    done = _run(STUB, env, "--test_input", '{"input": {"path": "/health"}}', timeout=30)
    assert done.returncode == 1
    assert time.monotonic() - started < 20
    assert "was not ready within 1 s" in done.stderr
    assert "Starting Serverless Worker" not in done.stdout  # the SDK never took a job


def test_port_in_use_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = worker_env(tmp_path / "vol", port=holder.getsockname()[1])
        done = _run(STUB, env, "--test_input", '{"input": {"path": "/health"}}', timeout=30)
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1" in done.stderr


def test_bad_setting_exits_non_zero(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "vol", VOICEBOX_CONCURRENCY="many")
    done = _run(STUB, env, "--test_input", '{"input": {"path": "/health"}}', timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("voicebox-worker: bad setting: ")


# -- --rp_serve_api ------------------------------------------------------------------------------------------


def test_rp_serve_api_stub(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    env = worker_env(volume, VOICEBOX_RESULT_BUDGET_MB="0.1")
    with serve_api(STUB, env, tmp_path / "worker.log") as base:
        health = runsync(base, {"method": "GET", "path": "/health"})
        assert health["status"] == "COMPLETED"
        assert answer(health)["body"]["status"] == "healthy"
        wav = wav_bytes(0.3)
        upload = runsync(
            base,
            {
                "path": "/upload",
                "files": {"file": {"filename": "a.wav", "content_base64": b64(wav)}},
                "form": {"reference_text": "hi"},
            },
        )
        assert answer(upload)["body"]["files"][0]["sha256"] == hashlib.sha256(wav).hexdigest()
        spilled = runsync(base, {"method": "GET", "path": "/big", "params": {"size": 500_000}})
        export = answer(spilled)["export"]
        data = (volume / "voicebox" / "exports" / export["name"]).read_bytes()
        assert data == big_bytes(500_000) and export["sha256"] == hashlib.sha256(data).hexdigest()
        refused = runsync(base, {"method": "GET", "path": f"//127.0.0.1:{1}/"})
        # the plain handler (the default) fails the job with the envelope's error
        assert refused["status"] == "FAILED" and refused["error"].startswith("input.path")
    log = (tmp_path / "worker.log").read_text()
    assert base64.b64encode(wav).decode()[:40] not in log  # no base64 in the logs


# -- the SDK's production loop against a mock job server ------------------------------------------------------


def _production(cmd: list[str], tmp_path: Path, jobs: dict[str, dict], **env_extra: str):
    mock = MockJobServer()
    volume = tmp_path / "vol"
    env = worker_env(volume, **mock.env(), **env_extra)
    worker = spawn(cmd, env, tmp_path / "worker.log")
    try:
        for job_id, job_input in jobs.items():
            mock.submit(job_id, job_input)
        results = mock.wait_results(list(jobs), timeout=60)
        return results, worker, volume, mock
    except BaseException:
        worker.stop()
        mock.close()
        raise


def test_production_loop_stub(tmp_path: Path) -> None:
    jobs = {
        "j-health": {"method": "GET", "path": "/health"},
        "j-upload": {
            "path": "/upload",
            "files": {"file": {"filename": "s.wav", "content_base64": b64(wav_bytes(0.2))}},
        },
        "j-big": {"method": "GET", "path": "/big", "params": {"size": 400_000}},
        "j-inline-only": {
            "method": "GET",
            "path": "/big",
            "params": {"size": 400_000},
            "inline_only": True,
        },
        "j-bad": {"method": "GET", "path": "@evil.example/"},
        "j-admin": {"path": "/models/unload"},
        "j-404": {"method": "GET", "path": "/audio/missing"},
    }
    results, worker, volume, mock = _production(
        STUB, tmp_path, jobs, VOICEBOX_RESULT_BUDGET_MB="0.1", VOICEBOX_CONCURRENCY="2"
    )
    try:
        assert set(results) == set(jobs), worker.output()
        assert answer(results["j-health"])["body"]["status"] == "healthy"
        assert answer(results["j-upload"])["body"]["files"][0]["filename"] == "s.wav"
        export = answer(results["j-big"])["export"]
        assert (volume / "voicebox" / "exports" / export["name"]).read_bytes() == big_bytes(400_000)
        assert len(json.dumps(results["j-big"])) < 100 * 1024
        assert "inline budget" in results["j-inline-only"]["error"]
        assert results["j-bad"]["error"].startswith("input.path")
        assert "admin route" in results["j-admin"]["error"]
        assert answer(results["j-404"])["status_code"] == 404 and "error" not in results["j-404"]
        assert all("/w1?x=1&" in t and "job_in_progress=" in t for t in mock.takes)
    finally:
        code = worker.stop()
        mock.close()
    assert code == 0, worker.output()  # SIGTERM: the SDK drains, the launcher stops the server


def test_watchdog_exits_when_server_dies(tmp_path: Path) -> None:
    results, worker, _, mock = _production(STUB, tmp_path, {"j-crash": {"path": "/__crash"}})
    try:
        assert answer(results["j-crash"])["body"] == {"crashing": True}
        worker.proc.wait(20)
        assert worker.proc.returncode == 1
        assert "stopped" in worker.output() and "exiting" in worker.output()
    finally:
        worker.stop()
        mock.close()


# -- the real worker (fake engines) ------------------------------------------------------------------------------


@needs_real_app
def test_real_test_input(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "vol")
    done = _run(
        REAL, env, "--test_input", json.dumps({"input": {"method": "GET", "path": "/health"}})
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _cold_start_line(done.stdout)["bootstrap_phases_s"]


@needs_real_app
def test_real_rp_serve_api_flow(tmp_path: Path) -> None:
    """Health, a profile with a base64 sample, generate (inline audio), a stream job, download audio, bundle
    round trip — with the generator handler, so ordinary outputs are ``[answer]`` and stream jobs stream."""
    env = worker_env(tmp_path / "vol", VOICEBOX_STREAM_JOBS="1")
    with serve_api(REAL, env, tmp_path / "worker.log", timeout=120) as base:
        assert (
            answer(runsync(base, {"method": "GET", "path": "/health"}))["body"]["status"]
            == "healthy"
        )
        made = runsync(base, {"path": "/profiles", "body": {"name": "Ada", "language": "en"}})
        assert answer(made)["status_code"] in {200, 201}, made
        pid = answer(made)["body"]["id"]
        sample = runsync(
            base,
            {
                "path": f"/profiles/{pid}/samples",
                "files": {
                    "file": {
                        "filename": "s.wav",
                        "content_base64": b64(wav_bytes(3.0)),
                        "content_type": "audio/wav",
                    }
                },
                "form": {"reference_text": "This is my voice."},
            },
        )
        assert answer(sample)["status_code"] in {200, 201}, sample
        gen = runsync(
            base,
            {
                "path": "/generate",
                "body": {"profile_id": pid, "text": "Hello."},
                "inline_audio": True,
            },
            timeout=120,
        )
        out = answer(gen)
        assert out["status_code"] == 200, gen
        assert base64.b64decode(out["audio"]["body_base64"])[:4] == b"RIFF"
        # a stream job through the SDK's own /run + /stream (the generator handler, real SDK)
        import httpx

        job = httpx.post(
            f"{base}/run",
            json={
                "input": {"path": "/generate/stream", "body": {"profile_id": pid, "text": "Hi."}}
            },
            timeout=30,
        ).json()
        # (the simulator serves /stream as a POST and runs the whole job inside it)
        streamed = httpx.post(f"{base}/stream/{job['id']}", timeout=120).json()
        items = [entry["output"] for entry in streamed["stream"]]
        data = b"".join(base64.b64decode(i.get("chunk_base64", "")) for i in items)
        assert items[0]["content_type"] == "audio/wav" and data[:4] == b"RIFF"
        assert items[-1]["done"] and items[-1]["size"] == len(data)
        assert items[-1]["sha256"] == hashlib.sha256(data).hexdigest()
        audio = runsync(base, {"method": "GET", "path": f"/audio/{out['body']['id']}"})
        assert answer(audio)["is_binary"] and answer(audio)["content_type"].startswith("audio/")
        bundle = runsync(base, {"method": "GET", "path": f"/profiles/{pid}/export"})
        assert answer(bundle)["is_binary"], bundle
        runsync(base, {"method": "DELETE", "path": f"/profiles/{pid}"})
        imported = runsync(
            base,
            {
                "path": "/profiles/import",
                "files": {
                    "file": {
                        "filename": "ada.zip",
                        "content_base64": answer(bundle)["body_base64"],
                        "content_type": "application/zip",
                    }
                },
            },
        )
        assert answer(imported)["status_code"] in {200, 201}, imported


@needs_real_app
def test_real_production_loop_spills_audio(tmp_path: Path) -> None:
    """The SDK's production loop on the real app: a generation whose audio is over budget lands on the volume."""
    results, worker, volume, mock = _production(
        REAL,
        tmp_path,
        {"j-health": {"method": "GET", "path": "/health"}},
        VOICEBOX_RESULT_BUDGET_MB="0.02",
    )

    def job(job_id: str, job_input: dict) -> dict:
        with mock.done_event:
            mock.results.pop(job_id, None)
        mock.submit(job_id, job_input)
        got = mock.wait_results([job_id], timeout=90)
        assert job_id in got, worker.output()
        return got[job_id]

    try:
        assert answer(results["j-health"])["status_code"] == 200, worker.output()
        made = job("j-profile", {"path": "/profiles", "body": {"name": "Bo", "language": "en"}})
        pid = answer(made)["body"]["id"]
        sample = job(
            "j-sample",
            {
                "path": f"/profiles/{pid}/samples",
                "files": {"file": {"filename": "s.wav", "content_base64": b64(wav_bytes(3.0))}},
                "form": {"reference_text": "This is my voice."},
            },
        )
        assert answer(sample)["status_code"] in {200, 201}, sample
        text = "A sentence long enough to make audio over the tiny budget. " * 3
        gen = job(
            "j-gen",
            {"path": "/generate", "body": {"profile_id": pid, "text": text}, "inline_audio": True},
        )
        audio = answer(gen)["audio"]
        assert audio["spilled"] is True, gen
        data = (volume / "voicebox" / "exports" / audio["export"]["name"]).read_bytes()
        assert data[:4] == b"RIFF" and hashlib.sha256(data).hexdigest() == audio["export"]["sha256"]
        again = job(
            "j-gen",  # RunPod retrying the same job: the same generation, not a second one
            {"path": "/generate", "body": {"profile_id": pid, "text": text}},
        )
        assert answer(again)["body"]["id"] == answer(gen)["body"]["id"]
    finally:
        code = worker.stop()
        mock.close()
    assert code == 0, worker.output()
