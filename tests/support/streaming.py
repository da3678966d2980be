"""Helpers for streaming tests: a fake engine whose chunks wait for the test, and the app on a real socket.

Why a gate: "the first audio arrives before the synthesis finished" must be checked by events, not by wall
time. ``GatedTTSEngine`` lets chunk ``i`` be generated only after the test released it, so a test can read
the first chunk from the HTTP stream while the engine is provably still waiting for the second.

Why a real socket (``ServerThread``): httpx's ``ASGITransport`` collects the whole body before it answers, so
nothing streamed through it would ever arrive early.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.app import create_app
from backend.config import Settings
from backend.engines.base import VoicePrompt
from backend.engines.fake import FakeTTSEngine
from backend.engines.manager import EngineManager
from backend.serverless.launcher import ServerThread
from backend.services.container import Services
from tests.support.api import api_settings_for, fresh_volume
from tests.support.generation import add_profile_with_sample

#: three sentences that split into three chunks at ``max_chunk_chars=100``
THREE_CHUNKS = (
    "The first sentence of this text is long enough to fill most of a chunk by itself. "
    "The second sentence follows it and is about as long as the first one was, too. "
    "The third and last sentence closes the text and makes the third chunk of it."
)


class GatedTTSEngine(FakeTTSEngine):
    """The fake engine, but each ``generate`` waits until the test ``release``s it (when ``gated``)."""

    def __init__(self, gated: bool = True) -> None:
        super().__init__()
        self.gated = gated
        self._gate = threading.Semaphore(0)
        self.started = threading.Semaphore(0)  # released when a chunk starts generating

    def release(self, chunks: int = 1) -> None:
        for _ in range(chunks):
            self._gate.release()

    def open_gate(self) -> None:
        self.gated = False
        self.release(1000)

    def generate(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        language: str | None,
        seed: int | None,
        instruct: str | None,
    ) -> np.ndarray:
        self.started.release()
        if self.gated and not self._gate.acquire(timeout=60):
            raise RuntimeError("the test never released this chunk")
        return super().generate(text, prompt, language=language, seed=seed, instruct=instruct)


@dataclass
class StreamServer:
    base_url: str
    settings: Settings
    services: Services
    engine: GatedTTSEngine
    profile_id: str


def stream_settings(root: Path, template: Path, **env: str) -> Settings:
    return api_settings_for(fresh_volume(template, root / "volume"), root / "local", **env)


@contextmanager
def stream_server(
    root: Path, template: Path, *, gated: bool = False, **env: str
) -> Iterator[StreamServer]:
    """The real app with a ``GatedTTSEngine`` on a loopback socket, and one profile with a sample."""
    settings = stream_settings(root, template, **env)
    engine = GatedTTSEngine(gated=gated)
    services = Services.create(
        settings, engines=EngineManager(settings, tts_factory=lambda _s: engine)
    )
    profile_id = add_profile_with_sample(services, "Narrator")
    thread = ServerThread(create_app(settings, services=services)).start()
    assert thread.wait_ready(30), thread.describe_exit()
    try:
        yield StreamServer(thread.base_url, settings, services, engine, profile_id)
    finally:
        engine.open_gate()
        thread.stop()
        services.close()
