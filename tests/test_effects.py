"""The effects engine (pedalboard): validation names the field, block processing equals one whole pass for
stateless plugins and keeps state across blocks, and a 10-minute generation is processed in bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.storage import effects as fx


@pytest.mark.parametrize(
    ("chain", "field"),
    [
        ([{"type": "warp"}], "effects_chain[0].type"),
        ([{"type": "gain", "params": {"gain_db": 41}}], "effects_chain[0].params.gain_db"),
        ([{"type": "gain", "params": {"gain_db": float("nan")}}], "params.gain_db"),
        ([{"type": "gain", "params": {"gain_db": True}}], "params.gain_db"),
        (
            [{"type": "gain"}, {"type": "delay", "params": {"echo": 1}}],
            "effects_chain[1].params.echo",
        ),
        ([{"type": "gain", "enabled": "yes"}], "effects_chain[0].enabled"),
        ([{"type": "gain"}] * 1000, "at most 50"),
        ("reverb", "must be a list"),
    ],
)
def test_bad_chains_name_the_field(chain: object, field: str) -> None:
    with pytest.raises(fx.EffectsError, match=field.replace("[", r"\[").replace("]", r"\]")):
        fx.validate_chain(chain)


def test_defaults_are_filled_and_every_type_builds() -> None:
    chain = fx.validate_chain([{"type": name} for name in fx.EFFECTS])
    assert all(set(e["params"]) == set(fx.EFFECTS[e["type"]].params) for e in chain)
    audio = np.sin(np.arange(24000) / 24000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    out = fx.apply_to_array(audio, 24000, chain)
    assert out.shape == audio.shape and np.isfinite(out).all()


def test_blocks_match_one_pass_for_a_stateful_chain(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Reverb and delay keep their state across block edges: small blocks give the same audio as one pass."""
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(48000)).astype(np.float32)
    src = tmp_path / "src.wav"
    sf.write(str(src), audio, 24000, subtype="FLOAT")
    chain = fx.validate_chain([{"type": "delay"}, {"type": "reverb"}, {"type": "gain"}])
    whole = fx._board(chain)(audio.reshape(1, -1), 24000).reshape(-1)
    monkeypatch.setattr(fx, "BLOCK_FRAMES", 4096)
    fx.apply_to_file(src, tmp_path / "out.wav", chain)
    blocked, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert len(blocked) == len(audio)
    assert np.max(np.abs(blocked - np.clip(whole, -1, 1))) < 2e-4  # PCM-16 rounding


def test_pitch_shift_is_processed_in_segments_without_gaps(tmp_path: Path) -> None:
    """Pedalboard drops audio at buffer edges when pitch shift streams; segments keep the input's length, and
    the blocks sound like one pass (same pitch, same level)."""
    n = 200_000  # three blocks
    audio = (0.2 * np.sin(np.arange(n) / 24000 * 2 * np.pi * 200)).astype(np.float32)
    src = tmp_path / "src.wav"
    sf.write(str(src), audio, 24000, subtype="FLOAT")
    chain = fx.validate_chain([{"type": "pitch_shift", "params": {"semitones": -3}}])
    assert fx.apply_to_file(src, tmp_path / "out.wav", chain) == pytest.approx(n / 24000)
    out, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    whole = fx._board(chain)(audio.reshape(1, -1), 24000).reshape(-1)
    assert len(out) == n
    middle = slice(n // 4, 3 * n // 4)

    def pitch(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x[middle]))
        return float(np.argmax(spectrum) * 24000 / len(x[middle]))

    assert pitch(out) == pytest.approx(200 * 2 ** (-3 / 12), rel=0.03) == pitch(whole)
    rms = [float(np.sqrt(np.mean(x[middle] ** 2))) for x in (out, whole)]
    assert rms[0] == pytest.approx(rms[1], rel=0.2)
    windows = [float(np.sqrt(np.mean(out[i : i + 5000] ** 2))) for i in range(5000, n - 5000, 5000)]
    assert min(windows) > 0.5 * max(windows)  # no silent gap at a block or segment edge


def test_a_ten_minute_generation_is_processed_in_bounded_memory() -> None:
    """Peak RSS added by the work (its own process) stays far below one copy of the 10-minute audio
    (600 s x 24 kHz float32 = 55 MB; a whole-array chain holds several)."""
    from bench.bench_effects import _run

    figures = _run("effects_blocks", SECONDS=600)
    assert figures["peak_mb"] < 30, figures
