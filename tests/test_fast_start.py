"""The cold-start savings of ``backend.serverless.fast_start`` move work earlier; they change no result."""

from __future__ import annotations

import gc
import threading
import time

import cpuinfo
import pytest

from backend.serverless.fast_start import gc_paused, prefetch_cpu_info


def test_cpu_info_is_probed_once_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    release = threading.Event()

    def probe() -> dict:
        calls.append(threading.current_thread().name)
        release.wait(5)
        return {"brand_raw": "Test CPU"}

    monkeypatch.setattr(cpuinfo, "get_cpu_info", probe)
    started = time.perf_counter()
    thread = prefetch_cpu_info()
    assert thread is not None
    assert time.perf_counter() - started < 1  # the caller does not wait for the probe
    assert prefetch_cpu_info() is thread  # a second call starts no second probe
    release.set()
    first = cpuinfo.get_cpu_info()
    first["brand_raw"] = "changed by a caller"
    assert cpuinfo.get_cpu_info() == {"brand_raw": "Test CPU"}  # each caller gets its own copy
    assert calls == ["voicebox-cpuinfo"]


def test_a_failed_probe_is_retried_by_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def probe() -> dict:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("no cpuid here")
        return {"brand_raw": "second try"}

    monkeypatch.setattr(cpuinfo, "get_cpu_info", probe)
    prefetch_cpu_info()
    assert cpuinfo.get_cpu_info() == {"brand_raw": "second try"}
    assert calls == ["voicebox-cpuinfo", threading.current_thread().name]


def test_gc_is_off_during_the_cold_start_and_back_on_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a failed phase")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
