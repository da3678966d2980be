"""The local bridge driven like the Voicebox desktop app drives its server.

httpx → bridge (ASGI, in-process) → VoiceboxClient → RunPod mock (loopback) → job handler → stub
Voicebox app.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.client.bridge import create_bridge_app
from tests.support.runpod_mock import Stack, start_stack
from tests.support.voicebox_stub import make_wav

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stack(tmp_path: Path):
    stack = start_stack(tmp_path)
    yield stack
    stack.mock.stop()


def _run(stack: Stack, scenario: Any, **bridge_kwargs: Any) -> Any:
    app = create_bridge_app(stack.client(), poll_interval=0.02, **bridge_kwargs)

    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:17493"
        ) as http:
            return await scenario(http)

    return asyncio.run(go())


def test_desktop_app_flow(stack: Stack) -> None:
    wav = make_wav(0.3)

    async def scenario(http: httpx.AsyncClient) -> None:
        r = await http.post("/profiles", json={"name": "Desk", "language": "en"})
        assert r.status_code == 200, r.text
        profile = r.json()

        r = await http.post(
            f"/profiles/{profile['id']}/samples",
            files={"file": ("sample.wav", wav, "audio/wav")},
            data={"reference_text": "This is my voice."},
        )
        assert r.status_code == 200, r.text
        assert r.json()["reference_text"] == "This is my voice."

        r = await http.post(
            "/generate", json={"profile_id": profile["id"], "text": "Hi from the desktop."}
        )
        assert r.status_code == 200, r.text
        generation = r.json()
        assert generation["status"] == "completed"

        r = await http.get(f"/audio/{generation['id']}")
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        assert r.content.startswith(b"RIFF")

        r = await http.get(f"/generate/{generation['id']}/status")
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data:")]
        assert events[-1]["status"] == "completed"

        r = await http.get("/history", params={"profile_id": profile["id"], "limit": 5})
        assert r.json()["total"] == 1

    _run(stack, scenario)
    upload = next(i for i in stack.mock.inputs if i["path"].endswith("/samples"))
    assert upload["files"]["file"]["filename"] == "sample.wav"
    assert upload["form"] == {"reference_text": "This is my voice."}
    # the server saw a real multipart request
    seen = [s for s in stack.app.state.seen if s[1].endswith("/samples")]
    assert seen[0][2].startswith("multipart/form-data")


def test_status_codes_and_messages_pass_through(stack: Stack) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        r = await http.get("/profiles/00000000-0000-0000-0000-000000000000")
        assert (r.status_code, r.json()) == (404, {"detail": "Profile not found"})
        await http.post("/profiles", json={"name": "Dup"})
        r = await http.post("/profiles", json={"name": "Dup"})
        assert r.status_code == 400 and "already exists" in r.json()["detail"]

    _run(stack, scenario)


def test_queued_generation_status_is_emulated_by_polling(stack: Stack) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[dict[str, Any]]:
        profile = (await http.post("/profiles", json={"name": "Q"})).json()
        stack.app.state.pending_polls = 3
        generation = (
            await http.post("/generate", json={"profile_id": profile["id"], "text": "later"})
        ).json()
        assert generation["status"] == "generating"
        r = await http.get(f"/generate/{generation['id']}/status")
        return [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data:")]

    events = _run(stack, scenario)
    assert [e["status"] for e in events] == ["generating", "generating", "completed"]
    assert events[-1]["duration"] > 0


def test_unsupported_streams_cors_and_health_cache(stack: Stack) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        r = await http.get("/models/progress/qwen-tts-1.7B")
        assert r.status_code == 501 and "/models/status" in r.json()["detail"]
        r = await http.get("/health", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        r = await http.get("/health", headers={"Origin": "tauri://localhost"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "tauri://localhost"
        jobs = len(stack.mock.inputs)
        assert (await http.get("/health")).json()["status"] == "healthy"
        assert len(stack.mock.inputs) == jobs  # answered from the cache, no job

    _run(stack, scenario)


def test_job_failures_map_to_gateway_errors(stack: Stack) -> None:
    async def broken(job: dict) -> dict:
        raise RuntimeError("worker exploded")

    stack.mock.handler = broken

    async def scenario(http: httpx.AsyncClient) -> None:
        r = await http.get("/profiles")
        assert r.status_code == 502
        assert "worker exploded" in r.json()["detail"]
        r = await http.post("/profiles", content=b"<xml/>", headers={"content-type": "text/xml"})
        assert r.status_code == 415

    _run(stack, scenario)
