"""``/v1/audio/speech`` with the official ``openai`` client against the app served over real HTTP (fake engine).

One server per module: generations run one at a time on the worker's thread anyway, and every test checks only
the rows and answers it made. The fake engine's audio length is deterministic per text (60 ms a character), so
durations can be compared across formats and speeds.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from backend.app import create_app
from backend.serverless.handler import JobHandler
from backend.serverless.launcher import ServerThread
from backend.services.container import Services
from backend.services.speech import PCM_SAMPLE_RATE, time_stretch
from tests.support.api import api_settings_for, fresh_volume
from tests.support.generation import add_profile_with_sample

pytestmark = pytest.mark.timeout(120)

TEXT = "The quick brown fox jumps over the lazy dog."  # 44 characters → 2.64 s from the fake engine
TEXT_SECONDS = 0.06 * len(TEXT)


@dataclass
class Server:
    base_url: str
    services: Services
    profile_id: str

    def client(self, api_key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, volume_template: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("openai-speech")
    settings = api_settings_for(fresh_volume(volume_template, root / "volume"), root / "local")
    services = Services.for_worker(settings)
    profile_id = add_profile_with_sample(services, "Narrator")
    thread = ServerThread(create_app(settings, services=services)).start()
    assert thread.wait_ready(30), thread.describe_exit()
    try:
        yield Server(thread.base_url, services, profile_id)
    finally:
        thread.stop()
        services.close()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return server.client()


def speech(client: openai.OpenAI, **kwargs: object) -> tuple[bytes, httpx.Response]:
    params: dict[str, object] = {"model": "tts-1", "voice": "Narrator", "input": TEXT}
    params.update(kwargs)
    answer = client.audio.speech.create(**params)  # type: ignore[arg-type]
    return answer.read(), answer.response


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, rate


# ---------------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize(
    ("fmt", "mime", "container"),
    [
        ("wav", "audio/wav", "WAV"),
        ("flac", "audio/flac", "FLAC"),
        ("mp3", "audio/mpeg", "MP3"),
        ("opus", "audio/ogg", "OGG"),
    ],
)
def test_each_encoded_format_decodes(
    client: openai.OpenAI, fmt: str, mime: str, container: str
) -> None:
    data, response = speech(client, response_format=fmt)
    assert response.headers["content-type"] == mime
    assert sf.info(io.BytesIO(data)).format == container
    audio, rate = decoded(data)
    assert rate == 24000
    assert audio.ndim == 1 and float(np.sqrt(np.mean(audio**2))) > 0.05
    # mp3/opus add encoder padding; the length still tracks the text
    assert len(audio) / rate == pytest.approx(TEXT_SECONDS, abs=0.12)


def test_pcm_is_raw_s16le_at_24khz(client: openai.OpenAI) -> None:
    data, response = speech(client, response_format="pcm")
    assert response.headers["content-type"] == "audio/pcm"
    assert len(data) % 2 == 0
    samples = np.frombuffer(data, dtype="<i2")
    assert len(samples) / PCM_SAMPLE_RATE == pytest.approx(TEXT_SECONDS, abs=0.01)
    assert int(np.abs(samples).max()) > 3000  # audible, not a header or silence
    wav, _ = speech(client, response_format="wav")
    reference, _ = decoded(wav)
    assert len(samples) == len(reference)
    generation = response.headers["x-generation-id"]
    stored = httpx.get(f"{client.base_url}".replace("/v1/", "") + f"/audio/{generation}").content
    assert data == stored[44:]  # the stored samples, not requantised through floats


def test_default_format_is_mp3(client: openai.OpenAI, server: Server) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        json={"model": "tts-1", "voice": "Narrator", "input": "Default format."},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert sf.info(io.BytesIO(response.content)).format == "MP3"


# ---------------------------------------------------------------------------------------------- speed
def test_speed_changes_duration_not_pitch(client: openai.OpenAI) -> None:
    normal, _ = decoded(speech(client, response_format="wav")[0])
    fast, _ = decoded(speech(client, response_format="wav", speed=2.0)[0])
    slow, _ = decoded(speech(client, response_format="flac", speed=0.5)[0])
    assert len(fast) / len(normal) == pytest.approx(0.5, abs=0.01)
    assert len(slow) / len(normal) == pytest.approx(2.0, abs=0.02)

    def pitch(a: np.ndarray) -> float:
        return float(np.fft.rfftfreq(a.size, 1 / 24000)[np.argmax(np.abs(np.fft.rfft(a)))])

    assert pitch(fast) == pytest.approx(pitch(normal), rel=0.03)
    assert pitch(slow) == pytest.approx(pitch(normal), rel=0.03)


@pytest.mark.parametrize("speed", [0.1, 4.5])
def test_speed_out_of_range_is_refused(client: openai.OpenAI, speed: float) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        speech(client, speed=speed)
    assert "speed" in str(err.value)


def test_time_stretch_keeps_level_pitch_and_timing() -> None:
    rate = 24000
    t = np.arange(3 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (t >= 1.0)).astype(np.float32)
    assert time_stretch(tone, 1.0) is not None and np.array_equal(time_stretch(tone, 1.0), tone)
    for factor in (0.25, 0.5, 2.0, 4.0):
        out = time_stretch(tone, factor)
        assert out.size == round(tone.size / factor)
        onset = np.argmax(np.abs(out) > 0.05) / rate
        assert onset == pytest.approx(1.0 / factor, abs=0.03)
        voiced = out[int((1.0 / factor + 0.1) * rate) : -2000]
        assert float(np.sqrt(np.mean(voiced**2))) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
        peak = np.fft.rfftfreq(voiced.size, 1 / rate)[np.argmax(np.abs(np.fft.rfft(voiced)))]
        assert peak == pytest.approx(220, abs=3)


# ---------------------------------------------------------------------------------------------- errors
def test_unknown_voice_is_404_saying_how_to_list_voices(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        speech(client, voice="alloy")
    assert err.value.status_code == 404
    assert "GET /v1/audio/voices" in str(err.value)
    # Voicebox's shape too, for scripts that read ``detail``
    assert "GET /v1/audio/voices" in err.value.response.json()["detail"]


def test_a_failed_generation_is_500_and_not_retried(server: Server) -> None:
    from backend.db.models import ProfileSample

    broken = add_profile_with_sample(server.services, "Broken")
    with server.services.db.read() as session:
        (sample,) = session.query(ProfileSample).filter_by(profile_id=broken).all()
        server.services.blobs.path(sample.audio_path).unlink()
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=2)
    with pytest.raises(openai.InternalServerError) as err:
        speech(client, voice="Broken", input="This cannot work.")
    assert "failed" in str(err.value)
    headers = err.value.response.headers
    assert headers["x-should-retry"] == "false"
    row = httpx.get(f"{server.base_url}/history/{headers['x-generation-id']}", timeout=10).json()
    assert row["status"] == "failed"
    listed = httpx.get(f"{server.base_url}/history", params={"search": "cannot work"}).json()
    assert listed["total"] == 1  # x-should-retry: false kept the SDK from retrying


def test_aac_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        speech(client, response_format="aac")
    assert "aac" in str(err.value) and "ffmpeg" in str(err.value)


def test_unknown_model_and_unstreamable_requests_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        speech(client, model="whisper-1")
    assert "GET /v1/models" in str(err.value)
    # a stream cannot carry flac (its header is rewritten at the end) or a time stretch of the whole
    with pytest.raises(openai.BadRequestError, match="cannot be streamed"):
        speech(client, stream_format="sse", response_format="flac")
    with pytest.raises(openai.BadRequestError, match="speed"):
        speech(client, stream_format="audio", speed=1.5)


def test_blank_and_missing_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="empty"):
        speech(client, input="   ")
    with pytest.raises(openai.UnprocessableEntityError):
        speech(client, input="")


# ---------------------------------------------------------------------------------------------- voices, models
def test_voice_by_id_object_and_case(client: openai.OpenAI, server: Server) -> None:
    for voice in (f"profile:{server.profile_id}", {"id": "Narrator"}, "narrator"):
        data, _ = speech(client, voice=voice, input="Hi.", response_format="wav")
        assert decoded(data)[1] == 24000


def test_model_aliases_all_run_the_configured_engine(client: openai.OpenAI) -> None:
    for model in ("tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", "Qwen3-TTS", "fake"):
        _, response = speech(client, model=model, input="Hi.", response_format="wav")
        assert response.headers["x-voicebox-model"] == "fake"


def test_voices_and_models_listing(client: openai.OpenAI, server: Server) -> None:
    answer = httpx.get(f"{server.base_url}/v1/audio/voices", timeout=10).json()
    assert answer["object"] == "list"
    assert "Narrator" in answer["voices"]
    (entry,) = [v for v in answer["data"] if v["name"] == "Narrator"]
    assert entry["id"] == f"profile:{server.profile_id}"
    assert entry["object"] == "voice" and entry["sample_count"] == 1 and entry["language"] == "en"
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "fake" and {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "qwen3-tts"} <= set(ids)


# ---------------------------------------------------------------------------------------------- history
def test_history_row_is_stored(client: openai.OpenAI, server: Server) -> None:
    text = "A line for the history, spoken once."
    data, response = speech(
        client, input=text, response_format="opus", instructions="calm", speed=1.5
    )
    gen_id = response.headers["x-generation-id"]
    row = httpx.get(f"{server.base_url}/history/{gen_id}", timeout=10).json()
    assert row["status"] == "completed" and row["text"] == text
    assert row["profile_id"] == server.profile_id and row["profile_name"] == "Narrator"
    assert row["instruct"] == "calm" and row["source"] == "openai"
    # the history keeps the generated audio at speed 1.0; the answer was stretched
    assert row["duration"] == pytest.approx(0.06 * len(text), abs=0.01)
    answered, _ = decoded(data)
    assert len(answered) / 24000 == pytest.approx(row["duration"] / 1.5, abs=0.1)


def test_request_id_makes_a_retry_reuse_the_generation(server: Server) -> None:
    body = {"model": "tts-1", "voice": "Narrator", "input": "Once.", "response_format": "wav"}
    headers = {"X-Request-ID": "speech-retry-1"}
    first = httpx.post(f"{server.base_url}/v1/audio/speech", json=body, headers=headers, timeout=60)
    again = httpx.post(f"{server.base_url}/v1/audio/speech", json=body, headers=headers, timeout=60)
    assert first.status_code == again.status_code == 200
    assert first.headers["x-generation-id"] == again.headers["x-generation-id"]
    assert first.content == again.content
    blank = [
        httpx.post(
            f"{server.base_url}/v1/audio/speech",
            json=body,
            headers={"X-Request-ID": ""},
            timeout=60,
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in blank] == [200, 200]
    assert blank[0].headers["x-generation-id"] != blank[1].headers["x-generation-id"]


# ---------------------------------------------------------------------------------------------- RunPod
def test_through_the_runpod_handler_answers_binary(server: Server) -> None:
    settings = server.services.settings
    app = create_app(settings, services=server.services)

    async def main() -> dict:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        handler = JobHandler(settings, base_url="http://127.0.0.1:1", client=http)
        try:
            return await handler(
                {
                    "id": "job-speech-1",
                    "input": {
                        "path": "/v1/audio/speech",
                        "body": {
                            "model": "tts-1",
                            "voice": "Narrator",
                            "input": TEXT,
                            "response_format": "flac",
                        },
                    },
                }
            )
        finally:
            await http.aclose()

    answer = asyncio.run(main())
    assert answer["status_code"] == 200, answer
    assert answer["is_binary"] is True and answer["content_type"] == "audio/flac"
    assert answer["headers"]["x-generation-id"]
    audio, rate = decoded(base64.b64decode(answer["body_base64"]))
    assert rate == 24000 and len(audio) / rate == pytest.approx(TEXT_SECONDS, abs=0.01)
