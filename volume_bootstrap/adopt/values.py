"""Single legacy values made ours: paths relative to ``<volume>/voicebox``, timestamps, numbers, flags.

Why lenient: legacy columns hold whatever an old app version wrote; a number or date that cannot be read becomes
NULL (or the fallback the caller reports), a path that cannot be made safe is refused by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from backend.config import Settings
from backend.storage.blobs import UnsafePathError, safe_relative

LEGACY_ROOTS = ("/app/data",)  # the fork's image: VOICEBOX data dir inside the container


ANCHORS = ("profiles", "generations")


def relativize(raw: object, roots: Sequence[str]) -> str | None:
    """A legacy path as a path relative to ``<volume>/voicebox``; raises ``UnsafePathError`` if it can't be.

    Why so many cases: the fork stored absolute container paths, upstream relative ones cut at the first
    component named ``data`` (with a known bug: a data dir ``/data/voicebox`` gave ``voicebox/...``), older
    upstream versions stored ``data/...`` or absolute desktop paths (also Windows ones).
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    text = text.replace("\\", "/")
    text = re.sub(r"^[A-Za-z]:/", "/", text)  # a Windows drive is just another absolute prefix
    for root in roots:
        prefix = root.rstrip("/") + "/"
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{raw!r} escapes the data directory")
    if parts and parts[0] in ANCHORS:
        start = 0
    else:
        candidates = [i for i in range(len(parts) - 1) if parts[i] in ANCHORS]
        after_data = [i for i in candidates if i > 0 and parts[i - 1] == "data"]
        if after_data:
            start = after_data[-1]
        elif candidates:
            start = candidates[-1]
        else:
            raise UnsafePathError(
                f"{raw!r} is not under the data directory (no profiles/ or generations/ part)"
            )
    rel = "/".join(parts[start:])
    if len(parts) - start < 2:
        raise UnsafePathError(f"{raw!r} names a folder, not a file")
    safe_relative(rel)
    return rel


def source_roots(settings: Settings, source_root: Path | None) -> list[str]:
    """The absolute prefixes a legacy path may start with: the source data dir (as given and
    resolved), the volume's data dir, the fork's container path."""
    roots = []
    if source_root is not None:
        roots.append(source_root.absolute().as_posix())
        resolved = source_root.resolve().as_posix()
        if resolved not in roots:
            roots.append(resolved)
    roots.append(settings.data_dir.absolute().as_posix())
    roots.extend(LEGACY_ROOTS)
    return roots


def parse_timestamp(value: object) -> datetime | None:
    """Naive UTC from what legacy rows hold: SQLAlchemy's text form, ISO with ``T``/offset, or epoch numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)):
        seconds = float(value) / (1000.0 if value > 1e11 else 1.0)
        return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def as_bool(value: object) -> bool:
    """A legacy flag: SQLite integers, or text such as ``true``/``yes``."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "t"}
    return bool(value)


def as_int(value: object) -> int | None:
    """A legacy column value as an int; None for NULL, "" and anything that is not a number."""
    if not isinstance(value, str | bytes | int | float) or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def as_float(value: object) -> float | None:
    """A legacy column value as a float; None for NULL, "" and anything that is not a number."""
    if not isinstance(value, str | bytes | int | float) or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def audio_duration(path: Path) -> float | None:
    """Seconds of audio from the file's header; None when it cannot be read."""
    try:
        import soundfile

        info = soundfile.info(str(path))
        return float(info.frames) / float(info.samplerate) if info.samplerate else None
    except Exception:  # a duration is a nicety; an unreadable header must not stop adoption
        return None
