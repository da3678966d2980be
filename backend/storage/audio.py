"""Audio codecs and reference-clip checks, all through soundfile/libsndfile (no ffmpeg in the image).

Why soundfile only: libsndfile ≥ 1.1 reads and writes WAV, FLAC, Ogg Vorbis/Opus and MP3 itself, so the worker
needs no ffmpeg binary and no subprocess. Everything the engines see is float32 mono at 24 kHz (Qwen3-TTS's rate;
Whisper resamples to 16 kHz itself). Reference clips follow Voicebox's rules: 2–30 s, 30–45 s trimmed to 30 s,
longer rejected, silent rejected — with a message a user can act on.
"""

from __future__ import annotations

import io
import re

import numpy as np
import soundfile as sf

TARGET_SR = 24000
MIN_REF_SECONDS = 2.0
MAX_REF_SECONDS = 30.0
TRIM_LIMIT_SECONDS = 45.0
MIN_REF_RMS = 0.01

#: output format → (libsndfile format, subtype, content type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
}
#: sample rates libsndfile's Opus encoder accepts
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class AudioValidationError(ValueError):
    """The audio cannot be used; ``str(err)`` is a message meant for the API user."""


_OPENING_RE = re.compile(r"^Error opening .*?: ")
_REPR_RE = re.compile(r"<[^<>]*? at 0x[0-9A-Fa-f]+>")


def decoder_reason(exc: Exception) -> str:
    """libsndfile's reason without what it names the source by: ``Error opening <_io.BytesIO object at
    0x7f…>: Format not recognised.`` leaked an object repr (and, for files, a server path) into a 400."""
    text = _OPENING_RE.sub("", str(exc).strip())
    return _REPR_RE.sub("the upload", text) or type(exc).__name__


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG/Opus/MP3 bytes to float32 mono and its sample rate."""
    if not data:
        raise AudioValidationError("the audio file is empty")
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile reports everything as its own RuntimeError
        raise AudioValidationError(
            f"could not decode the audio (supported: wav, flac, ogg, opus, mp3): {decoder_reason(exc)}"
        ) from None
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels; accepts (n,), (n, ch) arrays."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    return a.reshape(-1)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """High-quality resampling (soxr when present, scipy's polyphase filter otherwise)."""
    a = to_mono(audio)
    if orig_sr == target_sr or a.size == 0:
        return a.astype(np.float32, copy=False)
    try:
        import soxr

        out = soxr.resample(a, orig_sr, target_sr, quality="HQ")
    except ImportError:  # pragma: no cover - soxr ships with librosa
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(orig_sr, target_sr)
        out = resample_poly(a, target_sr // g, orig_sr // g)
    return np.asarray(out, dtype=np.float32)


def load_audio(data: bytes, target_sr: int = TARGET_SR) -> np.ndarray:
    """Decode bytes and return float32 mono at ``target_sr``."""
    audio, sr = decode_audio(data)
    return resample(audio, sr, target_sr)


def rms(audio: np.ndarray) -> float:
    a = np.asarray(audio, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def validate_reference(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Check a reference clip and return it (trimmed to 30 s when it is 30–45 s long)."""
    a = to_mono(audio)
    seconds = a.size / float(sample_rate)
    if seconds < MIN_REF_SECONDS:
        raise AudioValidationError(
            f"reference audio is {seconds:.1f} s long; it must be at least {MIN_REF_SECONDS:g} s"
        )
    if seconds > TRIM_LIMIT_SECONDS:
        raise AudioValidationError(
            f"reference audio is {seconds:.1f} s long; it must be at most {MAX_REF_SECONDS:g} s "
            f"(clips up to {TRIM_LIMIT_SECONDS:g} s are trimmed automatically)"
        )
    if seconds > MAX_REF_SECONDS:
        a = a[: int(MAX_REF_SECONDS * sample_rate)]
    level = rms(a)
    if level < MIN_REF_RMS:
        raise AudioValidationError(
            f"reference audio is too quiet or silent (RMS {level:.4f} < {MIN_REF_RMS})"
        )
    if not np.isfinite(a).all():
        raise AudioValidationError("reference audio contains invalid samples (NaN/inf)")
    return a


def prepare_reference(data: bytes) -> tuple[np.ndarray, int]:
    """Decode, resample to 24 kHz mono and validate an uploaded reference clip."""
    audio = validate_reference(load_audio(data, TARGET_SR), TARGET_SR)
    return audio, TARGET_SR


def normalize_loudness(
    audio: np.ndarray, target_dbfs: float = -20.0, peak: float = 0.95
) -> np.ndarray:
    """RMS loudness normalisation to ``target_dbfs`` with a peak cap (upstream Voicebox's method)."""
    a = to_mono(audio)
    level = rms(a)
    if level <= 1e-9:
        return a.copy()
    gain = (10 ** (target_dbfs / 20.0)) / level
    out = a * gain
    top = float(np.max(np.abs(out)))
    if top > peak:
        out = out * (peak / top)
    return out.astype(np.float32)


def encode_audio(audio: np.ndarray, sample_rate: int = TARGET_SR, fmt: str = "wav") -> bytes:
    """Encode float audio as ``wav`` (PCM16), ``flac``, ``mp3``, ``opus`` (Ogg) or ``ogg`` (Vorbis) bytes."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise AudioValidationError(f"unsupported format {fmt!r}; use one of {', '.join(FORMATS)}")
    container, subtype, _ = FORMATS[fmt]
    a = np.clip(to_mono(audio), -1.0, 1.0)
    if fmt == "opus" and sample_rate not in _OPUS_RATES:
        target = 48000 if sample_rate > 24000 else 24000
        a, sample_rate = resample(a, sample_rate, target), target
    buf = io.BytesIO()
    with sf.SoundFile(
        buf, mode="w", samplerate=sample_rate, channels=1, format=container, subtype=subtype
    ) as f:
        f.write(a)
    return buf.getvalue()


def content_type(fmt: str) -> str:
    """The HTTP content type of an output format."""
    return FORMATS[fmt.lower()][2]


def audio_duration(data: bytes | np.ndarray, sample_rate: int | None = None) -> float:
    """Seconds of audio in encoded bytes, or in an array at ``sample_rate``."""
    if isinstance(data, np.ndarray):
        if not sample_rate:
            raise ValueError("sample_rate is required for an array")
        return data.shape[0] / float(sample_rate)
    try:
        info = sf.info(io.BytesIO(data))
        if info.frames > 0:
            return info.frames / float(info.samplerate)
    except Exception:  # noqa: BLE001 - fall back to decoding (some mp3s report no frame count)
        pass
    audio, sr = decode_audio(data)
    return audio.size / float(sr)
