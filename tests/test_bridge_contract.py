"""The Voicebox desktop app through the bridge, over the mock RunPod API and the REAL app (fake engines).

What the app sees must have the shapes of its own types (as against ``serve``), and what it does in the
background must cost nothing: an hour of its polling at its real intervals, on a simulated clock, sends **0**
RunPod jobs. Generation goes through ``/run`` + ``/status`` (progress in the status stream, cancel through
RunPod's ``/cancel``), and audio is served from the bridge's cache with ``Range``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.app import create_app
from backend.client.bridge import answer_response, create_bridge_app
from backend.client.bridge_local import LocalBridge, range_response
from backend.config import Settings
from backend.engines.manager import EngineManager
from backend.services.container import Services
from tests.support.api import audio_bytes
from tests.support.app_contract import POLLS, GatedTTS, shape, shapes, sse_events
from tests.support.runpod_mock import Stack, start_stack

pytestmark = pytest.mark.timeout(120)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stack(tmp_path: Path, api_settings: Settings) -> Iterator[Stack]:
    tts = GatedTTS()
    tts.gate.set()
    services = Services.create(
        api_settings, engines=EngineManager(api_settings, tts_factory=lambda _s: tts)
    )
    app = create_app(api_settings, services=services)
    stack = start_stack(tmp_path, app=app, settings=api_settings)
    stack.tts = tts  # type: ignore[attr-defined]
    stack.services = services  # type: ignore[attr-defined]
    try:
        yield stack
    finally:
        tts.gate.set()
        stack.mock.stop()
        services.close()


def run(stack: Stack, scenario: Any, *, clock: Clock | None = None, wait: float = 5.0) -> Any:
    client = stack.client()
    local = LocalBridge(
        client,
        poll_interval=0.02,
        generate_wait=wait,
        clock=clock or time.monotonic,
        render=answer_response,
    )
    app = create_bridge_app(client, poll_interval=0.02, local=local)
    stack.local = local  # type: ignore[attr-defined]

    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1:17493",
            timeout=60,
            headers={"Origin": "tauri://localhost"},  # the app's webview always sends its origin
        ) as http:
            return await scenario(http)

    return asyncio.run(go())


def jobs(stack: Stack) -> int:
    return sum(1 for kind, _ in stack.mock.calls if kind in ("run", "runsync"))


async def profile_with_sample(http: httpx.AsyncClient) -> tuple[str, str]:
    profile = shape(
        (await http.post("/profiles", json={"name": "Desk", "language": "en"})).json(),
        "VoiceProfileResponse",
    )
    r = await http.post(
        f"/profiles/{profile['id']}/samples",
        files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "This is my voice."},
    )
    return profile["id"], shape(r.json(), "ProfileSampleResponse")["id"]


def test_an_idle_hour_of_the_apps_polling_costs_zero_jobs(stack: Stack) -> None:
    clock = Clock()

    async def scenario(http: httpx.AsyncClient) -> dict[str, int]:
        # startup: what the app loads when it opens (these need the worker: they are real data)
        shape((await http.get("/health")).json(), "HealthResponse")
        assert (await http.get("/profiles")).json() == []
        shape((await http.get("/history")).json(), "HistoryListResponse")
        shape((await http.get("/settings/generation")).json(), "GenerationSettings")
        shapes((await http.get("/channels")).json(), "AudioChannel")
        models = shape((await http.get("/models/status")).json(), "ModelStatusListResponse")
        shapes(models["models"], "ModelStatus")
        assert (await http.get("/stories")).json() == []
        after_startup = jobs(stack)
        calls: dict[str, int] = {}
        for second in range(3600):
            clock.now += 1
            for poll in POLLS:
                if second % poll["every_s"] == 0:
                    r = await http.request(poll["method"], poll["path"])
                    assert r.status_code == 200, (poll["path"], r.text)
                    calls[poll["path"]] = calls.get(poll["path"], 0) + 1
        shape((await http.get("/tasks/active")).json(), "ActiveTasksResponse")
        shape((await http.get("/capture/readiness")).json(), "CaptureReadinessResponse")
        shape((await http.get("/backend/cuda-status")).json(), "CudaStatus")
        shape((await http.get("/health")).json(), "HealthResponse")
        calls["jobs during the hour"] = jobs(stack) - after_startup
        return calls

    calls = run(stack, scenario, clock=clock)
    assert calls.pop("jobs during the hour") == 0
    assert calls["/capture/readiness"] == 720 and calls["/health"] == 120
    assert sum(calls.values()) > 3000


def test_worker_state_is_fetched_again_only_after_a_state_changing_job(stack: Stack) -> None:
    clock = Clock()

    async def scenario(http: httpx.AsyncClient) -> None:
        pid, _ = await profile_with_sample(http)
        first = (await http.get("/models/status")).json()
        assert not any(m["loaded"] for m in first["models"])
        before = jobs(stack)
        clock.now += 3600  # stale, but nothing changed: still no job
        await http.get("/models/status")
        assert jobs(stack) == before
        r = await http.post("/generate", json={"profile_id": pid, "text": "Hi."})
        assert shape(r.json(), "GenerationResponse")["status"] == "completed"
        assert jobs(stack) == before + 1
        fresh = (await http.get("/models/status")).json()  # stale and changed since: one job
        assert jobs(stack) == before + 2
        assert [m["model_name"] for m in fresh["models"] if m["loaded"]] == ["tts-fake"]
        cached = await http.get("/models/status")
        assert cached.headers["x-voicebox-bridge-cache"].startswith("hit")
        clock.now += 3600  # stale again, but nothing changed since: no job
        await http.get("/models/status")
        assert jobs(stack) == before + 2

    run(stack, scenario, clock=clock)


def test_generation_runs_as_a_run_job_with_progress_and_cached_audio_with_range(
    stack: Stack,
) -> None:
    stack.tts.gate.clear()  # type: ignore[attr-defined]

    async def scenario(http: httpx.AsyncClient) -> None:
        pid, sample_id = await profile_with_sample(http)
        r = await http.post("/generate", json={"profile_id": pid, "text": "Hello there."})
        row = shape(r.json(), "GenerationResponse")
        assert row["status"] in ("loading_model", "generating")  # answered before the job ended
        tasks = (await http.get("/tasks/active")).json()
        assert [t["task_id"] for t in shapes(tasks["generations"], "ActiveGenerationTask")] == [
            row["id"]
        ]
        threading.Timer(0.3, stack.tts.gate.set).start()  # type: ignore[attr-defined]
        async with http.stream("GET", f"/generate/{row['id']}/status") as stream:
            assert stream.headers["cache-control"] == "no-cache"
            assert stream.headers["x-accel-buffering"] == "no"
            text = "\n".join([line async for line in stream.aiter_lines()])
        events = shapes(sse_events(text), "GenerationStatusEvent")
        assert events[-1]["status"] == "completed" and events[-1]["duration"] > 0
        assert "generating" in [e["status"] for e in events]  # the job's IN_PROGRESS, live
        history = shape((await http.get(f"/history/{row['id']}")).json(), "HistoryResponse")
        assert history["id"] == row["id"]  # the server used the bridge's id
        before = jobs(stack)
        full = await http.get(f"/audio/{row['id']}")
        part = await http.get(f"/audio/{row['id']}", headers={"Range": "bytes=10-109"})
        tail = await http.get(f"/audio/{row['id']}", headers={"Range": "bytes=-50"})
        beyond = await http.get(f"/audio/{row['id']}", headers={"Range": "bytes=999999999-"})
        assert jobs(stack) == before  # the job brought the audio along: no fetch at all
        assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
        size = len(full.content)
        assert part.status_code == 206 and part.content == full.content[10:110]
        assert part.headers["content-range"] == f"bytes 10-109/{size}"
        assert tail.status_code == 206 and tail.content == full.content[-50:]
        assert beyond.status_code == 416
        sample = await http.get(f"/samples/{sample_id}", headers={"Range": "bytes=0-43"})
        again = await http.get(f"/samples/{sample_id}", headers={"Range": "bytes=44-"})
        assert sample.status_code == 206 and sample.content.startswith(b"RIFF")
        assert again.status_code == 206 and jobs(stack) == before + 1  # fetched once, then cached
        assert (await http.get("/tasks/active")).json()["generations"] == []

    run(stack, scenario, wait=0.2)
    assert any(kind == "run" for kind, _ in stack.mock.calls)


def test_cancel_through_the_bridge_uses_runpods_cancel_and_marks_the_row(stack: Stack) -> None:
    tts = stack.tts  # type: ignore[attr-defined]
    tts.gate.clear()

    async def scenario(http: httpx.AsyncClient) -> None:
        pid, _ = await profile_with_sample(http)
        row = (await http.post("/generate", json={"profile_id": pid, "text": "Stop me."})).json()
        tracked = stack.local.generations[row["id"]]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            tts.started.is_set() and tracked.job_status == "IN_PROGRESS"
        ):
            await asyncio.sleep(0.02)
        threading.Timer(0.3, tts.gate.set).start()
        r = await http.post(f"/generate/{row['id']}/cancel")
        assert r.status_code == 200 and shape(r.json(), "Message")["message"] == (
            "Generation cancelled"
        )
        events = sse_events((await http.get(f"/generate/{row['id']}/status")).text)
        assert events[-1]["status"] == "failed" and events[-1]["error"] == "Generation cancelled"
        again = await http.post(f"/generate/{row['id']}/cancel")
        assert again.status_code == 409 and "already failed" in again.json()["detail"]
        server = (await http.get(f"/history/{row['id']}")).json()
        assert (server["status"], server["error"]) == ("failed", "Generation cancelled")

    run(stack, scenario, wait=0.2)
    assert "cancel" in stack.mock.kinds()


def test_the_status_stream_shows_the_chunks_the_worker_reports(stack: Stack) -> None:
    stack.tts.delay = 0.4  # type: ignore[attr-defined]
    text = (
        "The first sentence is here and it is rather long, to fill a chunk. The second one follows "
        "it and is just as long as the first. And a third one ends it, long enough to need its own "
        "chunk too."
    )

    async def scenario(http: httpx.AsyncClient) -> list[dict[str, Any]]:
        pid, _ = await profile_with_sample(http)
        row = (
            await http.post(
                "/generate", json={"profile_id": pid, "text": text, "max_chunk_chars": 100}
            )
        ).json()
        r = await http.get(f"/generate/{row['id']}/status")
        return sse_events(r.text)

    events = run(stack, scenario, wait=0.1)
    assert events[-1]["status"] == "completed"
    chunks = [(e["chunks_done"], e["chunks_total"]) for e in events if "chunks_total" in e]
    assert chunks and all(total == 3 for _, total in chunks), events
    assert any(0 < done < 3 for done, _ in chunks), events


def test_refused_generation_is_a_4xx_through_the_bridge(stack: Stack) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        r = await http.post("/generate", json={"profile_id": "nobody", "text": "hi"})
        assert r.status_code == 404 and "nobody" in r.json()["detail"]
        pid, _ = await profile_with_sample(http)
        r = await http.post("/generate", json={"profile_id": pid, "text": "hi", "engine": "tada"})
        assert r.status_code == 400 and r.json()["detail"].startswith("engine")
        assert (await http.get("/tasks/active")).json()["generations"] == []
        assert (await http.get("/history")).json()["total"] == 0
        done = (await http.post("/generate", json={"profile_id": pid, "text": "ok"})).json()
        assert done["status"] == "completed"
        r = await http.post(f"/generate/{done['id']}/retry")
        assert r.status_code == 409 and "only failed generations" in r.json()["detail"]
        r = await http.post(f"/generate/{done['id']}/cancel")
        assert r.status_code == 409 and "already completed" in r.json()["detail"]
        row = (await http.get(f"/history/{done['id']}")).json()
        assert (row["status"], row["error"]) == ("completed", None)  # nothing written
        assert (await http.get("/history")).json()["total"] == 1

    run(stack, scenario)


def test_local_answers_and_preflight_send_no_job(stack: Stack) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        before = jobs(stack)
        preflight = await http.options(
            "/profiles",
            headers={
                "Origin": "tauri://localhost",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        r = await http.post("/captures/x/refine", json={})
        assert r.status_code == 400 and "not available" in r.json()["detail"]
        assert (await http.get("/captures")).json() == {"items": [], "total": 0}
        assert jobs(stack) == before
        r = await http.get("/generate/00000000-0000-0000-0000-000000000000/status")
        assert sse_events(r.text) == [
            {"id": "00000000-0000-0000-0000-000000000000", "status": "not_found"}
        ]  # as the server answers (one job: only the server knows its ids)
        assert jobs(stack) == before + 1

    run(stack, scenario)


def test_range_response_rules() -> None:
    data = bytes(range(100))
    assert range_response(data, "audio/wav", None).status_code == 200
    assert range_response(data, "audio/wav", "bytes=0-9,20-29").status_code == 200
    r = range_response(data, "audio/wav", "bytes=90-200")
    assert (r.status_code, r.body, r.headers["content-range"]) == (
        206,
        data[90:],
        "bytes 90-99/100",
    )
    assert range_response(data, "audio/wav", "bytes=50-40").status_code == 416


def test_the_bridge_imports_no_server_or_ml_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys, backend.client.bridge, backend.client.bridge_local; "
        "print(sorted(m for m in ('numpy', 'torch', 'sqlalchemy', 'backend.services') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generation_jobs_know_their_generation_id_up_front() -> None:
    from backend.serverless.envelope import parse_envelope
    from backend.serverless.progress import generation_id_of

    def env(**fields: Any) -> Any:
        return parse_envelope({"method": "POST", **fields})

    chosen = "7b1e6c1a-0000-4000-8000-000000000001"
    assert generation_id_of(env(path="/generate", headers={"X-Generation-Id": chosen})) == chosen
    assert generation_id_of(env(path="/generate/abc/retry")) == "abc"
    assert generation_id_of(env(path="/generate")) is None  # the server picks it: nothing to watch
    assert generation_id_of(env(path="/profiles", headers={"X-Generation-Id": chosen})) is None
