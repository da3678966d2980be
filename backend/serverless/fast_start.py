"""Two cold-start savings that change no behaviour, only when work happens.

- **py-cpuinfo's probe, started first**: ``import runpod`` imports ``runpod.serverless.utils.rp_debugger``, which
  calls ``cpuinfo.get_cpu_info()`` at import time for a debug string. That call starts a second Python
  interpreter (``python cpuinfo.py --json``) and waits for it: ~1.2 s on the critical path of a 2-core start,
  after the worker is otherwise ready. :func:`prefetch_cpu_info` starts that probe in a background thread at the
  very beginning of the cold start (the subprocess runs on another core while this one imports torch) and makes
  ``cpuinfo.get_cpu_info`` return its result, so the SDK's import later finds the answer waiting. The value is
  the same one the SDK would have computed.
- **No garbage collection during the cold start**: importing torch, transformers and qwen_tts and loading the
  models creates ~950k objects and almost no garbage, yet the allocations trigger collections that scan
  everything already imported again and again (~1.3 s of ~7.8 s CPU to ready, measured here). :func:`gc_paused`
  turns the collector off for the cold start and back on when it ends; the one collection that follows scans
  each object once and frees the little cyclic garbage of the start (~17k small objects, ~10 MB, no tensors with
  the demo models). The survivors are not frozen (``gc.freeze`` would save ~0.5 s more): a frozen model that
  holds a reference cycle could never be freed by an unload.

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
    if isinstance(current, _PrefetchedCpuInfo):
        return current.thread
    prefetched = _PrefetchedCpuInfo(current)
    cpuinfo.get_cpu_info = prefetched
    prefetched.thread.start()
    return prefetched.thread


class _PrefetchedCpuInfo:
    """Stands in for ``cpuinfo.get_cpu_info``: waits for the background probe and returns a copy of its
    answer, or probes again in the caller when the background probe failed."""

    def __init__(self, probe: Callable[[], dict[str, Any]]) -> None:
        self._probe = probe
        self._result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, name="voicebox-cpuinfo", daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the caller then probes itself, as it would have
            self._result["info"] = self._probe()

    def __call__(self) -> dict[str, Any]:
        self.thread.join()
        if "info" in self._result:
            return dict(self._result["info"])
        return self._probe()


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
