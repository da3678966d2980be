"""Two cold-start savings that change no behaviour, only when work happens.

- **py-cpuinfo's probe, started first**: ``import runpod`` imports ``runpod.serverless.utils.rp_debugger``, which
  calls ``cpuinfo.get_cpu_info()`` at import time for a debug string. That call starts a second Python
  interpreter (``python cpuinfo.py --json``) and waits for it: ~1.2 s on the critical path of a 2-core start,
  after the worker is otherwise ready. :func:`prefetch_cpu_info` starts that probe in a background thread at the
  very beginning of the cold start (the subprocess runs on another core while this one imports torch) and makes
  ``cpuinfo.get_cpu_info`` return its result, so the SDK's import later finds the answer waiting. The value is
  the same one the SDK would have computed.
- **No garbage collection during the imports**: importing torch, transformers and qwen_tts creates millions of
  objects and almost no garbage, yet each allocation burst triggers generation scans over everything already
  imported (~10 % of the import CPU time measured here). :func:`gc_paused` turns the collector off for the cold
  start and back on when it ends. The little cyclic garbage a start leaves (~15k objects of ~870k with the demo
  models) is collected by the next full collection, as it would have been; the survivors are not frozen
  (``gc.freeze``), so no garbage that holds a tensor can outlive the start.

``bench/bench_cold_start.py`` measures the effect; ``docs/performance.md`` has the figures.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["gc_paused", "prefetch_cpu_info"]


def prefetch_cpu_info() -> threading.Thread | None:
    """Start py-cpuinfo's probe now, in a daemon thread; later ``cpuinfo.get_cpu_info()`` calls wait for it.

    Returns the thread, or None when py-cpuinfo is not installed (the SDK then has nothing to probe).
    Calling it twice starts no second probe.
    """
    try:
        import cpuinfo
    except ImportError:
        return None
    current = cpuinfo.get_cpu_info
    existing = getattr(current, "prefetch_thread", None)
    if isinstance(existing, threading.Thread):
        return existing
    probe: Callable[[], dict[str, Any]] = current
    result: dict[str, Any] = {}

    def run() -> None:
        with contextlib.suppress(Exception):  # the caller then probes itself, as it would have
            result["info"] = probe()

    thread = threading.Thread(target=run, name="voicebox-cpuinfo", daemon=True)

    def get_cpu_info() -> dict[str, Any]:
        thread.join()
        if "info" in result:
            return dict(result["info"])
        return probe()

    get_cpu_info.prefetch_thread = thread  # type: ignore[attr-defined]
    cpuinfo.get_cpu_info = get_cpu_info
    thread.start()
    return thread


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside, back on afterwards (if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
