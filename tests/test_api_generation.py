"""Generation, transcription, models and exports routes over HTTP (fake engines), and a worker killed
mid-generation whose row is recovered after its lease expires — not before.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.db.models import Generation
from backend.db.volume_db import VolumeDatabase
from backend.engines.fake import FAKE_TRANSCRIPT
from backend.services.container import Services
from migrations.runner import head_revision
from tests.support.api import audio_bytes
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.fsck import fsck_volume

#: API tests run on the volume's SQLite and on PostgreSQL
pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def worker(api_settings):
    services = Services.for_worker(api_settings)
    with TestClient(
        create_app(api_settings, services=services), raise_server_exceptions=False
    ) as c:
        c.services = services  # type: ignore[attr-defined]
        yield c
    services.close()


def profile_with_sample(client: TestClient, name: str = "Narrator") -> str:
    pid = client.post("/profiles", json={"name": name}).json()["id"]
    r = client.post(
        f"/profiles/{pid}/samples",
        files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "hello there, this is my voice"},
    )
    assert r.status_code == 200, r.text
    return pid


def decode(data: bytes) -> tuple[int, float]:
    audio, rate = soundfile.read(io.BytesIO(data))
    return rate, len(audio) / rate


def test_generate_async_contract_then_audio(worker) -> None:
    pid = profile_with_sample(worker)
    r = worker.post("/generate", json={"profile_id": pid, "text": "Hello there. How are you?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "generating" and body["id"]
    deadline = time.monotonic() + 30
    while True:
        status = worker.get(f"/generate/{body['id']}/status?stream=false").json()
        if status["status"] != "generating" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["status"] == "completed" and status["duration"] > 0
    audio = worker.get(f"/audio/{body['id']}")
    assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/wav")
    rate, seconds = decode(audio.content)
    assert rate == 24000 and seconds == pytest.approx(status["duration"], rel=1e-3)
    history = worker.get("/history").json()
    assert history["items"][0]["profile_name"] == "Narrator"
    assert not history["items"][0]["audio_path"].startswith("/")


def test_generate_wait_and_sse_status(worker) -> None:
    pid = profile_with_sample(worker)
    r = worker.post(
        "/generate?wait=true", json={"profile_id": pid, "text": "Wait for me.", "seed": 3}
    )
    assert r.json()["status"] == "completed"
    with worker.stream("GET", f"/generate/{r.json()['id']}/status") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert events and events[-1]["status"] == "completed"


def test_same_seed_same_audio_bytes(worker) -> None:
    pid = profile_with_sample(worker)
    req = {"profile_id": pid, "text": "Deterministic output.", "seed": 1234}
    a = worker.post("/generate?wait=true", json=req).json()
    b = worker.post("/generate?wait=true", json=req).json()
    assert worker.get(f"/audio/{a['id']}").content == worker.get(f"/audio/{b['id']}").content


def test_long_text_is_chunked_never_truncated(worker) -> None:
    pid = profile_with_sample(worker)
    sentence = "This sentence is part of a long text that must be spoken in full. "
    text = (sentence * 50)[:3000]
    stats = worker.services.engines.stats  # type: ignore[attr-defined]
    before = stats.chunks
    r = worker.post("/generate?wait=true", json={"profile_id": pid, "text": text})
    assert r.json()["status"] == "completed", r.text
    assert stats.chunks - before >= 4
    short = worker.post("/generate?wait=true", json={"profile_id": pid, "text": sentence}).json()
    assert r.json()["duration"] > 30 * short["duration"]  # every chunk is in the audio


def test_request_id_header_makes_a_retried_job_idempotent(worker) -> None:
    pid = profile_with_sample(worker)
    headers = {"X-Request-Id": "runpod-job-1"}
    a = worker.post(
        "/generate?wait=true", json={"profile_id": pid, "text": "once"}, headers=headers
    )
    b = worker.post(
        "/generate?wait=true", json={"profile_id": pid, "text": "once"}, headers=headers
    )
    assert a.json()["id"] == b.json()["id"]
    assert worker.get("/history").json()["total"] == 1


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"profile_id": "missing", "text": "hi"}, 404, "not found"),
        ({"text": "hi"}, 422, "profile_id"),
        ({"profile_id": "x", "text": ""}, 422, "text"),
        ({"profile_id": "x", "text": "a" * 50001}, 422, "text"),
        ({"profile_id": "x", "text": "hi", "language": "xx"}, 422, "language"),
        ({"profile_id": "x", "text": "hi", "seed": -1}, 422, "seed"),
        ({"profile_id": "x", "text": "hi", "max_chunk_chars": 10}, 422, "max_chunk_chars"),
    ],
)
def test_generate_bad_input(worker, payload, status, needle) -> None:
    r = worker.post("/generate", json=payload)
    assert r.status_code == status
    assert needle in r.text


def test_generate_profile_without_samples_is_400(worker) -> None:
    pid = worker.post("/profiles", json={"name": "Empty"}).json()["id"]
    r = worker.post("/generate", json={"profile_id": pid, "text": "hi"})
    assert r.status_code == 400 and "no samples" in r.json()["detail"]


def test_cancel_and_retry_rules(worker) -> None:
    pid = profile_with_sample(worker)
    done = worker.post("/generate?wait=true", json={"profile_id": pid, "text": "done"}).json()
    cancel = worker.post(f"/generate/{done['id']}/cancel")
    assert cancel.status_code == 409 and "already completed" in cancel.json()["detail"]
    retry = worker.post(f"/generate/{done['id']}/retry")
    assert retry.status_code == 409 and "only failed generations" in retry.json()["detail"]
    assert worker.get(f"/history/{done['id']}").json()["status"] == "completed"  # nothing written
    assert worker.post("/generate/nope/cancel").status_code == 404
    assert worker.get("/generate/nope/status?stream=false").status_code == 404


def test_transcribe(worker) -> None:
    r = worker.post("/transcribe", files={"file": ("a.wav", audio_bytes(4.0), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json() == {"text": FAKE_TRANSCRIPT, "duration": pytest.approx(4.0, rel=1e-3)}
    bad = worker.post("/transcribe", files={"file": ("a.wav", b"not audio", "audio/wav")})
    assert bad.status_code == 400
    assert worker.post("/transcribe", data={"language": "en"}).status_code in (400, 422)


def test_models_routes(worker) -> None:
    status = worker.get("/models/status").json()
    assert status["engines"]["tts"]["model"] == "fake"
    assert status["engines"]["tts"]["loaded"] is False
    assert worker.post("/models/load").json()["status"]["tts"]["loaded"] is True
    assert worker.post("/models/unload").status_code == 200
    assert worker.get("/models/status").json()["engines"]["tts"]["loaded"] is False


def test_exports_by_name_only(worker, api_settings) -> None:
    (api_settings.exports_dir / "spilled.wav").write_bytes(audio_bytes(1.0))
    r = worker.get("/exports/spilled.wav")
    assert r.status_code == 200 and r.headers["content-type"].startswith("audio/wav")
    assert worker.get("/exports/missing.zip").status_code == 404
    assert worker.get("/exports/..%2Fdb%2Fvoicebox.db").status_code in (400, 404)
    assert worker.get("/exports/.hidden").status_code == 422  # the spec's name pattern


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_worker_killed_mid_generation_is_recovered_after_lease_not_before(
    tmp_path, volume_dir, subprocess_env, make_settings
) -> None:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    port = free_port()
    env = subprocess_env("doomed", VOICEBOX_JOB_LEASE_SECONDS="4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.slow_worker", str(port)], env=env, cwd=ROOT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        pid = httpx.post(base + "/profiles", json={"name": "Doomed"}).json()["id"]
        httpx.post(
            base + f"/profiles/{pid}/samples",
            files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
            data={"reference_text": "reference"},
            timeout=30,
        ).raise_for_status()
        gen = httpx.post(base + "/generate", json={"profile_id": pid, "text": "never"}).json()
        assert gen["status"] == "generating"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    peer = VolumeDatabase(make_settings(), expected_revision=head_revision())
    early = fsck_volume(peer.settings, peer, repair=True)
    assert gen["id"] not in early.expired_failed  # its owner's lease has not expired yet
    with peer.read() as session:
        assert session.get(Generation, gen["id"]).status == "generating"
    time.sleep(4.5)
    late = fsck_volume(peer.settings, peer, repair=True)
    assert late.expired_failed == [gen["id"]]
    with peer.read() as session:
        row = session.get(Generation, gen["id"])
        assert row.status == "failed" and "doomed" in row.error


def test_empty_request_id_header_is_no_id(worker) -> None:
    pid = profile_with_sample(worker)
    for _ in range(2):
        r = worker.post(
            "/generate?wait=true",
            json={"profile_id": pid, "text": "x"},
            headers={"X-Request-Id": ""},
        )
        assert r.status_code == 200, r.text
    assert worker.get("/history").json()["total"] == 2
