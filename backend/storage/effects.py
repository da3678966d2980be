"""Audio effects with Spotify's ``pedalboard`` (what upstream Voicebox uses): the effect types and parameter
ranges the desktop app offers, validation that names the offending field, and processing in bounded memory.

Why block processing: a 10-minute generation is 14 M samples; decoding it whole, running four plugins that each
allocate their own output and then encoding would hold several copies at once. Here the source is read in blocks
of ``BLOCK_FRAMES`` from the file, each block runs through one ``Pedalboard`` with ``reset=False`` (plugins keep
their state between blocks: reverb tails and delay lines continue across block edges), and the result is written
block by block into a temp file — memory is a few blocks whatever the length (a chain with pitch shift runs on
overlapping segments of four blocks, see ``process_blocks``). The output has the input's length and rate
(upstream's behaviour: no tail is appended).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

#: the longest chain accepted anywhere (upstream's editor offers far fewer; 1,000 is a 400)
MAX_EFFECTS = 50
#: 2.7 s at 24 kHz
BLOCK_FRAMES = 65536


class EffectsError(ValueError):
    """An effects chain that cannot be used; ``str(err)`` names the field (``effects_chain[1].params.mix``)."""


@dataclass(frozen=True)
class Param:
    default: float
    min: float
    max: float
    step: float
    description: str


@dataclass(frozen=True)
class EffectType:
    plugin: str  # the pedalboard class name
    label: str
    description: str
    params: Mapping[str, Param]


def _p(default: float, lo: float, hi: float, step: float, description: str) -> Param:
    return Param(default, lo, hi, step, description)


#: the effect types and parameter ranges of upstream Voicebox's ``/effects/available``
EFFECTS: dict[str, EffectType] = {
    "chorus": EffectType(
        "Chorus",
        "Chorus / Flanger",
        "Modulated delay for flanging or chorus effects. Short centre_delay_ms (<10) gives flanger; "
        "longer gives chorus.",
        {
            "rate_hz": _p(1.0, 0.01, 20.0, 0.01, "LFO speed (Hz)"),
            "depth": _p(0.5, 0.0, 1.0, 0.01, "Modulation depth"),
            "feedback": _p(0.0, 0.0, 0.95, 0.01, "Feedback amount"),
            "centre_delay_ms": _p(7.0, 0.5, 50.0, 0.1, "Centre delay (ms)"),
            "mix": _p(0.5, 0.0, 1.0, 0.01, "Wet/dry mix"),
        },
    ),
    "reverb": EffectType(
        "Reverb",
        "Reverb",
        "Room reverb effect.",
        {
            "room_size": _p(0.5, 0.0, 1.0, 0.01, "Room size"),
            "damping": _p(0.5, 0.0, 1.0, 0.01, "High frequency damping"),
            "wet_level": _p(0.33, 0.0, 1.0, 0.01, "Wet level"),
            "dry_level": _p(0.4, 0.0, 1.0, 0.01, "Dry level"),
            "width": _p(1.0, 0.0, 1.0, 0.01, "Stereo width"),
        },
    ),
    "delay": EffectType(
        "Delay",
        "Delay",
        "Echo / delay line.",
        {
            "delay_seconds": _p(0.3, 0.01, 2.0, 0.01, "Delay time (seconds)"),
            "feedback": _p(0.3, 0.0, 0.95, 0.01, "Feedback amount"),
            "mix": _p(0.3, 0.0, 1.0, 0.01, "Wet/dry mix"),
        },
    ),
    "compressor": EffectType(
        "Compressor",
        "Compressor",
        "Dynamic range compression for consistent loudness.",
        {
            "threshold_db": _p(-20.0, -60.0, 0.0, 0.5, "Threshold (dB)"),
            "ratio": _p(4.0, 1.0, 20.0, 0.1, "Compression ratio"),
            "attack_ms": _p(10.0, 0.1, 100.0, 0.1, "Attack time (ms)"),
            "release_ms": _p(100.0, 10.0, 1000.0, 1.0, "Release time (ms)"),
        },
    ),
    "gain": EffectType(
        "Gain",
        "Gain",
        "Volume adjustment in decibels.",
        {"gain_db": _p(0.0, -40.0, 40.0, 0.5, "Gain (dB)")},
    ),
    "highpass": EffectType(
        "HighpassFilter",
        "High-Pass Filter",
        "Removes frequencies below the cutoff.",
        {"cutoff_frequency_hz": _p(80.0, 20.0, 8000.0, 1.0, "Cutoff frequency (Hz)")},
    ),
    "lowpass": EffectType(
        "LowpassFilter",
        "Low-Pass Filter",
        "Removes frequencies above the cutoff.",
        {"cutoff_frequency_hz": _p(8000.0, 200.0, 20000.0, 1.0, "Cutoff frequency (Hz)")},
    ),
    "pitch_shift": EffectType(
        "PitchShift",
        "Pitch Shift",
        "Shift pitch up or down by semitones.",
        {"semitones": _p(0.0, -12.0, 12.0, 0.5, "Semitones to shift")},
    ),
    "distortion": EffectType(
        "Distortion",
        "Distortion",
        "Soft saturation and harmonic warmth",
        {"drive_db": _p(10.0, 0.0, 40.0, 0.5, "Drive amount in dB")},
    ),
    "clipping": EffectType(
        "Clipping",
        "Clipping",
        "Hard clipping for aggressive saturation",
        {"threshold_db": _p(-6.0, -40.0, 0.0, 0.5, "Clipping threshold in dB")},
    ),
    "noise_gate": EffectType(
        "NoiseGate",
        "Noise Gate",
        "Remove low-level noise and silence",
        {
            "threshold_db": _p(-40.0, -80.0, 0.0, 1.0, "Threshold (dB)"),
            "ratio": _p(10.0, 1.0, 100.0, 1.0, "Gate ratio"),
            "attack_ms": _p(1.0, 0.1, 100.0, 0.1, "Attack time (ms)"),
            "release_ms": _p(100.0, 10.0, 1000.0, 10.0, "Release time (ms)"),
        },
    ),
    "limiter": EffectType(
        "Limiter",
        "Limiter",
        "Peak limiting to prevent clipping",
        {
            "threshold_db": _p(-1.0, -40.0, 0.0, 0.5, "Threshold (dB)"),
            "release_ms": _p(100.0, 10.0, 1000.0, 10.0, "Release time (ms)"),
        },
    ),
}


def available() -> list[dict[str, Any]]:
    """``/effects/available``: every type with its parameter definitions (upstream's shape)."""
    return [
        {
            "type": name,
            "label": kind.label,
            "description": kind.description,
            "params": {
                pname: {
                    "default": p.default,
                    "min": p.min,
                    "max": p.max,
                    "step": p.step,
                    "description": p.description,
                }
                for pname, p in kind.params.items()
            },
        }
        for name, kind in EFFECTS.items()
    ]


def validate_chain(chain: object, field: str = "effects_chain") -> list[dict[str, Any]]:
    """The chain in upstream's shape (``{type, enabled, params}``, missing params at their default), or
    ``EffectsError`` naming the first bad field. Nothing is written before this has passed."""
    if not isinstance(chain, list):
        raise EffectsError(f"{field} must be a list of effects")
    if len(chain) > MAX_EFFECTS:
        raise EffectsError(f"{field} has {len(chain)} effects; at most {MAX_EFFECTS} are allowed")
    out: list[dict[str, Any]] = []
    for index, effect in enumerate(chain):
        where = f"{field}[{index}]"
        if not isinstance(effect, Mapping):
            raise EffectsError(f"{where} must be an object with type, enabled and params")
        kind_name = effect.get("type")
        kind = EFFECTS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise EffectsError(
                f"{where}.type {str(kind_name)[:50]!r} is not an effect type; use one of "
                f"{', '.join(EFFECTS)}"
            )
        enabled = effect.get("enabled", True)
        if not isinstance(enabled, bool):
            raise EffectsError(f"{where}.enabled must be true or false")
        params = effect.get("params") or {}
        if not isinstance(params, Mapping):
            raise EffectsError(f"{where}.params must be an object")
        clean: dict[str, float] = {}
        for pname, value in params.items():
            spec = kind.params.get(pname)
            if spec is None:
                raise EffectsError(
                    f"{where}.params.{str(pname)[:50]} is not a parameter of {kind_name}; use "
                    f"{', '.join(kind.params)}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EffectsError(f"{where}.params.{pname} must be a number")
            if not math.isfinite(value) or not spec.min <= value <= spec.max:
                raise EffectsError(
                    f"{where}.params.{pname} = {value} is out of range [{spec.min}, {spec.max}]"
                )
            clean[pname] = float(value)
        for pname, spec in kind.params.items():
            clean.setdefault(pname, spec.default)
        out.append({"type": kind_name, "enabled": enabled, "params": clean})
    return out


def parse_stored(text: str | None) -> list[dict[str, Any]] | None:
    """A chain stored as JSON text (upstream's column format); unreadable text reads as no chain."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def dump(chain: Sequence[Mapping[str, Any]] | None) -> str | None:
    return json.dumps(list(chain)) if chain else None


def is_active(chain: Sequence[Mapping[str, Any]] | None) -> bool:
    return any(effect.get("enabled", True) for effect in chain or [])


def _board(chain: Sequence[Mapping[str, Any]]):
    import pedalboard

    plugins = []
    for effect in chain:
        if not effect.get("enabled", True):
            continue
        kind = EFFECTS[effect["type"]]
        plugins.append(getattr(pedalboard, kind.plugin)(**effect.get("params", {})))
    return pedalboard.Pedalboard(plugins)


def process_blocks(
    blocks: Iterator[np.ndarray], sample_rate: int, chain: Sequence[Mapping[str, Any]]
) -> Iterator[np.ndarray]:
    """Run mono float32 blocks through the chain in bounded memory; the output has the input's length.

    Without pitch shift the blocks stream through one board (``reset=False``: reverb tails and delay lines
    continue across block edges). Pedalboard's streaming pitch shift drops audio at buffer edges (measured:
    silent gaps of ~10,000 samples per 65,536-frame block), so a chain with one is run on overlapping segments
    instead, each a whole latency-compensated call, crossfaded over ``OVERLAP_SECONDS``.
    """
    board = _board(chain)
    if any(e.get("enabled", True) and e["type"] == "pitch_shift" for e in chain):
        yield from _segmented(blocks, sample_rate, board)
        return
    for block in blocks:
        if block.size == 0:
            continue
        out = board(block.reshape(1, -1).astype(np.float32, copy=False), sample_rate, reset=False)
        yield np.clip(out.reshape(-1), -1.0, 1.0).astype(np.float32, copy=False)
    # plugins hold nothing back here (no latency without pitch shift), so the lengths already match


OVERLAP_SECONDS = 0.25
SEGMENT_BLOCKS = 4


def _segmented(blocks: Iterator[np.ndarray], sample_rate: int, board) -> Iterator[np.ndarray]:
    segment = SEGMENT_BLOCKS * BLOCK_FRAMES
    overlap = min(segment // 8, int(OVERLAP_SECONDS * sample_rate))
    fade_in = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
    buffer = np.zeros(0, dtype=np.float32)
    tail: np.ndarray | None = (
        None  # the previous segment's output over the next one's first samples
    )

    def run(piece: np.ndarray) -> np.ndarray:
        nonlocal tail
        out = board(piece.reshape(1, -1), sample_rate, reset=True).reshape(-1)[: len(piece)]
        if tail is not None:
            n = min(len(tail), len(out))
            out[:n] = out[:n] * fade_in[:n] + tail[:n] * (1.0 - fade_in[:n])
        return out

    for block in blocks:
        buffer = np.concatenate([buffer, block.astype(np.float32, copy=False)])
        while len(buffer) >= segment + overlap:
            out = run(buffer[: segment + overlap])
            tail = out[segment:].copy()
            buffer = buffer[segment:]
            yield np.clip(out[:segment], -1.0, 1.0)
    if len(buffer):
        yield np.clip(run(buffer), -1.0, 1.0)


def apply_to_array(
    audio: np.ndarray, sample_rate: int, chain: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """The chain on an array already in memory (a fresh generation); same processing as files."""
    parts = [audio[start : start + BLOCK_FRAMES] for start in range(0, len(audio), BLOCK_FRAMES)]
    processed = list(process_blocks(iter(parts), sample_rate, chain))
    return np.concatenate(processed) if processed else audio.astype(np.float32)


def apply_to_file(source: Path, target: Path, chain: Sequence[Mapping[str, Any]]) -> float:
    """Process the audio file ``source`` into a PCM-16 WAV at ``target`` in blocks; returns its duration."""
    with sf.SoundFile(str(source)) as reader:
        rate = reader.samplerate

        def blocks() -> Iterator[np.ndarray]:
            for block in reader.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                yield block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]

        frames = 0
        with sf.SoundFile(
            str(target), "w", samplerate=rate, channels=1, format="WAV", subtype="PCM_16"
        ) as writer:
            for out in process_blocks(blocks(), rate, chain):
                writer.write(out)
                frames += len(out)
    return frames / float(rate) if rate else 0.0
