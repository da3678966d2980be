"""Streamed speech through RunPod: the generator handler, the mock's ``/stream/{id}``, ``/runsync``'s aggregate,
``/cancel``, the client's ``RemoteStream``, ``remote say --stream`` and the bridge's ``/generate/stream``.

The worker side is the real app on a loopback socket with a gated fake engine, so "the first chunk arrived
before the synthesis finished" is an event (the engine still waits for the gate), not a timing."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.client.bridge import create_bridge_app
from backend.client.client import VoiceboxClient
from backend.client.errors import RemoteError
from backend.serverless.handler import STREAM_CHUNK_BYTES, JobHandler
from backend.serverless.launcher import ServerThread, sdk_config
from tests.support.runpod_mock import RunPodMock
from tests.support.streaming import THREE_CHUNKS, StreamServer, stream_server

pytestmark = pytest.mark.timeout(180)
WAV_HEADER = 44
ON_RUNPOD = {"RUNPOD_WEBHOOK_GET_JOB": "https://api.runpod.ai/v2/x/job-take/$ID"}


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@dataclass
class Stack:
    worker: StreamServer
    mock: RunPodMock

    def client(self, **kwargs: object) -> VoiceboxClient:
        options: dict[str, object] = {
            "poll_initial": 0.02,
            "poll_max": 0.1,
            "timeout": 60.0,
            "env": {},
            "env_file": "/nonexistent/.env",
        }
        options.update(kwargs)
        return VoiceboxClient(
            self.mock.endpoint_id, api_key=self.mock.api_key, api_base=self.mock.api_base, **options
        )

    def history(self, gen_id: str) -> dict[str, object]:
        return httpx.get(f"{self.worker.base_url}/history/{gen_id}", timeout=10).json()

    def stored(self, gen_id: str) -> bytes:
        return httpx.get(f"{self.worker.base_url}/audio/{gen_id}", timeout=10).content


@pytest.fixture
def stack(tmp_path: Path, volume_template: Path) -> Iterator[Stack]:
    with stream_server(tmp_path, volume_template, gated=True, VOICEBOX_STREAM_JOBS="1") as worker:
        handler = JobHandler(worker.settings, base_url=worker.base_url)
        config = sdk_config(handler, worker.settings, argv=[], env=ON_RUNPOD)
        assert config["return_aggregate_stream"] is True
        with RunPodMock(config["handler"], stream_wait=0.5) as mock:
            yield Stack(worker, mock)


def test_stream_job_chunks_arrive_before_the_synthesis_finished(stack: Stack) -> None:
    stack.worker.engine.release(1)
    stream = stack.client().generate_stream(
        THREE_CHUNKS, profile="Narrator", seed=4, max_chunk_chars=100
    )
    assert stream.content_type == "audio/wav" and stream.status_code == 200
    chunks = iter(stream)
    first = next(chunks)
    assert first[:4] == b"RIFF"
    assert stack.worker.engine.generate_calls == 1  # chunk 2 is still waiting for the gate
    gen_id = stream.headers["x-generation-id"]
    assert stack.history(gen_id)["status"] == "generating"
    assert "stream" in stack.mock.kinds()
    stack.worker.engine.open_gate()
    data = first + b"".join(chunks)
    assert data[WAV_HEADER:] == stack.stored(gen_id)[WAV_HEADER:]
    job = stack.mock.jobs[str(stream.job_id)]
    assert job.status == "COMPLETED"
    items = job.output
    assert items[-1]["done"] is True and items[-1]["size"] == len(data)
    assert all(
        len(base64.b64decode(i.get("chunk_base64", ""))) <= STREAM_CHUNK_BYTES for i in items
    )
    assert len(items) > 3  # several chunks, each at most STREAM_CHUNK_BYTES


def test_runsync_gets_the_whole_stream_and_ordinary_jobs_still_answer(stack: Stack) -> None:
    stack.worker.engine.open_gate()
    client = stack.client()
    assert client.health()["status"]  # an ordinary job through the generator handler: [answer]
    envelope = client.build_envelope(
        "POST",
        "/generate",
        body={"profile_id": stack.worker.profile_id, "text": THREE_CHUNKS, "max_chunk_chars": 100},
    )
    envelope["stream"] = True
    job_id, output = client.run_job(envelope)
    assert isinstance(output, list) and output[-1]["done"] is True
    answer = client.decode_output(output, job_id=job_id)
    assert answer.content_type == "audio/wav" and answer.content is not None
    gen_id = answer.headers["x-generation-id"]
    assert answer.content[WAV_HEADER:] == stack.stored(gen_id)[WAV_HEADER:]


def test_a_refused_stream_keeps_its_status(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(RemoteError) as err:
        client.stream("/generate/stream", body={"profile_id": "nope", "text": "Hello."})
    assert err.value.status_code == 404
    with pytest.raises(RemoteError) as err:
        client.generate_stream("Hello.", profile="Narrator", format="flac")
    assert err.value.status_code == 422 and "opus" in err.value.message


def test_runpod_cancel_stops_the_synthesis_within_a_chunk(stack: Stack) -> None:
    stack.worker.engine.release(1)
    stream = stack.client().generate_stream(THREE_CHUNKS, profile="Narrator", max_chunk_chars=100)
    next(iter(stream))
    gen_id = stream.headers["x-generation-id"]
    stream.close()  # RunPod /cancel
    assert ("cancel", stream.job_id) in stack.mock.calls
    streams = stack.worker.services.streaming.streams
    wait_for(lambda: any(s.reader_gone.is_set() for s in streams))
    stack.worker.engine.release(1)
    wait_for(lambda: stack.history(gen_id)["status"] == "failed")
    assert stack.worker.engine.generate_calls == 2


@pytest.fixture
def remote_env(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.chdir(tmp_path)  # no stray ./.env
    monkeypatch.setenv("RUNPOD_API_KEY", stack.mock.api_key)
    monkeypatch.setenv("VOICEBOX_ENDPOINT_ID", stack.mock.endpoint_id)
    monkeypatch.setenv("RUNPOD_API_BASE", stack.mock.api_base)
    stack.worker.engine.open_gate()
    return stack


def test_remote_say_stream_writes_a_file(
    remote_env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.client.cli import main

    out = tmp_path / "out.wav"
    argv = ["remote", "say", "--profile", "Narrator", "--stream", THREE_CHUNKS, "-o", str(out)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.read_bytes()[:4] == b"RIFF" and report["bytes"] == out.stat().st_size
    assert not (tmp_path / "out.wav.part").exists()
    assert report["first_audio_seconds"] is not None and report["generation_id"]
    stored = remote_env.stored(report["generation_id"])
    assert out.read_bytes()[WAV_HEADER:] == stored[WAV_HEADER:]


def test_remote_say_stream_pipes_to_stdout(
    remote_env: Stack, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    from backend.client.cli import main

    argv = ["remote", "say", "--profile", "Narrator", "--stream", "--format", "pcm", "Hello there."]
    assert main([*argv, "-o", "-", "--no-persist"]) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out) == 2 * int(
        0.06 * len("Hello there.") * 24000
    )  # raw s16le, nothing else
    assert b"wrote stdout" in captured.err


def test_bridge_serves_generate_stream_from_runpod(stack: Stack) -> None:
    stack.worker.engine.release(1)
    app = create_bridge_app(stack.client(), token="t0ken")
    bridge = ServerThread(app).start()
    assert bridge.wait_ready(30)
    try:
        payload = {
            "profile_id": stack.worker.profile_id,
            "text": THREE_CHUNKS,
            "max_chunk_chars": 100,
        }
        headers = {"Authorization": "Bearer t0ken"}
        with httpx.stream(
            "POST", f"{bridge.base_url}/generate/stream", json=payload, headers=headers, timeout=60
        ) as response:
            assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
            gen_id = response.headers["x-generation-id"]
            chunks = response.iter_raw()
            first = next(chunks)
            assert first[:4] == b"RIFF" and stack.worker.engine.generate_calls == 1
            stack.worker.engine.open_gate()
            data = first + b"".join(chunks)
        assert data[WAV_HEADER:] == stack.stored(gen_id)[WAV_HEADER:]
        missing = httpx.post(
            f"{bridge.base_url}/generate/stream",
            json={"profile_id": "nope", "text": "Hi."},
            headers=headers,
            timeout=60,
        )
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    finally:
        bridge.stop()


def test_the_sdk_modes_that_cannot_drive_a_generator_get_the_plain_handler(
    tmp_path: Path, volume_template: Path
) -> None:
    from tests.support.streaming import stream_settings

    settings = stream_settings(tmp_path, volume_template, VOICEBOX_STREAM_JOBS="1")
    handler = JobHandler(settings)
    assert (
        sdk_config(handler, settings, argv=["--test_input", "{}"], env=ON_RUNPOD)["handler"]
        is handler
    )
    assert sdk_config(handler, settings, argv=[], env={})["handler"] is handler  # test_input.json
    served = sdk_config(handler, settings, argv=["--rp_serve_api"], env={})
    assert served["handler"] == handler.stream and served["return_aggregate_stream"]
    # off by default: every job's output stays its answer (no list) unless the endpoint opts in
    default = stream_settings(tmp_path / "default", volume_template)
    assert sdk_config(handler, default, argv=[], env=ON_RUNPOD)["handler"] is handler


def test_stream_jobs_off_answers_the_whole_audio(tmp_path: Path, volume_template: Path) -> None:
    with stream_server(tmp_path, volume_template, VOICEBOX_STREAM_JOBS="0") as worker:
        handler = JobHandler(worker.settings, base_url=worker.base_url)
        config = sdk_config(handler, worker.settings, argv=[], env=ON_RUNPOD)
        assert config["handler"] is handler and "return_aggregate_stream" not in config
        with RunPodMock(config["handler"]) as mock:
            client = VoiceboxClient(
                mock.endpoint_id,
                api_key=mock.api_key,
                api_base=mock.api_base,
                env={},
                env_file="/nonexistent/.env",
            )
            envelope = client.build_envelope(
                "POST",
                "/generate/stream",
                body={"profile_id": worker.profile_id, "text": "Hi there."},
            )
            job_id, output = client.run_job(envelope)
            answer = client.decode_output(output, job_id=job_id)
            assert answer.content_type == "audio/wav" and answer.content[:4] == b"RIFF"
