"""Services take what they use: each is built by the container from settings, database, blobs, engines and the
services it calls; a worker without engines still answers 409; a durable generation and an unpersisted stream
ask the engine the same thing; a speech request makes one ``GenerationInput`` for a file and for a stream."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backend.config import Settings
from backend.engines.base import SynthesisResult
from backend.engines.manager import EngineManager
from backend.services.container import Services
from backend.services.errors import ConflictError
from backend.services.speech import SpeechRequest
from backend.services.streaming import StreamEnd
from backend.services.synthesis import GenerationInput
from tests.support.audio import wav_bytes
from tests.support.generation import add_profile_with_sample
from volume_bootstrap.bootstrap import bootstrap

SERVICES = Path(__file__).resolve().parent.parent / "backend" / "services"


def test_no_service_takes_the_container() -> None:
    """Only ``container.py`` knows ``Services``: a service naming it would depend on every other service."""
    offenders = []
    for path in sorted(SERVICES.rglob("*.py")):
        rel = path.relative_to(SERVICES).as_posix()
        if rel == "container.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "backend.services.container":
                offenders.append(f"{rel}:{node.lineno} imports the container")
            if isinstance(node, ast.arg) and node.arg == "services":
                offenders.append(f"{rel}:{node.lineno} takes a `services` argument")
    assert offenders == []


class Recording(EngineManager):
    """The fake engines, recording what each synthesis was asked."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls: list[dict[str, Any]] = []

    def synthesize_detailed(
        self, profile_samples: Sequence[tuple[bytes, str]], text: str, *args: Any, **kwargs: Any
    ) -> SynthesisResult:
        asked = {k: v for k, v in kwargs.items() if k not in ("on_progress", "on_audio")}
        self.calls.append({"samples": list(profile_samples), "text": text, "args": args, **asked})
        return super().synthesize_detailed(profile_samples, text, *args, **kwargs)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    return settings


def test_a_worker_without_engines_answers_409(settings: Settings, tmp_path: Path) -> None:
    bare = Services.create(settings)
    try:
        profile_id = add_profile_with_sample(bare)
        request = GenerationInput(profile_id=profile_id, text="Hello.")
        tts = "no TTS engine is configured on this worker"
        with pytest.raises(ConflictError, match=tts):
            bare.generation.start(request)
        with pytest.raises(ConflictError, match=tts):
            bare.generation.retry("any")
        with pytest.raises(ConflictError, match=tts):
            bare.generation.regenerate("any")
        with pytest.raises(ConflictError, match=tts):
            bare.streaming.open(request, persist=False)
        assert bare.streaming.active == 0  # the refusal took no stream slot
        clip = tmp_path / "clip.wav"
        clip.write_bytes(wav_bytes(1.0))
        with pytest.raises(ConflictError, match="no speech-to-text engine is configured"):
            bare.transcription.transcribe(clip)
    finally:
        bare.close()


def test_generation_and_unpersisted_stream_ask_the_engine_the_same(settings: Settings) -> None:
    engines = Recording(settings)
    services = Services.create(settings, engines=engines)
    try:
        profile_id = add_profile_with_sample(services)
        request = GenerationInput(
            profile_id=profile_id,
            text="Same words. Twice over.",
            language="de",
            seed=11,
            instruct="softly",
            max_chunk_chars=120,
            crossfade_ms=20,
        )
        row = services.generation.start(request)
        assert services.generation.wait(row.id, 60).status == "completed"
        stream = services.streaming.open(request, persist=False)
        while not isinstance(item := stream.read(timeout=60), StreamEnd):
            assert item is not None, "the stream stalled"
        assert item.status == "completed", item.error
        durable, streamed = engines.calls
        assert durable == streamed
        assert durable["language"] == "de" and durable["seed"] == 11
        assert durable["instruct"] == "softly" and durable["max_chunk_chars"] == 120
        assert durable["crossfade_ms"] == 20 and durable["samples"][0][1] == "hello there"
    finally:
        services.close()


def test_speech_makes_one_generation_input_for_a_file_and_a_stream(settings: Settings) -> None:
    from backend.api.openai_compat import speech_service

    services = Services.create(settings, engines=EngineManager(settings))
    try:
        profile_id = add_profile_with_sample(services, "Reader")
        # built as the route builds it, from the app's services
        route_request = SimpleNamespace(
            app=SimpleNamespace(state=SimpleNamespace(services=services))
        )
        speech = speech_service(route_request)
        assert speech.generation is services.generation and speech.streaming is services.streaming
        request = SpeechRequest(
            model="tts-1", input="Hi.", voice="reader", instructions="", seed=3, request_id="r-1"
        )
        made = speech._generation_input(request)
        assert made == GenerationInput(
            profile_id=profile_id,
            text="Hi.",
            language="en",  # the profile's language when the request names none
            seed=3,
            instruct=None,  # an empty instruction is none
            request_id="r-1",
            source="openai",
        )
        assert (
            speech._generation_input(
                SpeechRequest("tts-1", "Hi.", "Reader", language="fr")
            ).language
            == "fr"
        )
    finally:
        services.close()
