"""The one test-audio factory: WAV bytes of a sine (or silence), and the same signal as a float32 array.

Stdlib only at import (``wave``, ``array``, ``math``): the client and bridge tests run in the torch-free client venv
(``scripts/check-client-venv.sh``), which has no numpy. ``tone`` and ``encode`` import numpy/soundfile when called.
"""

from __future__ import annotations

import io
import math
import wave
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def wav_bytes(
    seconds: float = 3.0,
    *,
    rate: int = 24000,
    freq: float = 220.0,
    amp: float = 0.3,
    channels: int = 1,
) -> bytes:
    """A 16-bit PCM WAV of a sine at ``freq`` (``amp=0``: silence); ``channels`` copies of it."""
    frames = int(round(seconds * rate))
    step = 2 * math.pi * freq / rate
    samples = array("h", (int(round(amp * 32767 * math.sin(step * i))) for i in range(frames)))
    if channels > 1:
        samples = array("h", (s for s in samples for _ in range(channels)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(
            samples.tobytes()
        )  # array("h") is native-endian; every test host is little-endian
    return buffer.getvalue()


def write_wav(path: Path, seconds: float = 1.0, **kwargs: Any) -> Path:
    """``wav_bytes(...)`` written to ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(seconds, **kwargs))
    return path


def tone(
    seconds: float,
    rate: int = 24000,
    freq: float = 220.0,
    amp: float = 0.3,
    *,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """The sine as float32 samples, plus ``noise`` (standard deviation) of seeded white noise."""
    import numpy as np

    n = int(round(seconds * rate))
    signal = amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    if noise:
        signal = signal + noise * np.random.default_rng(seed).standard_normal(n)
    return signal.astype(np.float32)


def encode(
    samples: np.ndarray,
    rate: int = 24000,
    *,
    fmt: str = "WAV",
    subtype: str | None = "PCM_16",
    channels: int = 1,
) -> bytes:
    """``samples`` encoded by libsndfile as ``fmt`` (WAV, FLAC, OGG, MP3), ``channels`` copies of them."""
    import numpy as np
    import soundfile as sf

    data = np.stack([samples] * channels, axis=1) if channels > 1 else samples
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {"format": fmt}
    if subtype:
        kwargs["subtype"] = subtype
    sf.write(buffer, data, rate, **kwargs)
    return buffer.getvalue()
