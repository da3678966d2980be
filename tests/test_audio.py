"""Audio codecs (soundfile only), resampling and reference-clip validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from backend.storage.audio import (
    FORMATS,
    TARGET_SR,
    AudioValidationError,
    audio_duration,
    content_type,
    decode_audio,
    encode_audio,
    load_audio,
    normalize_loudness,
    prepare_reference,
    resample,
    rms,
    validate_reference,
)
from tests.support.audio import encode, tone


def _libsndfile_can(fmt: str) -> bool:
    container, subtype, _ = FORMATS[fmt]
    return container in sf.available_formats() and subtype in sf.available_subtypes(container)


# libsndfile >= 1.1 has MP3 (mpg123/lame) and >= 1.0.29 Opus; this machine's 1.2.2 has both. Skip only when the
# linked libsndfile really lacks a codec, and say which.
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_encode_decode_roundtrip(fmt: str) -> None:
    if not _libsndfile_can(fmt):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} lacks {FORMATS[fmt][:2]}")
    audio = tone(1.5)
    data = encode_audio(audio, TARGET_SR, fmt)
    decoded, sr = decode_audio(data)
    assert sr in (TARGET_SR, 48000)
    assert abs(decoded.size / sr - 1.5) < 0.08
    assert abs(audio_duration(data) - 1.5) < 0.08
    assert 0.1 < rms(decoded) < 0.4  # it is the tone, not silence or garbage
    assert content_type(fmt).startswith("audio/")


def test_wav_is_pcm16_24k_mono() -> None:
    info = sf.info(io.BytesIO(encode_audio(tone(0.5), TARGET_SR, "wav")))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (
        24000,
        1,
        "PCM_16",
        "WAV",
    )


def test_unsupported_format_and_garbage() -> None:
    with pytest.raises(AudioValidationError, match="unsupported format"):
        encode_audio(tone(0.1), TARGET_SR, "aac")
    with pytest.raises(AudioValidationError, match="could not decode"):
        decode_audio(b"not audio at all" * 10)
    with pytest.raises(AudioValidationError, match="empty"):
        decode_audio(b"")


def test_stereo_44k_becomes_24k_mono() -> None:
    audio = load_audio(encode(tone(2.0, 44100), 44100, channels=2))
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert abs(audio.size - 2 * TARGET_SR) <= 2
    assert abs(rms(audio) - rms(tone(2.0))) < 0.01


def test_resample_preserves_frequency() -> None:
    out = resample(tone(1.0, 16000, freq=440.0), 16000, 24000)
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * 24000 / out.size
    assert abs(peak_hz - 440.0) < 2.0


def test_reference_rules() -> None:
    assert validate_reference(tone(5), TARGET_SR).size == 5 * TARGET_SR
    trimmed = validate_reference(tone(40), TARGET_SR)
    assert trimmed.size == 30 * TARGET_SR
    with pytest.raises(AudioValidationError, match="at least 2 s"):
        validate_reference(tone(1.5), TARGET_SR)
    with pytest.raises(AudioValidationError, match="at most 30 s"):
        validate_reference(tone(46), TARGET_SR)
    with pytest.raises(AudioValidationError, match="silent"):
        validate_reference(np.zeros(3 * TARGET_SR, dtype=np.float32), TARGET_SR)
    with pytest.raises(AudioValidationError, match="silent"):
        validate_reference(tone(3, amp=0.005), TARGET_SR)


def test_prepare_reference_from_upload() -> None:
    audio, sr = prepare_reference(encode(tone(3.0, 16000), 16000))
    assert sr == TARGET_SR and abs(audio.size - 3 * TARGET_SR) <= 2


def test_normalize_loudness() -> None:
    quiet = tone(1.0, amp=0.01)
    out = normalize_loudness(quiet, target_dbfs=-20.0)
    assert abs(20 * np.log10(rms(out)) + 20.0) < 0.1
    loud = normalize_loudness(tone(1.0, amp=0.01), target_dbfs=0.0, peak=0.5)
    assert np.max(np.abs(loud)) <= 0.5 + 1e-6
    assert np.all(normalize_loudness(np.zeros(10)) == 0)


def test_audio_duration_of_array() -> None:
    assert audio_duration(np.zeros(48000), 24000) == 2.0
    with pytest.raises(ValueError):
        audio_duration(np.zeros(10))
