"""EngineManager with the fake engines: lazy load, one lock, prompt cache, idle unload rules, light imports."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend.engines.base import STTEngine, TTSEngine
from backend.engines.fake import FAKE_TRANSCRIPT, FakeSTTEngine, FakeTTSEngine
from backend.engines.manager import EngineManager
from tests.support.audio import wav_bytes
from tests.support.settings import worker_settings

ROOT = Path(__file__).resolve().parents[1]


def settings(tmp_path: Path, **extra: str):
    return worker_settings(tmp_path / "volume", tmp_path / "local", **extra)


def test_fakes_satisfy_the_protocols() -> None:
    assert isinstance(FakeTTSEngine(), TTSEngine)
    assert isinstance(FakeSTTEngine(), STTEngine)


def test_fake_selected_by_setting_and_loaded_lazily(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path))
    assert mgr.status()["tts"]["loaded"] is False
    engine = mgr.tts()
    assert isinstance(engine, FakeTTSEngine) and engine.is_loaded()
    assert mgr.tts() is engine and mgr.stats.tts_loads == 1
    assert isinstance(mgr.stt(), FakeSTTEngine)
    status = mgr.status()
    assert status["tts"]["loaded"] and status["tts"]["cached"] and status["stt"]["engine"] == "fake"


def test_synthesize_caches_prompt_and_is_deterministic(tmp_path: Path) -> None:
    s = settings(tmp_path)
    mgr = EngineManager(s)
    samples = [(wav_bytes(freq=200.0), "reference")]
    a = mgr.synthesize(samples, "Hello there. " * 10, "en", 1, None, max_chunk_chars=40)
    b = mgr.synthesize(samples, "Hello there. " * 10, "en", 1, None, max_chunk_chars=40)
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert mgr.stats.prompt_builds == 1 and mgr.stats.prompt_cache_hits == 1
    assert mgr.stats.chunks == 8  # 4 chunks per request
    other = EngineManager(s)  # another worker on the same volume
    other.synthesize(samples, "Hi.", "en", 1, None)
    assert other.stats.prompt_builds == 0 and other.stats.prompt_cache_hits == 1
    changed = [(wav_bytes(freq=300.0), "reference")]
    other.synthesize(changed, "Hi.", "en", 1, None)
    assert other.stats.prompt_builds == 1  # a changed sample invalidates


def test_progress_callback_can_cancel(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path))

    class Cancelled(Exception):
        pass

    def cancel_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        mgr.synthesize(
            [(wav_bytes(freq=200.0), "x")],
            "One. Two. Three. Four.",
            None,
            None,
            None,
            max_chunk_chars=5,
            on_progress=cancel_after_two,
        )
    assert mgr.stats.chunks == 2 and mgr.stats.generations == 0
    with pytest.raises(ValueError, match="empty"):
        mgr.synthesize([(wav_bytes(freq=200.0), "x")], "   ", None, None, None)
    with pytest.raises(ValueError, match="no samples"):
        mgr.synthesize([], "Hi", None, None, None)


def test_transcribe_bytes_and_arrays(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path))
    assert mgr.transcribe(wav_bytes(freq=200.0)) == FAKE_TRANSCRIPT
    assert mgr.transcribe(np.zeros(16000, dtype=np.float32), 16000) == ""
    with pytest.raises(ValueError):
        mgr.transcribe(np.zeros(10, dtype=np.float32))
    assert mgr.stats.transcriptions == 2


class SlowEngine(FakeTTSEngine):
    """Records overlapping calls: the device lock must make them zero."""

    active = 0
    overlaps = 0
    loads = 0

    def load(self) -> None:
        type(self).loads += 1
        time.sleep(0.05)
        super().load()

    def generate(self, text, prompt, *, language, seed, instruct):  # type: ignore[no-untyped-def]
        cls = type(self)
        cls.active += 1
        if cls.active > 1:
            cls.overlaps += 1
        time.sleep(0.01)
        cls.active -= 1
        return super().generate(text, prompt, language=language, seed=seed, instruct=instruct)


def test_one_lock_serialises_loads_and_generation(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path), tts_factory=lambda _s: SlowEngine())
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            mgr.synthesize(
                [(wav_bytes(freq=200.0), "x")],
                f"Sentence {i}. Another one.",
                None,
                i,
                None,
                max_chunk_chars=12,
            )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert SlowEngine.loads == 1 and SlowEngine.overlaps == 0
    assert mgr.stats.generations == 4


def test_idle_unload_only_outside_serverless(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path, VOICEBOX_IDLE_UNLOAD_SECONDS="10"))
    mgr.load_all()
    assert not mgr.unload_if_idle(now=time.monotonic() + 5)
    assert mgr.unload_if_idle(now=time.monotonic() + 11)
    assert mgr.stats.unloads == 2 and not mgr.status()["tts"]["loaded"]
    assert mgr.tts().is_loaded() and mgr.stats.tts_loads == 2  # loaded again on next use
    hot = EngineManager(settings(tmp_path, SERVERLESS="1", VOICEBOX_IDLE_UNLOAD_SECONDS="10"))
    hot.load_all()
    assert not hot.unload_if_idle(now=time.monotonic() + 10_000)
    assert hot.tts().is_loaded() and hot.stt().is_loaded()
    hot.start_idle_watcher(0.01)  # a no-op in serverless mode
    assert hot._idle_thread is None
    never = EngineManager(settings(tmp_path))  # VOICEBOX_IDLE_UNLOAD_SECONDS=0: never
    never.load_all()
    assert not never.unload_if_idle(now=time.monotonic() + 10_000)


def test_idle_watcher_unloads(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path, VOICEBOX_IDLE_UNLOAD_SECONDS="0.05"))
    engine = mgr.tts()
    mgr.start_idle_watcher(interval=0.02)
    deadline = time.monotonic() + 5
    while engine.is_loaded() and time.monotonic() < deadline:
        time.sleep(0.02)
    mgr.close()
    assert not engine.is_loaded() and mgr.stats.unloads >= 1


def test_load_failure_is_reported_in_status(tmp_path: Path) -> None:
    from backend.engines.hfcache import ModelNotCachedError

    s = settings(tmp_path, VOICEBOX_TTS_MODEL="acme/not-there", HF_HUB_OFFLINE="1")

    class Missing(FakeTTSEngine):
        def load(self) -> None:
            raise ModelNotCachedError("acme/not-there", "not in the cache")

    mgr = EngineManager(s, tts_factory=lambda _s: Missing("acme/not-there"))
    with pytest.raises(ModelNotCachedError):
        mgr.tts()
    status = mgr.status()
    assert "acme/not-there" in status["tts"]["error"]
    assert status["tts"]["cached"] is False and status["tts"]["cache_problems"]


def test_importing_backend_does_not_import_heavy_libraries() -> None:
    modules = [
        "backend",
        "backend.engines",
        "backend.engines.base",
        "backend.engines.manager",
        "backend.engines.hfcache",
        "backend.engines.prompt_cache",
        "backend.engines.chunking",
        "backend.engines.fake",
        "backend.engines.qwen",
        "backend.engines.whisper",
        "backend.cli.models",
        "backend.engines.demo",
        "backend.engines.tiny",
        "backend.storage.audio",
    ]
    code = (
        "import sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        "from backend.engines.manager import EngineManager\n"
        "heavy = [m for m in ('torch', 'transformers', 'qwen_tts', 'huggingface_hub', 'librosa')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_fake_manager_in_a_subprocess_stays_torch_free(tmp_path: Path) -> None:
    """The API tests' configuration (VOICEBOX_TTS_MODEL=fake) must never pull torch in."""
    code = f"""
import io, sys, numpy as np, soundfile as sf
from backend.config import load_settings
from backend.engines.manager import EngineManager
buf = io.BytesIO(); sf.write(buf, np.full(48000, 0.1, dtype=np.float32), 24000, format='WAV')
s = load_settings({{'VOICEBOX_VOLUME': {str(tmp_path / "v")!r}, 'VOICEBOX_TTS_MODEL': 'fake',
                   'VOICEBOX_STT_MODEL': 'fake'}})
m = EngineManager(s); m.load_all()
m.synthesize([(buf.getvalue(), 'x')], 'Hello.', 'en', 1, None); m.transcribe(buf.getvalue())
m.status()
print('torch' in sys.modules, 'huggingface_hub' in sys.modules)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False False"


def test_health_fields(tmp_path: Path) -> None:
    mgr = EngineManager(settings(tmp_path))
    assert mgr.health()["model_loaded"] is False
    mgr.tts()
    h = mgr.health()
    assert (
        h["model_loaded"] is True and h["model_downloaded"] is True and h["backend_type"] == "fake"
    )
    real = EngineManager(settings(tmp_path, VOICEBOX_TTS_MODEL="Qwen/Qwen3-TTS-12Hz-1.7B-Base"))
    h = real.health()
    assert (
        h["model_size"] == "1.7B" and h["model_downloaded"] is False and h["model_loaded"] is False
    )
    # said before a generate fails, with the command that fixes it
    assert h["model_hint"] == (
        "Qwen/Qwen3-TTS-12Hz-1.7B-Base not downloaded — run "
        "`voicebox-worker models prefetch Qwen/Qwen3-TTS-12Hz-1.7B-Base` (VOICEBOX_VOLUME at the volume)"
    )
    assert "model_hint" not in EngineManager(settings(tmp_path)).health()


def test_health_caches_the_snapshot_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/health`` must not walk the model snapshot on the volume on every call: the verdict is kept until a
    load, an unload or an explicit refresh (a download), and ``/models/status`` refreshes it."""
    from backend.engines import hfcache

    calls: list[str] = []
    real_check = hfcache.check_snapshot

    def counting(hf_home: Path, repo: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(repo)
        return real_check(hf_home, repo, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hfcache, "check_snapshot", counting)
    repo = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    mgr = EngineManager(
        settings(tmp_path, VOICEBOX_TTS_MODEL=repo), tts_factory=lambda _s: FakeTTSEngine()
    )
    for _ in range(5):
        assert mgr.health()["model_downloaded"] is False
    assert calls == [repo]
    mgr.tts()  # a load refreshes it
    mgr.health()
    assert calls == [repo, repo]
    mgr.unload()
    mgr.health()
    mgr.health()
    assert calls == [repo, repo, repo]
    mgr.refresh_downloaded()  # what a download calls
    mgr.health()
    assert len(calls) == 4
    mgr.status()  # checks the snapshot itself and leaves the fresh verdict for /health
    n = len(calls)
    mgr.health()
    assert len(calls) == n
