"""One ``EngineManager`` per worker: owns the engines, the device lock and the voice prompt cache.

Why one lock around everything that touches the device: PyTorch models are not safe to load, run or unload
concurrently (Voicebox's fork raced its startup preload against the first request and loaded twice), and a seed
only reproduces audio when nothing else draws from the RNG in between. So loads, prompt builds, generation and
transcription are serialised; ``status()`` reads without the lock so a health check never waits on a job.

In serverless mode (``SERVERLESS=1``) the worker calls ``load_all()`` before it reports ready and keeps the
models hot for its life; outside it, an optional idle timer (``VOICEBOX_IDLE_UNLOAD_SECONDS``) frees the GPU.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from backend.config import Settings
from backend.engines.base import (
    VOICEBOX_QWEN_ENGINE,
    AudioCallback,
    AudioPiece,
    IncrementalTTSEngine,
    ProgressCallback,
    STTEngine,
    SynthesisResult,
    TTSEngine,
    VoicePrompt,
)
from backend.engines.chunking import CrossfadeJoiner, split_text
from backend.engines.prompt_cache import PromptCache, prompt_key

log = logging.getLogger(__name__)

TTSFactory = Callable[[Settings], TTSEngine]
STTFactory = Callable[[Settings], STTEngine]


def default_tts_factory(settings: Settings) -> TTSEngine:
    """``fake`` → the deterministic fake; anything else is a Qwen3-TTS Base repo id."""
    if settings.tts_model.strip().lower() == "fake":
        from backend.engines.fake import FakeTTSEngine

        return FakeTTSEngine()
    from backend.engines.qwen import QwenTTSEngine

    return QwenTTSEngine(settings)


def default_stt_factory(settings: Settings) -> STTEngine:
    """``fake`` → the fixed-transcript fake; anything else is a transformers Whisper repo id."""
    if settings.stt_model.strip().lower() == "fake":
        from backend.engines.fake import FakeSTTEngine

        return FakeSTTEngine()
    from backend.engines.whisper import WhisperSTTEngine

    return WhisperSTTEngine(settings)


@dataclass
class EngineStats:
    """Counters for tests, ``/models/status`` and the bench."""

    prompt_builds: int = 0
    prompt_cache_hits: int = 0
    tts_loads: int = 0
    stt_loads: int = 0
    generations: int = 0
    chunks: int = 0
    transcriptions: int = 0
    unloads: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class EngineManager:
    """Lazily loaded TTS/STT engines behind one re-entrant device lock."""

    def __init__(
        self,
        settings: Settings,
        tts_factory: TTSFactory | None = None,
        stt_factory: STTFactory | None = None,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        self.settings = settings
        self._tts_factory = tts_factory or default_tts_factory
        self._stt_factory = stt_factory or default_stt_factory
        self.prompt_cache = prompt_cache or PromptCache.from_settings(settings)
        self.lock = threading.RLock()
        self.stats = EngineStats()
        self._tts: TTSEngine | None = None
        self._stt: STTEngine | None = None
        self._last_used = time.monotonic()
        self._last_error: dict[str, str] = {}
        # /health's "model_downloaded": checking a snapshot stats every file of it on the network volume,
        # so the verdict is kept until a load, an unload or a download (``refresh_downloaded``) changes it.
        self._downloaded: dict[str, bool] = {}
        self._idle_stop = threading.Event()
        self._idle_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ engines
    def _tts_engine(self) -> TTSEngine:
        """The TTS engine object, created if needed but not loaded (constructing one is cheap)."""
        with self.lock:
            if self._tts is None:
                self._tts = self._tts_factory(self.settings)
            return self._tts

    def tts(self) -> TTSEngine:
        """The TTS engine, loaded (lazily, under the lock)."""
        with self.lock:
            engine = self._tts_engine()
            if not engine.is_loaded():
                self._load(engine, "tts")
                self.stats.tts_loads += 1
            self._touch()
            return engine

    @property
    def tts_engine_name(self) -> str:
        """The configured TTS engine's own name (``qwen3-tts``, ``fake``), without loading it."""
        return self._tts_engine().name

    @property
    def voicebox_engine(self) -> str:
        """The Voicebox app's engine id: every TTS engine here is a voice-cloning Qwen3-TTS (or its fake)."""
        return VOICEBOX_QWEN_ENGINE

    def stt(self) -> STTEngine:
        """The STT engine, loaded (lazily, under the lock)."""
        with self.lock:
            if self._stt is None:
                self._stt = self._stt_factory(self.settings)
            if not self._stt.is_loaded():
                self._load(self._stt, "stt")
                self.stats.stt_loads += 1
            self._touch()
            return self._stt

    def _load(self, engine: TTSEngine | STTEngine, kind: str) -> None:
        t0 = time.monotonic()
        try:
            engine.load()
        except Exception as exc:
            self._last_error[kind] = f"{type(exc).__name__}: {exc}"
            raise
        self._last_error.pop(kind, None)
        self.refresh_downloaded()
        log.info("%s engine %s loaded in %.2fs", kind, engine.repo_id, time.monotonic() - t0)

    def load_all(self, include_stt: bool = True) -> None:
        """Eager load for serverless cold start: fail here, before the worker reports ready."""
        self.tts()
        if include_stt:
            self.stt()

    def unload(self, which: str | None = None) -> None:
        """Unload ``"tts"``, ``"stt"`` or both (``None``); the next use loads again."""
        self.refresh_downloaded()
        with self.lock:
            for kind, engine in (("tts", self._tts), ("stt", self._stt)):
                if engine is not None and which in (None, kind) and engine.is_loaded():
                    engine.unload()
                    self.stats.unloads += 1

    def is_loaded(self, kind: str) -> bool:
        """Whether the ``"tts"`` or ``"stt"`` engine is in memory now (lock-free, for status routes)."""
        engine = self._tts if kind == "tts" else self._stt
        return bool(engine is not None and engine.is_loaded())

    def _touch(self) -> None:
        self._last_used = time.monotonic()

    # ------------------------------------------------------------------------------------------ prompts
    def voice_prompt(
        self, profile_samples: Sequence[tuple[bytes, str]]
    ) -> tuple[VoicePrompt, bool]:
        """The voice prompt of a profile's samples (cached), and whether it came from the cache."""
        if not profile_samples:
            raise ValueError("the profile has no samples")
        with self.lock:
            engine = self.tts()
            key = prompt_key(engine.name, engine.repo_id, engine.revision, list(profile_samples))
            prompt = self.prompt_cache.get(key)
            if prompt is not None:
                self.stats.prompt_cache_hits += 1
                return prompt, True
            from backend.storage.audio import TARGET_SR, load_audio

            decoded = [
                (load_audio(data, TARGET_SR), TARGET_SR, text) for data, text in profile_samples
            ]
            prompt = engine.build_prompt(decoded)
            self.stats.prompt_builds += 1
            sources = [hashlib.sha256(data).hexdigest() for data, _ in profile_samples]
            try:
                self.prompt_cache.put(key, prompt, sources)
            except OSError as exc:  # a full volume must not fail the generation itself
                log.warning("could not store voice prompt: %s", exc)
            return prompt, False

    def forget_prompts(self, sample_sha256s: Sequence[str]) -> int:
        """Drop every cached voice prompt built from any of these samples (a deleted profile's)."""
        with self.lock:
            return self.prompt_cache.forget(sample_sha256s)

    def clear_prompts(self) -> int:
        """Drop every cached voice prompt (memory and volume); how many files went."""
        with self.lock:
            return self.prompt_cache.clear()

    # ------------------------------------------------------------------------------------------ work
    def synthesize_detailed(
        self,
        profile_samples: Sequence[tuple[bytes, str]],
        text: str,
        language: str | None = None,
        seed: int | None = None,
        instruct: str | None = None,
        max_chunk_chars: int = 800,
        crossfade_ms: float = 50,
        on_progress: ProgressCallback | None = None,
        on_audio: AudioCallback | None = None,
    ) -> SynthesisResult:
        """Clone the profile's voice for ``text``: prompt (cached) → chunks → generate each → crossfade.

        Chunk ``i`` is generated with ``seed + i`` so a seeded request is reproducible chunk by chunk.
        ``on_audio`` streams the output: after each chunk it gets the samples that are final now (the joined
        audio is the concatenation of the pieces, so streamed and whole output are the same samples).
        """
        chunks = split_text(text, max_chunk_chars)
        if not chunks:
            raise ValueError("text is empty")
        with self.lock:
            t0 = time.monotonic()
            loads_before = self.stats.tts_loads
            engine = self.tts()
            load_s = time.monotonic() - t0 if self.stats.tts_loads > loads_before else 0.0
            t1 = time.monotonic()
            prompt, cached = self.voice_prompt(profile_samples)
            t2 = time.monotonic()
            joiner = CrossfadeJoiner(engine.sample_rate, crossfade_ms)
            pieces = []
            every = self.settings.stream_decode_frames
            incremental = (
                engine
                if on_audio is not None and every > 0 and isinstance(engine, IncrementalTTSEngine)
                else None
            )
            for i, chunk in enumerate(chunks):
                chunk_seed = None if seed is None else int(seed) + i
                if incremental is not None:  # VOICEBOX_STREAM_DECODE_FRAMES: audio inside the chunk
                    joiner.open_part()

                    def emit(samples: np.ndarray, index: int = i) -> None:
                        early = joiner.feed(samples)
                        if early.size:
                            pieces.append(early)
                            piece = AudioPiece(
                                early, samples, index, len(chunks), engine.sample_rate
                            )
                            if on_audio is not None:
                                on_audio(piece)

                    part = incremental.generate_incremental(
                        chunk,
                        prompt,
                        language=language,
                        seed=chunk_seed,
                        instruct=instruct,
                        every_frames=every,
                        emit=emit,
                    )
                    ready = joiner.close_part()
                else:
                    part = engine.generate(
                        chunk, prompt, language=language, seed=chunk_seed, instruct=instruct
                    )
                    ready = joiner.push(part)
                if i + 1 == len(chunks):
                    ready = np.concatenate([ready, joiner.finish()])
                pieces.append(ready)
                self.stats.chunks += 1
                self._touch()
                if on_audio is not None:
                    on_audio(AudioPiece(ready, part, i, len(chunks), engine.sample_rate))
                if on_progress is not None:
                    on_progress(i + 1, len(chunks))
            audio = np.concatenate(pieces).astype(np.float32, copy=False)
            self.stats.generations += 1
            self._touch()
            return SynthesisResult(
                audio=audio,
                sample_rate=engine.sample_rate,
                chunks=len(chunks),
                prompt_cached=cached,
                load_seconds=load_s,
                prompt_seconds=t2 - t1,
                synthesis_seconds=time.monotonic() - t2,
                chunk_chars=[len(c) for c in chunks],
            )

    def synthesize(
        self,
        profile_samples: Sequence[tuple[bytes, str]],
        text: str,
        language: str | None = None,
        seed: int | None = None,
        instruct: str | None = None,
        max_chunk_chars: int = 800,
        crossfade_ms: float = 50,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Float32 mono audio at the engine's rate (24 kHz); see ``synthesize_detailed``."""
        return self.synthesize_detailed(
            profile_samples,
            text,
            language,
            seed,
            instruct,
            max_chunk_chars=max_chunk_chars,
            crossfade_ms=crossfade_ms,
            on_progress=on_progress,
        ).audio

    def transcribe(
        self,
        audio: np.ndarray | bytes,
        sample_rate: int | None = None,
        language: str | None = None,
    ) -> str:
        """Transcribe an array at ``sample_rate``, or encoded audio bytes (wav/flac/ogg/mp3)."""
        if isinstance(audio, bytes | bytearray):
            from backend.storage.audio import decode_audio

            audio, sample_rate = decode_audio(bytes(audio))
        if not sample_rate:
            raise ValueError("sample_rate is required for an array")
        with self.lock:
            engine = self.stt()
            text = engine.transcribe(
                np.asarray(audio, dtype=np.float32), int(sample_rate), language
            )
            self.stats.transcriptions += 1
            self._touch()
            return text

    # ------------------------------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """What is configured, loaded and cached; never takes the lock (safe during a long job)."""
        from backend.engines.hfcache import check_snapshot

        def describe(kind: str, engine: TTSEngine | STTEngine | None, repo: str) -> dict[str, Any]:
            info: dict[str, Any] = {"model": repo, "loaded": False}
            if engine is not None:
                info.update(engine.info())
                info["loaded"] = engine.is_loaded()
            if repo.strip().lower() == "fake":
                info["cached"] = True
            else:
                snap = check_snapshot(self.settings.hf_home, repo)
                info["cached"] = snap.complete
                self._downloaded[repo] = snap.complete  # /health reuses this fresh verdict
                if not snap.complete:
                    info["cache_problems"] = snap.problems
            if kind in self._last_error:
                info["error"] = self._last_error[kind]
            return info

        return {
            "tts": describe("tts", self._tts, self.settings.tts_model),
            "stt": describe("stt", self._stt, self.settings.stt_model),
            "device": self.settings.device,
            "serverless": self.settings.serverless,
            "idle_seconds": round(time.monotonic() - self._last_used, 1),
            "stats": self.stats.as_dict(),
            "prompt_cache": self.prompt_cache.stats(),
        }

    def refresh_downloaded(self) -> None:
        """Forget the cached snapshot verdicts; call after anything that adds or removes model files (a load,
        an unload, a download or a delete). The next ``health()`` checks the snapshot once again."""
        self._downloaded.clear()

    def _model_downloaded(self, repo: str) -> bool:
        from backend.engines.hfcache import check_snapshot

        verdict = self._downloaded.get(repo)
        if verdict is None:
            verdict = check_snapshot(self.settings.hf_home, repo).complete
            self._downloaded[repo] = verdict
        return verdict

    def health(self) -> dict[str, Any]:
        """Voicebox's ``/health`` engine fields; cheap and lock-free (torch is only asked if imported)."""
        import re
        import sys

        repo = self.settings.tts_model
        tts = self._tts
        fake = repo.strip().lower() == "fake"
        size = re.search(r"(\d+(?:\.\d+)?[BM])-", repo + "-")
        info: dict[str, Any] = {
            "model_loaded": bool(tts is not None and tts.is_loaded()),
            "model_downloaded": True if fake else self._model_downloaded(repo),
            "model_size": size.group(1) if size else None,
            "backend_type": "fake" if fake else "pytorch",
            "backend_variant": getattr(tts, "device", None) or self.settings.device,
        }
        if not info["model_downloaded"] and not info["model_loaded"]:
            from backend.engines.hfcache import not_downloaded_hint

            info["model_hint"] = not_downloaded_hint(repo)
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                if torch.cuda.is_available():
                    info["gpu_available"] = True
                    info["gpu_type"] = torch.cuda.get_device_name(0)
                    info["vram_used_mb"] = round(torch.cuda.memory_allocated(0) / 2**20, 1)
            except Exception:  # noqa: BLE001 - a broken driver must not break health
                log.debug("torch.cuda probe failed", exc_info=True)
        return info

    # ------------------------------------------------------------------------------------------ idle
    def unload_if_idle(self, now: float | None = None) -> bool:
        """Unload when idle past ``idle_unload_seconds``; never in serverless mode (models stay hot)."""
        limit = self.settings.idle_unload_seconds
        if self.settings.serverless or limit <= 0:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_used < limit:
            return False
        if not self.lock.acquire(blocking=False):
            return False  # busy: by definition not idle
        try:
            loaded = any(e is not None and e.is_loaded() for e in (self._tts, self._stt))
            if loaded:
                self.unload()
            return loaded
        finally:
            self.lock.release()

    def start_idle_watcher(self, interval: float = 30.0) -> None:
        """Background check for ``unload_if_idle`` (a no-op in serverless mode or with the timer off)."""
        if self.settings.serverless or self.settings.idle_unload_seconds <= 0:
            return
        if self._idle_thread is not None:
            return

        def run() -> None:
            while not self._idle_stop.wait(interval):
                try:
                    self.unload_if_idle()
                except Exception:  # noqa: BLE001 - the watcher must never die silently mid-life
                    log.exception("idle unload failed")

        self._idle_thread = threading.Thread(target=run, name="engine-idle", daemon=True)
        self._idle_thread.start()

    def close(self) -> None:
        """Stop the idle watcher and unload everything."""
        self._idle_stop.set()
        if self._idle_thread is not None:
            self._idle_thread.join(timeout=5)
            self._idle_thread = None
        self.unload()
