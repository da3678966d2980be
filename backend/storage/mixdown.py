"""A story's mixdown in bounded memory: every clip at its time, trim and volume, summed block by block.

Why blocks: a story of 50 clips over 10 minutes as one float array per clip plus the mix would hold hundreds of
megabytes; here only ``BLOCK_FRAMES`` per open clip and one mix block are in memory, whatever the length. Clips
are opened when the mix reaches them and closed when they end, each read sequentially (a clip at another
sample rate goes through a streaming ``soxr`` resampler). Two passes keep levels right: the sum is written as
float WAV while its peak is measured, then copied into the PCM-16 result, scaled down only if the peak is over
full scale (upstream's mixer also normalises the peak rather than clipping).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

BLOCK_FRAMES = 65536
MIX_RATE = 24000  # the engines' rate: clips are almost always at it already


@dataclass(frozen=True)
class Clip:
    path: Path
    start_ms: int
    trim_start_ms: int
    trim_end_ms: int
    volume: float


class _Reader:
    """Sequential frames of one clip at the mix rate, trimmed, zero-padded past its end."""

    def __init__(self, clip: Clip, rate: int) -> None:
        self.file = sf.SoundFile(str(clip.path))
        src = self.file.samplerate
        first = int(clip.trim_start_ms * src / 1000)
        last = max(first, self.file.frames - int(clip.trim_end_ms * src / 1000))
        self.remaining_src = last - first
        self.file.seek(min(first, self.file.frames))
        self.resampler = None
        if src != rate:
            import soxr

            self.resampler = soxr.ResampleStream(src, rate, 1, dtype="float32")
        self.buffer = np.zeros(0, dtype=np.float32)
        self.frames = int(self.remaining_src * rate / src)  # the clip's length at the mix rate
        self.volume = clip.volume

    def read(self, n: int) -> np.ndarray:
        while len(self.buffer) < n and (self.remaining_src > 0 or self.resampler is not None):
            take = min(BLOCK_FRAMES, self.remaining_src)
            raw = self.file.read(take, dtype="float32", always_2d=True) if take else None
            self.remaining_src -= take
            mono = (
                (raw.mean(axis=1) if raw.shape[1] > 1 else raw[:, 0]) if raw is not None else None
            )
            if self.resampler is not None:
                last = self.remaining_src <= 0
                out = self.resampler.resample_chunk(
                    mono if mono is not None else np.zeros(0, np.float32), last=last
                )
                if last:
                    self.resampler = None
            else:
                out = mono if mono is not None else np.zeros(0, np.float32)
            self.buffer = np.concatenate([self.buffer, out.astype(np.float32, copy=False)])
            if take == 0 and self.resampler is None:
                break
        chunk, self.buffer = self.buffer[:n], self.buffer[n:]
        if len(chunk) < n:
            chunk = np.pad(chunk, (0, n - len(chunk)))
        return chunk * np.float32(self.volume)

    def close(self) -> None:
        self.file.close()


def mixdown(clips: Sequence[Clip], target: Path, rate: int = MIX_RATE) -> float:
    """Write the mix of ``clips`` as PCM-16 WAV at ``target``; returns its duration in seconds."""
    plan = []
    for clip in clips:
        info = sf.info(str(clip.path))
        src = info.samplerate
        kept = max(0, info.frames - int((clip.trim_start_ms + clip.trim_end_ms) * src / 1000))
        length = int(kept * rate / src)
        start = int(clip.start_ms * rate / 1000)
        if length > 0:
            plan.append((start, start + length, clip))
    plan.sort(key=lambda p: p[0])
    total = max((end for _start, end, _clip in plan), default=0)
    float_tmp = target.with_name(target.name + ".float.wav")
    peak = 0.0
    try:
        with sf.SoundFile(
            str(float_tmp), "w", samplerate=rate, channels=1, format="WAV", subtype="FLOAT"
        ) as mix:
            active: list[tuple[int, int, _Reader]] = []
            upcoming = 0
            for block_start in range(0, total, BLOCK_FRAMES):
                block_end = min(total, block_start + BLOCK_FRAMES)
                while upcoming < len(plan) and plan[upcoming][0] < block_end:
                    start, end, clip = plan[upcoming]
                    active.append((start, end, _Reader(clip, rate)))
                    upcoming += 1
                block = np.zeros(block_end - block_start, dtype=np.float32)
                still = []
                for start, end, reader in active:
                    lo, hi = max(start, block_start), min(end, block_end)
                    if hi > lo:
                        block[lo - block_start : hi - block_start] += reader.read(hi - lo)
                    if end > block_end:
                        still.append((start, end, reader))
                    else:
                        reader.close()
                active = still
                peak = max(peak, float(np.abs(block).max(initial=0.0)))
                mix.write(block)
        scale = 1.0 / peak if peak > 1.0 else 1.0
        with (
            sf.SoundFile(str(float_tmp)) as source,
            sf.SoundFile(
                str(target), "w", samplerate=rate, channels=1, format="WAV", subtype="PCM_16"
            ) as out,
        ):
            for block in source.blocks(blocksize=BLOCK_FRAMES, dtype="float32"):
                out.write(block * np.float32(scale))
    finally:
        float_tmp.unlink(missing_ok=True)
    return total / float(rate)
