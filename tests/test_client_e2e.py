"""The client, the bridge and the ``remote`` CLI end to end against the REAL app.

mock RunPod REST (loopback) → ``backend.serverless.handler.JobHandler`` → ``backend.app.create_app``
with the fake engines (``VOICEBOX_TTS_MODEL=fake``, ``VOICEBOX_STT_MODEL=fake``) on a bootstrapped
temp volume. tests/test_client.py, test_client_cli.py and test_bridge.py run the same flows against
the stub app (tests/support/voicebox_stub.py), which has knobs for slow and queued generations;
these tests check that the real routes, shapes and error messages fit what the client expects.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from backend.app import create_app
from backend.client.bridge import create_bridge_app
from backend.client.errors import PayloadTooLarge, RemoteError
from backend.config import Settings
from backend.services.container import Services
from tests.support.api import audio_bytes
from tests.support.runpod_mock import Stack, start_stack

pytestmark = pytest.mark.timeout(60)

MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def stack(tmp_path: Path, api_settings: Settings) -> Iterator[Stack]:
    services = Services.for_worker(api_settings)
    app = create_app(api_settings, services=services)
    stack = start_stack(tmp_path, app=app, settings=api_settings)
    try:
        yield stack
    finally:
        stack.mock.stop()
        services.close()


def _decode(data: bytes) -> tuple[int, float]:
    info = sf.info(io.BytesIO(data))
    return info.samplerate, info.duration


def _paths(stack: Stack) -> list[str]:
    return [f"{i.get('method', 'POST')} {i['path']}" for i in stack.mock.inputs]


def test_python_client_against_the_real_app(stack: Stack, tmp_path: Path) -> None:
    client = stack.client()
    health = client.health()
    assert health["status"] == "healthy" and health["tts_model"]

    profile = client.create_profile("Alice", description="test voice")
    assert profile["name"] == "Alice" and profile["voice_type"] == "cloned"
    clip = tmp_path / "alice.wav"
    clip.write_bytes(audio_bytes(3.0))
    sample = client.add_sample("Alice", clip, "Hello there, this is a test.")
    assert sample["profile_id"] == profile["id"]
    assert sample["audio_path"] == f"profiles/{profile['id']}/{sample['id']}.wav"
    assert [p["name"] for p in client.list_profiles()] == ["Alice"]
    assert client.list_samples("alice")[0]["reference_text"] == "Hello there, this is a test."

    audio = client.generate("Hello world.", profile="Alice", seed=1)
    assert isinstance(audio, bytes)
    rate, seconds = _decode(audio)
    assert rate == 24000 and seconds > 0
    # one job: POST /generate?wait=true with the audio attached by the handler
    assert _paths(stack)[-1] == "POST /generate" and stack.mock.inputs[-1]["inline_audio"]

    out = client.generate("A second sentence.", profile=profile["id"], output=tmp_path / "o.wav")
    assert out == tmp_path / "o.wav"
    rate, seconds = _decode(out.read_bytes())
    assert rate == 24000 and seconds > 0

    page = client.history(profile="Alice", limit=10)
    assert page["total"] == 2
    assert {i["profile_name"] for i in page["items"]} == {"Alice"}
    assert {i["status"] for i in page["items"]} == {"completed"}
    assert page["items"][0]["text"] == "A second sentence."  # newest first

    result = client.transcribe(clip, language="en")
    assert result["text"] and result["duration"] == pytest.approx(3.0, abs=0.05)

    bundle = client.export_profile("Alice", tmp_path / "alice.zip")
    assert bundle.stat().st_size > 0
    imported = client.import_profile(bundle)
    assert imported["name"] == "Alice (1)"  # made unique, as Voicebox does
    assert imported["id"] != profile["id"] and imported["sample_count"] == 1
    assert sorted(p["name"] for p in client.list_profiles()) == ["Alice", "Alice (1)"]

    # past the payload cap: refused locally, then imported from voicebox/imports/ on the volume
    small = stack.client(runsync_payload_limit=20_000)
    with pytest.raises(PayloadTooLarge, match="--volume-name alice.zip"):
        small.import_profile(bundle)
    (stack.settings.imports_dir / "alice.zip").write_bytes(bundle.read_bytes())
    via_volume = small.import_profile(volume_name="alice.zip")
    assert via_volume["name"] == "Alice (2)"
    assert stack.mock.inputs[-1]["form"] == {"volume_name": "alice.zip"}
    assert len(client.list_profiles()) == 3

    # the server's errors arrive as RemoteError with its status and detail
    with pytest.raises(RemoteError) as info:
        client.generate("hi", profile=MISSING)
    assert (info.value.status_code, info.value.message) == (404, f"profile {MISSING} not found")
    with pytest.raises(RemoteError) as info:
        client.create_profile("Alice")
    assert info.value.status_code == 409 and "Alice" in info.value.message
    with pytest.raises(RemoteError) as info:
        small.import_profile(volume_name="nothing-here.zip")
    assert info.value.status_code == 404
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(RemoteError) as info:
        client.add_sample("Alice", bad, "text")
    assert info.value.status_code == 400 and info.value.message


def _bridge(stack: Stack, scenario: Any) -> Any:
    app = create_bridge_app(stack.client(), poll_interval=0.02)

    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1:17493",
            timeout=30.0,
            headers={"Origin": "tauri://localhost"},  # the app's webview always sends its origin
        ) as http:
            return await scenario(http)

    return asyncio.run(go())


def test_bridge_as_the_desktop_app_calls_it(stack: Stack) -> None:
    wav = audio_bytes(3.0, seed=3)

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
        # the handler sends wait=true: the job ends when the audio is durable
        assert generation["status"] == "completed"

        r = await http.get(f"/generate/{generation['id']}/status")
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data:")]
        assert events[-1]["status"] == "completed" and events[-1]["duration"] > 0

        r = await http.get(f"/audio/{generation['id']}")
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        rate, seconds = _decode(r.content)
        assert rate == 24000 and seconds > 0

        r = await http.get("/history", params={"profile_id": profile["id"], "limit": 5})
        assert r.status_code == 200
        page = r.json()
        assert page["total"] == 1
        assert page["items"][0]["id"] == generation["id"]
        assert page["items"][0]["profile_name"] == "Desk"

        r = await http.get(f"/profiles/{MISSING}")
        assert r.status_code == 404 and "not found" in r.json()["detail"].lower()

    _bridge(stack, scenario)
    upload = next(i for i in stack.mock.inputs if i["path"].endswith("/samples"))
    assert upload["files"]["file"]["filename"] == "sample.wav"


def test_remote_say_cli(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from backend.cli import main

    client = stack.client()
    client.create_profile("Alice")
    clip = tmp_path / "alice.wav"
    clip.write_bytes(audio_bytes(3.0))
    client.add_sample("Alice", clip, "Hello there.")

    monkeypatch.chdir(tmp_path)  # no stray ./.env
    monkeypatch.setenv("RUNPOD_API_KEY", stack.mock.api_key)
    monkeypatch.setenv("VOICEBOX_ENDPOINT_ID", stack.mock.endpoint_id)
    monkeypatch.setenv("RUNPOD_API_BASE", stack.mock.api_base)
    out = tmp_path / "out.wav"
    assert main(["remote", "say", "--profile", "Alice", "Hello from the CLI.", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    rate, seconds = _decode(out.read_bytes())
    assert rate == 24000 and seconds > 0

    assert main(["remote", "say", "--profile", "Nobody", "hi", "-o", str(out)]) == 1
    assert "no profile named 'Nobody'" in capsys.readouterr().err
