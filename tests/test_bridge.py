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
from tests.support.audio import wav_bytes
from tests.support.runpod_mock import Stack, start_stack

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
            transport=transport,
            base_url="http://127.0.0.1:17493",
            headers={"Origin": "tauri://localhost"},  # the app's webview always sends its origin
        ) as http:
            return await scenario(http)

    return asyncio.run(go())


def test_desktop_app_flow(stack: Stack) -> None:
    wav = wav_bytes(0.3, amp=0.0)

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


# ---------------------------------------------------------------------------------------------- who may use it
def test_only_the_app_and_token_holders_drive_the_bridge(stack: Stack) -> None:
    """``Origin: null`` (sandboxed iframe, file:// page), a foreign origin, a rebinding Host and an origin-less
    request without the token are refused before any job runs; the token lets scripts in."""
    app = create_bridge_app(stack.client(), poll_interval=0.02, token="tok-123")
    assert app.state.bridge_token == "tok-123"
    bundle = {"file": ("v.zip", b"PK\x05\x06" + b"\0" * 18, "application/zip")}

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:17493") as h:
            refused = [
                await h.post("/profiles/import", files=bundle, headers={"Origin": "null"}),
                await h.post("/profiles", json={"name": "X"}, headers={"Origin": "null"}),
                await h.get("/profiles", headers={"Origin": "https://evil.example"}),
                await h.get("/profiles"),  # no origin, no token
                await h.get("/profiles", headers={"Authorization": "Bearer wrong"}),
                await h.get(  # DNS rebinding: same-origin GET from evil.example → 127.0.0.1
                    "/profiles",
                    headers={"Host": "evil.example:17493", "Authorization": "Bearer tok-123"},
                ),
                await h.options(
                    "/profiles",
                    headers={
                        "Origin": "https://evil.example",
                        "Access-Control-Request-Method": "POST",
                    },
                ),
            ]
            assert [r.status_code for r in refused] == [403] * len(refused)
            assert "token" in refused[3].json()["detail"]
            assert "null" in refused[0].json()["detail"]
            assert stack.mock.inputs == []  # not one job was sent
            ok = await h.get("/profiles", headers={"Authorization": "Bearer tok-123"})
            assert ok.status_code == 200
            ok = await h.get("/profiles", headers={"Origin": "tauri://localhost"})
            assert ok.status_code == 200

    asyncio.run(go())


def test_token_is_random_per_app_and_written_owner_only(tmp_path: Path) -> None:
    import stat

    from backend.client.bridge import write_token_file

    first = create_bridge_app(object(), poll_interval=0.02)  # type: ignore[arg-type]
    second = create_bridge_app(object(), poll_interval=0.02)  # type: ignore[arg-type]
    assert first.state.bridge_token != second.state.bridge_token
    assert len(first.state.bridge_token) >= 32
    path = write_token_file(tmp_path / "cfg" / "bridge-token", first.state.bridge_token)
    assert path.read_text().strip() == first.state.bridge_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # a rerun tightens a loosened file
    write_token_file(path, "again")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        write_token_file(link, "x")  # never follows a planted link


def test_star_is_explicit_and_warned(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    monkeypatch.setenv("VOICEBOX_CORS_ORIGINS", "*")
    with caplog.at_level(logging.WARNING, logger="voicebox.bridge"):
        app = create_bridge_app(stack.client(), poll_interval=0.02, token="t")
    assert any("VOICEBOX_CORS_ORIGINS=*" in r.getMessage() for r in caplog.records)

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:17493") as h:
            ok = await h.get("/health", headers={"Origin": "https://any.example"})
            assert ok.status_code == 200
            null = await h.get("/health", headers={"Origin": "null"})
            assert null.status_code == 403  # never, even with *

    asyncio.run(go())


def _status_events(stack: Stack, final: str | None, **bridge_kwargs: Any) -> list[dict[str, Any]]:
    """The events of an emulated status stream for a queued generation that ends in ``final``."""

    async def scenario(http: httpx.AsyncClient) -> list[dict[str, Any]]:
        profile = (await http.post("/profiles", json={"name": "C"})).json()
        stack.app.state.pending_polls = 2
        stack.app.state.pending_final = final
        generation = (
            await http.post("/generate", json={"profile_id": profile["id"], "text": "later"})
        ).json()
        r = await http.get(f"/generate/{generation['id']}/status")
        return [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data:")]

    return _run(stack, scenario, **bridge_kwargs)


def _history_polls(stack: Stack) -> int:
    return sum(1 for method, path, _ in stack.app.state.seen if path.startswith("/history/"))


@pytest.mark.parametrize("final", ["cancelled", "failed"])
def test_bridge_status_stream_stops_on_cancelled_and_failed(stack: Stack, final: str) -> None:
    """Every final status ends the emulated stream: no further billed polls after it."""
    events = _status_events(stack, final)
    assert [e["status"] for e in events] == ["generating", final]
    assert events[-1]["error"] == "Generation cancelled"
    assert _history_polls(stack) == 2


def test_bridge_status_stream_has_a_deadline(stack: Stack) -> None:
    """A generation that never finishes stops being polled once ``status_deadline`` has passed."""
    events = _status_events(stack, None, status_deadline=0.3)
    assert events and {e["status"] for e in events} == {"generating"}
    polls = _history_polls(stack)
    assert (
        1 <= polls <= 30
    )  # poll interval 0.02 s growing ×1.5: a handful in 0.3 s, never unbounded
