"""Encoders that turn audio into bytes as it arrives, for streamed speech.

Why not ``encode_audio`` per piece: each call writes a whole file (header, encoder start-up and flush), so
pieces would be separate files glued together. A stream needs one header and one encoder state across the
pieces. What each format can do (measured with libsndfile 1.2):

- ``wav``: a RIFF header whose sizes say "unknown" (0xFFFFFFFF, what players accept for a live stream), then
  PCM16 as it comes. The samples are those ``encode_audio(..., "wav")`` writes.
- ``pcm``: headerless signed 16-bit little-endian mono at the engine's 24 kHz (OpenAI's ``pcm``).
- ``opus`` (Ogg Opus) and ``mp3``: libsndfile's encoders write pages/frames while fed. Opus never goes back.
  A variable-bitrate MP3 goes back at close to fill its first frame (the Xing/LAME tag with the frame count);
  streamed, that frame would stay blank and readers that estimate the length from the first frame cut the
  audio short. So a streamed MP3 is **constant bitrate** (no tag needed; every decoder reads it to the end).
- ``flac`` is refused: libsndfile rewrites the STREAMINFO block (sizes, MD5) when the file is closed.

Also the stream's loudness rule: ``StreamGain`` fixes the gain from the first generated chunk, because the
whole audio's level is not known until it is all generated (see ``docs/api.md``).
"""

from __future__ import annotations

import io
import struct
from typing import Protocol

import numpy as np
import soundfile as sf

from backend.storage.audio import FORMATS, rms, to_mono

#: formats an ``open_stream_encoder`` can produce
STREAM_FORMATS = ("wav", "pcm", "mp3", "opus")
PCM_CONTENT_TYPE = "audio/pcm"
_UNKNOWN_SIZE = 0xFFFFFFFF


class StreamFormatError(ValueError):
    """The format cannot be streamed; the message says what to use."""


class StreamEncoder(Protocol):
    content_type: str

    def encode(self, audio: np.ndarray) -> bytes:
        """The bytes ready after adding ``audio`` (float32 mono; the header comes with the first call)."""
        ...

    def finish(self) -> bytes:
        """The last bytes (encoder flush); call once."""
        ...


def pcm16(audio: np.ndarray) -> bytes:
    """Float samples as PCM16 little-endian with libsndfile's conversion: the samples ``encode_audio`` writes
    into a WAV (so a streamed WAV or ``pcm`` carries the stored file's samples)."""
    a = np.clip(to_mono(audio), -1.0, 1.0).astype(np.float32)
    if not a.size:
        return b""
    buf = io.BytesIO()
    with sf.SoundFile(
        buf, "w", samplerate=24000, channels=1, format="RAW", subtype="PCM_16", endian="LITTLE"
    ) as f:
        f.write(a)
    return buf.getvalue()


def streaming_wav_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A RIFF/WAVE header with the RIFF and data sizes set to 0xFFFFFFFF (length unknown)."""
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )


class _PcmEncoder:
    def __init__(self, sample_rate: int, *, header: bool) -> None:
        self.content_type = "audio/wav" if header else PCM_CONTENT_TYPE
        self._header = streaming_wav_header(sample_rate) if header else b""

    def encode(self, audio: np.ndarray) -> bytes:
        head, self._header = self._header, b""
        return head + pcm16(audio)

    def finish(self) -> bytes:
        head, self._header = self._header, b""
        return head  # an empty stream is still a valid (empty) WAV


class _Drain(io.RawIOBase):
    """A write-only file for libsndfile that hands out what was written since the last ``take``.

    A write after a seek back into bytes already handed out is dropped for that part (the stream cannot take
    it back); the encoders used here do not do that (CBR MP3, Ogg Opus).
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._sent = 0  # bytes handed out before ``_pending``
        self._pos = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return b""

    def readinto(self, buffer) -> int:
        return 0

    def write(self, data) -> int:
        data = bytes(data)
        start = self._pos - self._sent
        if start < 0:  # rewriting bytes already sent: keep only what reaches past them
            skip = min(len(data), -start)
            self._pos += skip
            data, start = data[skip:], 0
        end = start + len(data)
        if end > len(self._pending):
            self._pending.extend(b"\0" * (end - len(self._pending)))
        self._pending[start:end] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        size = self._sent + len(self._pending)
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = bytes(self._pending)
        self._sent += len(out)
        self._pending.clear()
        return out


class _SndfileEncoder:
    def __init__(self, fmt: str, sample_rate: int) -> None:
        container, subtype, self.content_type = FORMATS[fmt]
        self._drain = _Drain()
        self._file = sf.SoundFile(  # 24 kHz is an Opus rate too
            self._drain,
            "w",
            samplerate=sample_rate,
            channels=1,
            format=container,
            subtype=subtype,
        )
        if fmt == "mp3":
            _constant_bitrate(self._file)

    def encode(self, audio: np.ndarray) -> bytes:
        a = np.clip(to_mono(audio), -1.0, 1.0)
        if a.size:
            self._file.write(a)
        return self._drain.take()

    def finish(self) -> bytes:
        self._file.close()
        return self._drain.take()


_SFC_SET_BITRATE_MODE = 0x1305
_SF_BITRATE_MODE_CONSTANT = 0


def _constant_bitrate(file: sf.SoundFile) -> None:
    """Switch libsndfile's MP3 encoder to CBR before the first write (soundfile has no wrapper for it)."""
    from soundfile import _ffi, _snd  # the cffi handles soundfile itself uses

    mode = _ffi.new("int*", _SF_BITRATE_MODE_CONSTANT)
    if _snd.sf_command(file._file, _SFC_SET_BITRATE_MODE, mode, _ffi.sizeof("int")) != 0:
        raise RuntimeError("libsndfile refused constant-bitrate MP3")


def open_stream_encoder(fmt: str, sample_rate: int) -> StreamEncoder:
    """An encoder for ``wav``, ``pcm``, ``mp3`` or ``opus`` at ``sample_rate`` (the engine's 24 kHz)."""
    fmt = fmt.lower()
    if fmt == "wav":
        return _PcmEncoder(sample_rate, header=True)
    if fmt == "pcm":
        return _PcmEncoder(sample_rate, header=False)
    if fmt in ("mp3", "opus"):
        return _SndfileEncoder(fmt, sample_rate)
    if fmt == "flac":
        raise StreamFormatError(
            "format 'flac' cannot be streamed (its header is rewritten once the length is known); "
            f"stream {', '.join(STREAM_FORMATS)}, or use the non-streamed route for flac"
        )
    raise StreamFormatError(f"format {fmt!r} is not supported; use {', '.join(STREAM_FORMATS)}")


class StreamGain:
    """Loudness normalisation for a stream: the gain ``normalize_loudness`` would pick for the first chunk,
    applied to every sample after it.

    Why the first chunk: the stream must send audio before the rest exists. For a text that is one chunk the
    result is exactly ``normalize_loudness`` of the whole (same operations, same order); for longer texts it
    differs from the non-streamed file by a constant factor. ``enabled=False`` passes samples through.
    """

    def __init__(self, *, enabled: bool, target_dbfs: float = -20.0, peak: float = 0.95) -> None:
        self.enabled = enabled
        self.target_dbfs = target_dbfs
        self.peak = peak
        self._gain: float | None = None
        self._scale: float | None = None
        self._fixed = not enabled

    def fix(self, first_chunk: np.ndarray) -> None:
        """Decide the gain from the first generated chunk (a no-op once decided)."""
        if self._fixed:
            return
        self._fixed = True
        a = to_mono(first_chunk)
        level = rms(a)
        if level <= 1e-9:
            return
        self._gain = (10 ** (self.target_dbfs / 20.0)) / level
        top = float(np.max(np.abs(a * self._gain)))
        if top > self.peak:
            self._scale = self.peak / top

    def apply(self, audio: np.ndarray) -> np.ndarray:
        a = to_mono(audio)
        if self._gain is None:
            return a.copy() if self.enabled else a
        out = a * self._gain
        if self._scale is not None:
            out = out * self._scale
        return out.astype(np.float32)
