"""VoiceboxClient against the RunPod REST mock, jobs run by the job handler against a Voicebox-like
app.

Each test starts its own mock (about 50 ms) so RunPod behaviours (queue delay, runsync cap,
execution timeout, result limit) can be set per test without leaking.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from backend.client.client import VoiceboxClient, detail_message, resolve_config
from backend.client.errors import (
    AuthError,
    ConfigError,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    PayloadTooLarge,
    RemoteError,
    ResultExpired,
    ResultMissing,
    ResultOnVolume,
    TransportError,
)
from tests.support.audio import wav_bytes
from tests.support.runpod_mock import RunPodMock, Stack, start_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stack_factory(tmp_path: Path):
    started: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        stack = start_stack(tmp_path, **kwargs)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.mock.stop()


@pytest.fixture
def stack(stack_factory) -> Stack:
    return stack_factory()


def _voice(client: VoiceboxClient, tmp_path: Path, name: str = "Alice") -> dict[str, Any]:
    profile = client.create_profile(name, description="test voice")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(0.3, amp=0.0))
    client.add_sample(name, clip, "Hello there, this is a test.")
    return profile


def _paths(mock: RunPodMock) -> list[str]:
    return [f"{i.get('method', 'POST')} {i['path']}" for i in mock.inputs]


def test_main_flows_round_trip(stack: Stack, tmp_path: Path) -> None:
    client = stack.client()
    assert client.health()["status"] == "healthy"
    profile = _voice(client, tmp_path)
    assert [p["name"] for p in client.list_profiles()] == ["Alice"]
    assert client.list_samples("alice")[0]["reference_text"] == "Hello there, this is a test."

    audio = client.generate("Hello world", profile="Alice")
    assert isinstance(audio, bytes) and audio.startswith(b"RIFF")
    # one job: the handler attached the audio (inline_audio), no separate GET /audio
    assert _paths(stack.mock)[-1] == "POST /generate"
    assert stack.mock.inputs[-1]["inline_audio"] is True

    out = client.generate("long " * 100, profile=profile["id"], output=tmp_path / "long.wav")
    assert out == tmp_path / "long.wav" and out.read_bytes().startswith(b"RIFF")
    submits = [k for k in stack.mock.kinds() if k in {"run", "runsync"}]
    assert submits[-1] == "run"  # long text: /run + /status polling

    page = client.history(profile="Alice", limit=10)
    assert page["total"] == 2 and page["items"][0]["profile_name"] == "Alice"

    bundle = client.export_profile("Alice", tmp_path / "alice.zip")
    with zipfile.ZipFile(bundle) as zf:
        assert json.loads(zf.read("profile.json"))["name"] == "Alice"
    imported = client.import_profile(bundle)
    assert imported["name"] == "Alice (imported)"

    result = client.transcribe(tmp_path / "clip.wav", language="en")
    assert result["text"] == "stub transcript (en)"
    # the upload travelled as base64 multipart through the envelope
    upload = next(i for i in stack.mock.inputs if i["path"] == "/transcribe")
    assert upload["files"]["file"]["content_type"] == "audio/x-wav"
    assert upload["form"] == {"language": "en"}


def test_server_errors_become_remote_error_with_message(stack: Stack, tmp_path: Path) -> None:
    client = stack.client()
    client.create_profile("Bob")
    with pytest.raises(RemoteError) as info:
        client.create_profile("Bob")
    assert info.value.status_code == 400 and "already exists" in info.value.message
    with pytest.raises(RemoteError) as info:
        client.generate("hi", profile="00000000-0000-0000-0000-000000000000")
    assert info.value.status_code == 404 and info.value.message == "Profile not found"
    with pytest.raises(RemoteError) as info:
        client.get_profile("nobody")
    assert info.value.status_code == 404 and "Bob" in info.value.message
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(RemoteError, match="Invalid audio file"):
        client.add_sample("Bob", bad, "text")


def test_runsync_non_final_answer_is_polled(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(runsync_wait_cap=0.05)
    stack.app.state.generate_delay = 0.4
    client = stack.client()
    _voice(client, tmp_path)
    seen: list[str] = []
    audio = client.generate("short", profile="Alice", progress=lambda e: seen.append(e.status))
    assert audio.startswith(b"RIFF")
    kinds = stack.mock.kinds()
    assert kinds[-1] == "status" and "runsync" in kinds
    assert "IN_PROGRESS" in seen


def test_queue_states_reach_the_progress_callback(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(queue_delay=0.25)
    client = stack.client()
    _voice(client, tmp_path)
    stack.app.state.generate_delay = 0.25
    seen: list[str] = []
    client.generate("x" * 600, profile="Alice", progress=lambda e: seen.append(e.status))
    assert seen[0] == "IN_QUEUE" and "IN_PROGRESS" in seen
    assert seen.index("IN_PROGRESS") > seen.index("IN_QUEUE")


def test_handler_exception_is_job_failed_with_parsed_json_error(stack_factory) -> None:
    stack = stack_factory()

    async def broken(job: dict) -> dict:
        raise ValueError("kaboom in the handler")

    stack.mock.handler = broken
    with pytest.raises(JobFailed) as info:
        stack.client().health()
    assert info.value.error_type == "ValueError"
    assert "kaboom in the handler" in str(info.value)
    assert "Traceback" in (info.value.traceback or "")
    assert isinstance(info.value.raw, str)  # RunPod's error is a JSON *string*


def test_envelope_error_is_job_failed_with_handler_message(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(JobFailed) as info:
        client.request("GET", "/profiles/%2e%2e/secret")
    assert "path" in str(info.value) and info.value.error_type is None


def test_execution_timeout_is_timed_out_on_server(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(execution_timeout=0.2)
    client = stack.client()
    _voice(client, tmp_path)
    stack.app.state.generate_delay = 2.0
    with pytest.raises(JobTimedOut) as info:
        client.generate("too slow", profile="Alice")
    assert info.value.on_server is True and info.value.job_id


def test_client_stops_waiting_without_failing_the_job(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory()
    client = stack.client()
    _voice(client, tmp_path)
    stack.app.state.generate_delay = 3.0
    with pytest.raises(JobTimedOut) as info:
        client.generate("x" * 600, profile="Alice", timeout=0.3)
    assert info.value.on_server is False
    assert stack.mock.jobs[info.value.job_id].status in {"IN_QUEUE", "IN_PROGRESS"}
    client.cancel(info.value.job_id)


def test_cancelled_job(stack: Stack) -> None:
    client = stack.client()
    stack.app.state.generate_delay = 0  # irrelevant: a queued job is cancelled before it runs
    stack.mock.queue_delay = 5.0
    job_id = client.submit({"method": "GET", "path": "/health"})
    assert client.cancel(job_id)["status"] == "CANCELLED"
    with pytest.raises(JobCancelled):
        client.wait(job_id)


def test_expired_result_is_result_expired(stack_factory) -> None:
    stack = stack_factory(retention=0.0)
    client = stack.client()
    job_id = client.submit({"method": "GET", "path": "/health"})
    deadline = time.monotonic() + 5
    while stack.mock.jobs[job_id].finished is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ResultExpired) as info:
        client.wait(job_id)
    assert info.value.job_id == job_id
    with pytest.raises(ResultExpired):
        client.status("no-such-job")


def test_dropped_result_is_result_missing(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(result_limit=2000)
    client = stack.client()
    _voice(client, tmp_path)
    with pytest.raises(ResultMissing):
        client.generate("a sentence whose audio is bigger than the result limit", profile="Alice")


def test_transient_status_errors_are_retried(stack: Stack) -> None:
    client = stack.client()
    stack.mock.status_failures = 2
    job_id = client.submit({"method": "GET", "path": "/health"})
    assert client.wait(job_id)["body"]["status"] == "healthy"
    stack.mock.status_failures = 10
    job_id = client.submit({"method": "GET", "path": "/health"})
    with pytest.raises(TransportError, match="503"):
        client.wait(job_id)


def test_wrong_api_key_is_auth_error(stack: Stack) -> None:
    client = stack.client(api_key="wrong")
    with pytest.raises(AuthError):
        client.health()


def test_attached_audio_spilled_is_fetched_back(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(settings_env={"VOICEBOX_RESULT_BUDGET_MB": "0.01"})  # ~10 KB
    client = stack.client()
    _voice(client, tmp_path)
    audio = client.generate("fifteen chars!!", profile="Alice")  # ~7.2 KB WAV, ~9.7 KB base64
    assert audio.startswith(b"RIFF") and len(audio) > 7000
    fetch = stack.mock.inputs[-1]
    assert fetch["path"].startswith("/exports/") and fetch["inline_only"] is True
    name = fetch["path"].removeprefix("/exports/")
    assert (stack.settings.exports_dir / name).read_bytes() == audio


def test_answer_too_large_to_fetch_is_result_on_volume(stack_factory, tmp_path: Path) -> None:
    stack = stack_factory(settings_env={"VOICEBOX_RESULT_BUDGET_MB": "0.01"})
    stack.app.state.export_padding = os.urandom(60_000)
    client = stack.client()
    client.create_profile("Big")
    with pytest.raises(ResultOnVolume) as info:
        client.export_profile("Big", tmp_path / "big.zip")
    name = info.value.export["name"]
    assert "voicebox/exports/" in str(info.value) and "s3api" in str(info.value)
    assert (stack.settings.exports_dir / name).stat().st_size == info.value.export["size"]
    jobs = len(stack.mock.inputs)
    small = stack.client(fetch_limit=1000)
    with pytest.raises(ResultOnVolume):
        small.export_profile("Big", tmp_path / "big.zip")
    assert len(stack.mock.inputs) == jobs + 2  # profiles lookup + export, no fetch attempt


def test_large_import_goes_through_the_volume(stack: Stack, tmp_path: Path) -> None:
    client = stack.client(runsync_payload_limit=20_000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("profile.json", json.dumps({"name": "Carol", "language": "en"}))
        zf.writestr("padding.bin", os.urandom(30_000))
    bundle = tmp_path / "carol.zip"
    bundle.write_bytes(buffer.getvalue())
    with pytest.raises(PayloadTooLarge) as info:
        client.import_profile(bundle)
    message = str(info.value)
    assert "voicebox/imports/carol.zip" in message and "--volume-name carol.zip" in message
    assert stack.mock.inputs == []  # nothing was sent
    (stack.settings.imports_dir / "carol.zip").write_bytes(bundle.read_bytes())
    profile = client.import_profile(volume_name="carol.zip")
    assert profile["name"] == "Carol"
    assert stack.mock.inputs[-1]["form"] == {"volume_name": "carol.zip"}
    with pytest.raises(ConfigError):
        client.import_profile(volume_name="../etc/passwd")


def test_payload_over_run_cap_uses_runsync(stack: Stack, tmp_path: Path) -> None:
    client = stack.client(run_payload_limit=5_000)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(0.5, amp=0.0))  # 24 KB, 32 KB as base64
    client.transcribe(clip)
    assert stack.mock.kinds() == ["runsync"]
    client2 = stack.client(runsync_payload_limit=5_000)
    with pytest.raises(PayloadTooLarge):
        client2.transcribe(clip)


def test_queued_generation_is_waited_for(stack: Stack, tmp_path: Path) -> None:
    """Servers whose POST /generate returns 'generating': poll /history, then fetch /audio."""
    client = stack.client()
    _voice(client, tmp_path)
    stack.app.state.pending_polls = 2
    phases: list[str] = []
    audio = client.generate("queued", profile="Alice", progress=lambda e: phases.append(e.phase))
    assert audio.startswith(b"RIFF") and "generation" in phases
    assert _paths(stack.mock)[-3:] == [
        f"GET /history/{_last_generation(stack)}",
        f"GET /history/{_last_generation(stack)}",
        f"GET /audio/{_last_generation(stack)}",
    ]


def _last_generation(stack: Stack) -> str:
    return [p for p in _paths(stack.mock) if p.startswith("GET /audio/")][-1].rsplit("/", 1)[-1]


def test_config_from_env_and_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nexport RUNPOD_API_KEY='from-file'\nVOICEBOX_ENDPOINT_ID=ep-file # trailing\n"
    )
    config = resolve_config(env={}, env_file=env_file)
    assert (config.api_key, config.endpoint_id) == ("from-file", "ep-file")
    assert config.api_base == "https://api.runpod.ai/v2"
    config = resolve_config(
        env={
            "RUNPOD_API_KEY": "from-env",
            "RUNPOD_ENDPOINT_ID": "ep-env",
            "RUNPOD_API_BASE": "http://x/v2/",
        },
        env_file=tmp_path / "missing",
    )
    assert (config.api_key, config.endpoint_id, config.api_base) == (
        "from-env",
        "ep-env",
        "http://x/v2",
    )
    with pytest.raises(ConfigError, match="RUNPOD_API_KEY"):
        resolve_config(env={}, env_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="VOICEBOX_ENDPOINT_ID"):
        resolve_config(env={"RUNPOD_API_KEY": "k"}, env_file=tmp_path / "missing")


def test_detail_message_shapes() -> None:
    assert detail_message({"detail": "plain"}) == "plain"
    assert (
        detail_message({"detail": {"message": "downloading", "model_name": "w"}}) == "downloading"
    )
    errors = [{"loc": ["body", "text"], "msg": "Field required"}, {"loc": ["query"], "msg": "bad"}]
    assert detail_message({"detail": errors}) == "text: Field required; query: bad"
    assert detail_message(None) == "(no message)"
