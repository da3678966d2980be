"""Turning a local HTTP response into a RunPod job answer, within a size budget.

Why a budget: RunPod accepts at most 20 MB on ``/runsync`` and 10 MB on ``/run``, and when a worker posts a bigger
result the SDK only logs "Failed to return job results" -- the caller sees COMPLETED with no output and the audio is
lost (runpod-python#309). The SDK's own size check never fires (it measures ``sys.getsizeof`` of the dict). So the
*serialized* answer is measured here, exactly, and anything past ``settings.result_budget_bytes`` is written to
``voicebox/exports/`` on the volume (temp file → fsync → ``os.replace`` → fsync of the folder, so a crash never
leaves a half file under a final name) and answered with its name, size and sha256. A caller that cannot reach the
volume asks for ``inline_only`` and gets a clear error instead.

Bodies are streamed: a 200 MB bundle export goes to disk chunk by chunk, never whole into memory. Nothing here logs
a body -- base64 in logs costs money (RunPod bills log volume by throttling) and leaks audio.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import mimetypes
import re
import uuid
from dataclasses import dataclass
from typing import Any

from backend import job_answer as keys
from backend.config import Settings
from backend.storage.atomic import AtomicFile

__all__ = [
    "BodyCollector",
    "ExportInfo",
    "OverBudget",
    "answer_kind",
    "b64_length",
    "export_name",
    "inline_answer",
    "serialized_size",
    "spilled_answer",
    "useful_headers",
    "write_export",
]

log = logging.getLogger("voicebox.serverless")

#: Response headers worth returning to a RunPod caller; the rest (server, date, content-length...) describe a
#: loopback connection the caller never sees.
USEFUL_HEADERS = frozenset({"content-type", "content-disposition", "retry-after", "location"})

_EXTENSIONS = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/json": ".json",
    "text/plain": ".txt",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
}
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")
_DISPOSITION_EXT_RE = re.compile(
    r"filename\*?=(?:UTF-8'')?\"?[^\";]*?(\.[A-Za-z0-9]{1,5})\"?(?:;|$)"
)


class OverBudget(Exception):
    """The answer does not fit the inline budget and the job asked for ``inline_only``."""


@dataclass(frozen=True)
class ExportInfo:
    """A payload written to ``voicebox/exports/`` on the volume."""

    name: str
    size: int
    sha256: str
    content_type: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "volume_path": f"voicebox/exports/{self.name}",
        }


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def answer_kind(content_type: str | None) -> str:
    """``json``, ``text`` or ``binary``: binary is the default so arbitrary bytes are never decoded as text."""
    mt = media_type(content_type)
    if mt == "application/json" or mt.endswith("+json"):
        return "json"
    if mt.startswith("text/") or mt in {"application/xml", "application/javascript"}:
        return "text"
    return "binary"


def useful_headers(headers: Any) -> dict[str, str]:
    """The headers a caller can act on: content type/disposition, x-*, retry-after, location."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low in USEFUL_HEADERS or low.startswith("x-"):
            out[low] = value
    return out


def b64_length(n: int) -> int:
    """Length of the padded base64 text of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def serialized_size(answer: Any) -> int:
    """Bytes of the answer as the SDK will post it (``json.dumps(..., ensure_ascii=False)``, UTF-8)."""
    return len(json.dumps({"output": answer}, ensure_ascii=False).encode("utf-8"))


def inline_answer(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The inline answer for a complete body (JSON parsed, text decoded, everything else base64)."""
    content_type = headers.get("content-type", "")
    kind = answer_kind(content_type)
    if kind == "binary":
        return {
            keys.STATUS_CODE: status,
            keys.HEADERS: headers,
            keys.IS_BINARY: True,
            keys.CONTENT_TYPE: media_type(content_type) or "application/octet-stream",
            keys.BODY_BASE64: base64.b64encode(body).decode("ascii"),
        }
    text = body.decode("utf-8", errors="replace")
    if kind == "json" and text.strip():
        try:
            return {keys.STATUS_CODE: status, keys.HEADERS: headers, keys.BODY: json.loads(text)}
        except ValueError:
            pass  # a JSON content type with a broken body: return the text rather than failing the job
    return {keys.STATUS_CODE: status, keys.HEADERS: headers, keys.BODY: text if text else None}


def inline_size(status: int, headers: dict[str, str], body: bytes) -> int:
    """Serialized size of ``inline_answer(...)`` without encoding a binary body (base64 is pure ASCII)."""
    if answer_kind(headers.get("content-type")) == "binary":
        shell = inline_answer(status, headers, b"")
        return serialized_size(shell) + b64_length(len(body))
    return serialized_size(inline_answer(status, headers, body))


def export_name(job_id: str, content_type: str, content_disposition: str | None = None) -> str:
    """A fresh, safe file name for a spilled payload: never reused, never a path."""
    ext = ""
    if content_disposition:
        match = _DISPOSITION_EXT_RE.search(content_disposition)
        if match:
            ext = match.group(1).lower()
    if not ext:
        mt = media_type(content_type)
        ext = _EXTENSIONS.get(mt) or mimetypes.guess_extension(mt or "") or ".bin"
    stem = _SAFE_NAME_RE.sub("_", job_id)[:64].strip("_") or "job"
    return f"job-{stem}-{uuid.uuid4().hex[:12]}{ext}"


class SpillFile:
    """A temp file in ``settings.tmp_dir`` that becomes ``exports/<name>`` only when complete.

    Blocking methods: the handler runs them in a thread so the event loop keeps serving other jobs.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._out = AtomicFile(settings.tmp_dir, prefix="spill-")
        self._hash = hashlib.sha256()

    @property
    def size(self) -> int:
        return self._out.size

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)
        self._hash.update(chunk)

    def commit(self, name: str, content_type: str) -> ExportInfo:
        # names carry a random part; a clash (exclusive) means something is badly wrong
        self._out.commit(self._settings.exports_dir / name, exclusive=True)
        return ExportInfo(name, self.size, self._hash.hexdigest(), content_type)

    def abort(self) -> None:
        self._out.abort()


def write_export(settings: Settings, data: bytes, name: str, content_type: str) -> ExportInfo:
    """Write ``data`` to ``exports/<name>`` atomically (temp → fsync → replace → fsync dir)."""
    spill = SpillFile(settings)
    try:
        spill.write(data)
    except BaseException:
        spill.abort()
        raise
    return spill.commit(name, content_type)


def spilled_answer(
    status: int, headers: dict[str, str], info: ExportInfo, inline_bytes: int, budget: int
) -> dict[str, Any]:
    """The answer that points at a payload on the volume instead of carrying it."""
    return {
        keys.STATUS_CODE: status,
        keys.HEADERS: headers,
        keys.SPILLED: True,
        keys.EXPORT: info.as_dict(),
        keys.MESSAGE: (
            f"the answer ({inline_bytes} bytes serialized) is over the inline budget of {budget} bytes; "
            f"the body was written to voicebox/exports/{info.name} on the volume"
        ),
    }


def over_budget_message(inline_bytes: int | None, budget: int) -> str:
    size = f"{inline_bytes} bytes" if inline_bytes is not None else "more than the budget"
    return (
        f"answer: {size} serialized is over the inline budget of {budget} bytes "
        "(VOICEBOX_RESULT_BUDGET_MB); drop inline_only to have it written to voicebox/exports/ "
        "on the volume and answered by name"
    )


class BodyCollector:
    """Collects a streamed body in memory up to the budget, then continues into a spill file.

    ``budget`` is the serialized byte budget for this answer. A raw body past it cannot fit once encoded (base64
    grows it by a third, JSON re-serialization never shrinks FastAPI's compact output), so from that point the
    body streams to the volume instead of memory.
    """

    def __init__(
        self, settings: Settings, *, budget: int, inline_only: bool, job_id: str, headers: dict
    ) -> None:
        self._settings = settings
        self.budget = budget
        self.inline_only = inline_only
        self.job_id = job_id
        self.headers = headers
        self._chunks: list[bytes] = []
        self._held = 0
        self._spill: SpillFile | None = None

    @property
    def content_type(self) -> str:
        return media_type(self.headers.get("content-type")) or "application/octet-stream"

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._spill is not None:
            await asyncio.to_thread(self._spill.write, chunk)
            return
        self._chunks.append(chunk)
        self._held += len(chunk)
        if self._held > self.budget:
            if self.inline_only:
                raise OverBudget(over_budget_message(None, self.budget))
            spill = await asyncio.to_thread(SpillFile, self._settings)
            self._spill = spill
            held, self._chunks = b"".join(self._chunks), []
            await asyncio.to_thread(spill.write, held)

    async def answer(self, status: int) -> dict[str, Any]:
        """The inline answer if it fits, else the spilled one; raises ``OverBudget`` for inline_only."""
        if self._spill is None:
            body = b"".join(self._chunks)
            self._chunks = []
            size = inline_size(status, self.headers, body)
            if size <= self.budget:
                return inline_answer(status, self.headers, body)
            if self.inline_only:
                raise OverBudget(over_budget_message(size, self.budget))
            name = self._name()
            info = await asyncio.to_thread(
                write_export, self._settings, body, name, self.content_type
            )
        else:
            size = None
            info = await asyncio.to_thread(self._spill.commit, self._name(), self.content_type)
            self._spill = None
        log.info("spilled answer of job %s: %s (%d bytes)", self.job_id, info.name, info.size)
        estimated = (
            size
            if size is not None
            else inline_size(status, self.headers, b"")
            + (b64_length(info.size) if answer_kind(self.content_type) == "binary" else info.size)
        )
        return spilled_answer(status, self.headers, info, estimated, self.budget)

    async def abort(self) -> None:
        self._chunks = []
        if self._spill is not None:
            spill, self._spill = self._spill, None
            await asyncio.to_thread(spill.abort)

    def _name(self) -> str:
        return export_name(self.job_id, self.content_type, self.headers.get("content-disposition"))
