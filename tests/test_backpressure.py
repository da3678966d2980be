"""Back-pressure: a bounded generation queue answers 429 + Retry-After when full, and /health never waits
behind generation (its own pool; generations wait without holding a request thread)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.services.container import Services
from tests.support.api import api_settings_for, audio_bytes, fresh_volume

ROOT = Path(__file__).resolve().parents[1]


def _profile_with_sample(client) -> str:  # type: ignore[no-untyped-def]
    pid = client.post("/profiles", json={"name": "Voice", "language": "en"}).json()["id"]
    r = client.post(
        f"/profiles/{pid}/samples",
        files={"file": ("ref.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "This is a reference clip."},
    )
    assert r.status_code == 200, r.text
    return pid


def test_full_queue_answers_429_and_frees_its_slots(
    tmp_path: Path,
    volume_template: Path,
) -> None:
    volume = fresh_volume(volume_template, tmp_path / "volume")
    settings = api_settings_for(volume, tmp_path / "local", VOICEBOX_MAX_QUEUED="2")
    services = Services.for_worker(settings)
    release = threading.Event()
    real = services.engines.synthesize_detailed

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        release.wait(30)
        return real(*args, **kwargs)

    services.engines.synthesize_detailed = slow  # type: ignore[method-assign]
    try:
        with TestClient(create_app(settings, services=services)) as client:
            pid = _profile_with_sample(client)
            body = {"profile_id": pid, "text": "Queued."}
            first = client.post("/generate", json=body, headers={"X-Request-Id": "job-1"})
            second = client.post("/generate", json=body)
            assert first.status_code == second.status_code == 200
            full = client.post("/generate", json=body)
            assert full.status_code == 429 and int(full.headers["Retry-After"]) > 0
            assert "VOICEBOX_MAX_QUEUED=2" in full.json()["detail"]
            # a retried job with a known request id answers its first attempt, queue full or not
            again = client.post("/generate", json=body, headers={"X-Request-Id": "job-1"})
            assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
            assert client.get("/health").status_code == 200
            release.set()
            for gen in (first.json()["id"], second.json()["id"]):
                services.generation.wait(gen, 30)
            deadline = time.monotonic() + 10
            while services.generation.pending and time.monotonic() < deadline:
                time.sleep(0.05)
            assert services.generation.pending == 0
            assert client.post("/generate?wait=true", json=body).json()["status"] == "completed"
    finally:
        release.set()
        services.close()


def test_runpod_concurrency_never_exceeds_the_queue(make_settings) -> None:
    from backend.serverless.launcher import concurrency_modifier

    assert (
        concurrency_modifier(make_settings(VOICEBOX_CONCURRENCY="8", VOICEBOX_MAX_QUEUED="3"))(1)
        == 3
    )
    assert (
        concurrency_modifier(make_settings(VOICEBOX_CONCURRENCY="2", VOICEBOX_MAX_QUEUED="9"))(1)
        == 2
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_fifty_concurrent_generations_some_429_health_stays_fast(tiny_models, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    tiny_models.copy_cache_to(volume)
    settings = tiny_models.settings(volume, VOICEBOX_LOCAL_DIR=str(tmp_path / "local"))
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "VOICEBOX_VOLUME": str(volume),
            "VOICEBOX_LOCAL_DIR": str(tmp_path / "local"),
            "VOICEBOX_TTS_MODEL": settings.tts_model,
            "VOICEBOX_STT_MODEL": settings.stt_model,
            "VOICEBOX_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    # its own process: the callers' 50 threads must not share the server's interpreter lock
    server = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as client:
            pid = _profile_with_sample(client)
            client.post("/generate?wait=true", json={"profile_id": pid, "text": "Warm up."})
        results: list[httpx.Response] = []
        health_ms: list[float] = []
        stop = threading.Event()

        def poll_health() -> None:
            with httpx.Client(base_url=base, timeout=10) as poller:
                while not stop.is_set():
                    started = time.perf_counter()
                    r = poller.get("/health")
                    health_ms.append((time.perf_counter() - started) * 1000)
                    assert r.status_code == 200
                    time.sleep(0.02)

        def generate(i: int) -> None:
            with httpx.Client(base_url=base, timeout=300) as c:
                body = {"profile_id": pid, "text": f"Sentence number {i}.", "seed": i}
                results.append(c.post("/generate?wait=true", json=body))

        poller = threading.Thread(target=poll_health)
        poller.start()
        callers = [threading.Thread(target=generate, args=(i,)) for i in range(50)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(300)
        stop.set()
        poller.join(30)
        codes = Counter(r.status_code for r in results)
        assert set(codes) <= {200, 429} and codes[429] > 0 and codes[200] > 0, codes
        assert all(r.headers.get("Retry-After") for r in results if r.status_code == 429)
        done = [r.json() for r in results if r.status_code == 200]
        assert all(g["status"] == "completed" for g in done)
        with httpx.Client(base_url=base, timeout=60) as client:
            for g in done:  # nothing lost: each acknowledged generation has its row and its audio
                assert client.get(f"/history/{g['id']}").json()["status"] == "completed"
                assert client.get(f"/audio/{g['id']}").status_code == 200
        assert len(health_ms) > 10
        ranked = sorted(health_ms)
        print(
            f"health: {len(ranked)} calls, p50 {ranked[len(ranked) // 2]:.1f} ms, "
            f"max {ranked[-1]:.1f} ms; answers {dict(codes)}"
        )
        # 100 ms is the promise for the typical call; a starved CPU adds scheduler noise to the tail (measured
        # on the 2-core box: p50 7-13 ms, max 131 ms at load 3.5; p95 283 ms and max 812 ms with two test runs
        # beside it). Before the fix every call queued behind the waiting generations: up to 19 s, which each
        # bound below still tells apart.
        p50, p95 = ranked[len(ranked) // 2], ranked[int(len(ranked) * 0.95)]
        assert p50 < 100 and p95 < 1000 and ranked[-1] < 5000, (p50, ranked[-5:])
    finally:
        server.kill()
        server.wait(30)
