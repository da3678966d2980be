"""Turn an uploaded or bundled file into a stored reference sample: 24 kHz mono PCM16 WAV, validated.

Why a separate step shared by uploads and imports: a sample that enters through a bundle must pass exactly the
checks an upload passes (Voicebox imports skipped some and could leave half a profile), and the staged result
is a temp file the caller moves into place inside its write unit. A file that already is canonical (WAV, PCM16,
mono, 24 kHz, within 30 s) is kept byte for byte, so exporting it again gives the same sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from backend.services.errors import ValidationError
from backend.storage import audio as audio_mod
from backend.storage.blobs import BlobStore, sha256_file

#: Longer files are refused before decoding (a 50 MB MP3 can hold an hour of audio).
EARLY_REJECT_SECONDS = 60.0


@dataclass(frozen=True)
class PreparedAudio:
    """A staged file in ``voicebox/.tmp`` ready to be moved into place, and what it contains."""

    path: Path
    sha256: str
    size_bytes: int
    duration: float
    reencoded: bool


def _info(source: Path, what: str) -> sf._SoundFileInfo:
    try:
        return sf.info(str(source))
    except Exception as exc:  # noqa: BLE001 - libsndfile reports every failure as its own error
        # libsndfile names the file it opened: a temp path on the volume, which answers never show.
        reason = str(exc).replace(f"'{source}'", "the file").replace(str(source), "the file")
        raise ValidationError(
            f"{what}: could not read the audio (supported: wav, flac, ogg, opus, mp3): {reason}"
        ) from None


def prepare_reference(blobs: BlobStore, source: Path, *, what: str = "sample") -> PreparedAudio:
    """Decode, resample to 24 kHz mono, validate 2–30 s (trim 30–45 s) and not silent; stage the result.

    ``source`` is left in place when it has to be re-encoded; when it is already canonical the returned
    ``path`` *is* ``source`` (the caller moves it). Raises ``ValidationError`` with ``what`` in the message.
    """
    info = _info(source, what)
    if info.samplerate > 0 and info.frames > 0:
        seconds = info.frames / float(info.samplerate)
        if seconds > EARLY_REJECT_SECONDS:
            raise ValidationError(
                f"{what}: audio is {seconds:.1f} s long; a reference clip must be at most "
                f"{audio_mod.MAX_REF_SECONDS:g} s (clips up to {audio_mod.TRIM_LIMIT_SECONDS:g} s are "
                "trimmed automatically)"
            )
    data = source.read_bytes()
    try:
        pcm = audio_mod.load_audio(data, audio_mod.TARGET_SR)
        pcm = audio_mod.validate_reference(pcm, audio_mod.TARGET_SR)
    except audio_mod.AudioValidationError as exc:
        raise ValidationError(f"{what}: {exc}") from None
    duration = pcm.shape[0] / float(audio_mod.TARGET_SR)
    canonical = (
        info.format == "WAV"
        and info.subtype == "PCM_16"
        and info.channels == 1
        and info.samplerate == audio_mod.TARGET_SR
        and info.frames == pcm.shape[0]
    )
    if canonical:
        return PreparedAudio(source, hashlib.sha256(data).hexdigest(), len(data), duration, False)
    encoded = audio_mod.encode_audio(pcm, audio_mod.TARGET_SR, "wav")
    staged = blobs.new_tmp_path(".wav")
    staged.write_bytes(encoded)
    return PreparedAudio(staged, hashlib.sha256(encoded).hexdigest(), len(encoded), duration, True)


def probe_audio(source: Path, *, what: str = "audio") -> float:
    """Check that a generation's audio decodes; return its duration in seconds (from the audio itself)."""
    info = _info(source, what)
    if info.frames > 0 and info.samplerate > 0:
        return info.frames / float(info.samplerate)
    try:
        return audio_mod.audio_duration(source.read_bytes())
    except audio_mod.AudioValidationError as exc:
        raise ValidationError(f"{what}: {exc}") from None


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file on disk, read in chunks."""
    return sha256_file(path), path.stat().st_size
