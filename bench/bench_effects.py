"""Effects and story mixdown: time and peak memory (``python -m bench --only effects``).

Each case runs in a fresh subprocess; ``peak_mb`` is its peak RSS during the work (``VmHWM`` after resetting it
through ``/proc/self/clear_refs``) minus its RSS just before (imports and the source file excluded). ``ratio`` compares the
block-wise path with the whole-array one on the same input where both are run.

- ``effects 4-chain``: highpass → compressor → reverb → gain on a mono 24 kHz WAV (60 s), block-wise
  (``backend.storage.effects.apply_to_file``) vs the whole array through one ``Pedalboard`` call.
- ``effects 10 min``: the same chain on a 10-minute file, block-wise (the bounded-memory claim).
- ``story export``: 50 clips laid over 10 minutes on two tracks, mixed to WAV
  (``backend.storage.mixdown.mixdown``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETUP = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np, soundfile as sf
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
def rss_mb():
    try:  # reset the high-water mark, so the peak measured is the work's own
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS:")
def peak_mb():
    return _status("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tmp = Path(TMP)
def tone(path, seconds, seed=0):
    rng = np.random.default_rng(seed)
    with sf.SoundFile(str(path), "w", samplerate=24000, channels=1, subtype="PCM_16") as out:
        left = int(seconds * 24000)
        while left:
            n = min(left, 240000)
            t = np.arange(n) / 24000
            out.write((0.2 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.02 * rng.standard_normal(n)).astype("float32"))
            left -= n
CHAIN = [
    {"type": "highpass", "params": {"cutoff_frequency_hz": 100.0}},
    {"type": "compressor", "params": {"threshold_db": -18.0, "ratio": 3.0}},
    {"type": "reverb", "params": {"room_size": 0.5}},
    {"type": "gain", "params": {"gain_db": -2.0}},
]
"""

#: the inputs, written by a process of their own (its allocations must not mask the work's peak)
INPUTS = {
    "effects": 'tone(tmp / "src.wav", SECONDS)',
    "story": r"""
step = SECONDS * 1000 / ITEMS
for i in range(ITEMS):
    tone(tmp / f"c{i}.wav", step / 1000 * 1.2, seed=i % 5)
""",
}
CASES = {
    "effects_blocks": r"""
from backend.storage.effects import apply_to_file, validate_chain
chain = validate_chain(CHAIN)
src = tmp / "src.wav"
import pedalboard  # loaded before the baseline
base = rss_mb(); t0 = time.perf_counter()
apply_to_file(src, tmp / "out.wav", chain)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "peak_mb": peak_mb() - base}))
""",
    "effects_whole": r"""
from backend.storage.effects import _board, validate_chain
chain = validate_chain(CHAIN)
src = tmp / "src.wav"
import pedalboard
base = rss_mb(); t0 = time.perf_counter()
audio, sr = sf.read(str(src), dtype="float32")
out = _board(chain)(audio.reshape(1, -1), sr)
sf.write(str(tmp / "out.wav"), out.reshape(-1), sr, subtype="PCM_16")
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "peak_mb": peak_mb() - base}))
""",
    "story": r"""
from backend.storage.mixdown import Clip, mixdown
clips = []
step = SECONDS * 1000 / ITEMS
for i in range(ITEMS):
    path = tmp / f"c{i}.wav"
    clips.append(Clip(path, int(i * step), 50, 50, 0.8 if i % 2 else 1.0))
base = rss_mb(); t0 = time.perf_counter()
seconds = mixdown(clips, tmp / "story.wav")
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "peak_mb": peak_mb() - base, "seconds": seconds}))
""",
}


def _python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout


def _run(case: str, **params: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-fx-") as tmp:
        prelude = f"TMP = {tmp!r}\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
        _python(
            SETUP.replace("tmp = Path(TMP)", prelude + "tmp = Path(TMP)")
            + INPUTS[case.split("_")[0]]
        )
        out = _python(SETUP.replace("tmp = Path(TMP)", prelude + "tmp = Path(TMP)") + CASES[case])
    return json.loads(out.strip().splitlines()[-1])


def run(short: bool) -> list[dict]:
    seconds = 10 if short else 60
    blocks = _run("effects_blocks", SECONDS=seconds)
    whole = _run("effects_whole", SECONDS=seconds)
    rows = [
        {
            "bench": "effects 4-chain",
            "case": f"{seconds} s, blocks",
            "p50_ms": round(blocks["ms"], 1),
            "ratio": round(blocks["ms"] / whole["ms"], 2) if whole["ms"] else "",
            "peak_mb": round(blocks["peak_mb"], 1),
            "whole_array_ms": round(whole["ms"], 1),
            "whole_array_peak_mb": round(whole["peak_mb"], 1),
        }
    ]
    if not short:
        long = _run("effects_blocks", SECONDS=600)
        rows.append(
            {
                "bench": "effects 4-chain",
                "case": "600 s, blocks",
                "p50_ms": round(long["ms"], 1),
                "peak_mb": round(long["peak_mb"], 1),
            }
        )
    items, story_seconds = (10, 60) if short else (50, 600)
    story = _run("story", SECONDS=story_seconds, ITEMS=items)
    rows.append(
        {
            "bench": "story export",
            "case": f"{items} items / {story_seconds} s",
            "p50_ms": round(story["ms"], 1),
            "peak_mb": round(story["peak_mb"], 1),
            "mix_seconds": round(story["seconds"], 1),
        }
    )
    return rows
