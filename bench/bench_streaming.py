"""Streamed speech: time to the first audio byte vs the whole answer, for 200 / 1,000 / 5,000 characters,
through ``POST /generate/stream``, OpenAI's ``stream_format=sse`` and a RunPod stream job read from the mock's
``/stream/{id}`` (the client's ``RemoteStream``). The engine is the tiny real Qwen3-TTS Base (random weights,
CPU; each chunk stops at its ``max_new_tokens`` of 24 frames, so a chunk costs the same whatever it says).

A fourth row set runs ``POST /generate/stream`` with ``VOICEBOX_STREAM_DECODE_FRAMES=6`` (audio inside a chunk).

``p50_ms`` is the time to the first audio byte; ``ratio`` is that over the total time of the same request
(target shape: the first audio after about one chunk, independent of the text's length). Run it on a GPU with
a real model by setting ``VOICEBOX_TTS_MODEL``/``VOICEBOX_DEVICE`` (the volume must hold the model).
"""

from __future__ import annotations

import base64
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile

SENTENCE = "This sentence is one of many that make a long text for the streaming benchmark here. "


def _text(chars: int) -> str:
    return (SENTENCE * (chars // len(SENTENCE) + 1))[:chars].rsplit(" ", 1)[0] + "."


def _wav(seconds: float = 3.0) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    buf = io.BytesIO()
    soundfile.write(
        buf, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24000, format="WAV"
    )
    return buf.getvalue()


def _direct(base: str, profile_id: str, text: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = 0.0
    seen = 0
    body = {"profile_id": profile_id, "text": text, "seed": 1}
    with httpx.stream("POST", f"{base}/generate/stream", json=body, timeout=900) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            seen += len(chunk)
            if not first and seen > 44:  # past the WAV header: audio
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


def _openai_sse(base: str, text: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = 0.0
    body = {
        "model": "tts-1",
        "voice": "Bench",
        "input": text,
        "response_format": "pcm",
        "stream_format": "sse",
    }
    with httpx.stream("POST", f"{base}/v1/audio/speech", json=body, timeout=900) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and not first:
                event = json.loads(line[6:])
                if event["type"] == "speech.audio.delta" and base64.b64decode(event["audio"]):
                    first = time.perf_counter() - started
    return first, time.perf_counter() - started


def _runpod(client, text: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    stream = client.generate_stream(text, profile="Bench", seed=1)
    first = 0.0
    for chunk in stream:
        if chunk and not first:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


def run(short: bool = False) -> list[dict]:
    from backend.app import create_app
    from backend.client.client import VoiceboxClient
    from backend.config import load_settings
    from backend.engines.chunking import split_text
    from backend.engines.hfcache import configure_hf_env
    from backend.engines.manager import EngineManager
    from backend.engines.qwen import import_qwen_tts
    from backend.engines.tiny import install_tiny_models
    from backend.serverless.handler import JobHandler
    from backend.serverless.launcher import ServerThread
    from backend.services.container import Services
    from tests.support.runpod_mock import RunPodMock
    from volume_bootstrap.bootstrap import bootstrap

    sizes = (200, 1000) if short else (200, 1000, 5000)
    repeats = 1 if short else 3
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        volume = Path(tmp) / "volume"
        volume.mkdir()
        env = {
            "VOICEBOX_VOLUME": str(volume),
            "VOICEBOX_LOCAL_DIR": str(Path(tmp) / "local"),
            "VOICEBOX_TTS_MODEL": os.environ.get(
                "VOICEBOX_TTS_MODEL", "voicebox-bench/tiny-qwen3-tts-base"
            ),
            "VOICEBOX_STT_MODEL": "fake",
            "VOICEBOX_DEVICE": os.environ.get("VOICEBOX_DEVICE", "cpu"),
            "VOICEBOX_WORKER_ID": "bench",
        }
        settings = load_settings(env)
        configure_hf_env(settings)
        if settings.tts_model.startswith("voicebox-bench/"):
            install_tiny_models(settings.hf_home, settings.tts_model, "voicebox-bench/tiny-whisper")
        import_qwen_tts()
        bootstrap(settings, run_fsck=False)
        services = Services.create(settings, engines=EngineManager(settings))
        server = ServerThread(create_app(settings, services=services)).start()
        assert server.wait_ready(60), server.describe_exit()
        handler = JobHandler(settings, base_url=server.base_url)
        try:
            base = server.base_url
            profile = httpx.post(f"{base}/profiles", json={"name": "Bench"}, timeout=60).json()
            httpx.post(
                f"{base}/profiles/{profile['id']}/samples",
                files={"file": ("s.wav", _wav(), "audio/wav")},
                data={"reference_text": "This is the benchmark voice."},
                timeout=600,
            ).raise_for_status()
            _direct(base, profile["id"], "Warm up the model and the voice prompt.")
            with RunPodMock(handler.stream, stream_wait=0.2) as mock:
                client = VoiceboxClient(
                    mock.endpoint_id,
                    api_key=mock.api_key,
                    api_base=mock.api_base,
                    env={},
                    env_file=os.devnull,
                    timeout=900,
                )
                # the same engine behind a second app whose streams decode every 6 codec frames
                env_inc = {
                    **env,
                    "VOICEBOX_STREAM_DECODE_FRAMES": "6",
                    "VOICEBOX_LOCAL_DIR": str(Path(tmp) / "local-incremental"),
                }
                settings_inc = load_settings(env_inc)
                engine = services.engines.tts()  # type: ignore[union-attr]
                services_inc = Services.create(
                    settings_inc,
                    engines=EngineManager(settings_inc, tts_factory=lambda _s: engine),
                )
                server_inc = ServerThread(create_app(settings_inc, services=services_inc)).start()
                assert server_inc.wait_ready(60), server_inc.describe_exit()
                base_inc = server_inc.base_url
                paths = {
                    "POST /generate/stream": lambda text: _direct(base, profile["id"], text),
                    "POST /generate/stream, codec decoded every 6 frames": lambda text: _direct(
                        base_inc, profile["id"], text
                    ),
                    "OpenAI SSE": lambda text: _openai_sse(base, text),
                    "RunPod /stream (mock)": lambda text: _runpod(client, text),
                }
                for name, call in paths.items():
                    for chars in sizes:
                        text = _text(chars)
                        runs = [call(text) for _ in range(repeats)]
                        first = statistics.median(r[0] for r in runs) * 1000
                        total = statistics.median(r[1] for r in runs) * 1000
                        rows.append(
                            {
                                "bench": f"stream first audio, {name}",
                                "case": f"{chars} chars",
                                "p50_ms": round(first, 1),
                                "ratio": round(first / total, 3) if total else None,
                                "total_ms": round(total, 1),
                                "chunks": len(split_text(text)),
                            }
                        )
                server_inc.stop()
                services_inc.close()
        finally:
            server.stop()
            services.close()
    return rows
