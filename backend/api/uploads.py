"""Multipart uploads streamed straight to ``voicebox/.tmp`` with the size limit enforced while streaming.

Why not FastAPI's ``UploadFile``: Starlette spools the whole part to a temp file outside the volume before the
handler runs, so a limit checked in the handler is checked after all of it arrived. Here the body is parsed as it
comes in; a file part over its limit stops the parse at once with 413, a ``Content-Length`` over the limit is
refused before reading anything, and files land on the volume where the import moves them into place.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.api.deps import get_services
from backend.config import Settings
from backend.db.errors import volume_fault
from backend.services.common import VOLUME_NAME_MAX, VOLUME_NAME_PATTERN
from backend.services.container import Services
from backend.services.errors import PayloadTooLargeError, ValidationError

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 32
FORM_OVERHEAD = 1024 * 1024


@dataclass
class UploadedFile:
    """One file part, staged on the volume; ``filename`` is the client's name (never used as a path)."""

    path: Path
    filename: str
    content_type: str | None
    size: int = 0


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def cleanup(self) -> None:
        """Remove staged files the service did not move into place."""
        for upload in self.files.values():
            upload.path.unlink(missing_ok=True)


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.name: str | None = None
        self.is_file = False
        self.skip = False
        self.data = bytearray()
        self.handle: BinaryIO | None = None
        self.upload: UploadedFile | None = None
        self.limit = 0


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


class _FormReader:
    """The multipart parse as a small state machine: python-multipart calls the ``on_*`` steps as the body
    arrives; file chunks queue in ``pending`` and are written to the volume by ``flush`` in a worker thread
    between body chunks, so the event loop never blocks on the disk."""

    def __init__(self, tmp_dir: Path, file_limits: dict[str, int]) -> None:
        self.tmp_dir = tmp_dir
        self.file_limits = file_limits
        self.form = UploadForm()
        self.part = _Part()
        self.parts = 0
        self.pending: list[tuple[BinaryIO, bytes]] = []
        self.handles: set[BinaryIO] = set()

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ValidationError(f"the form has more than {MAX_PARTS} parts")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        part = self.part
        part.headers[part.header_field.lower()] = part.header_value
        part.header_field, part.header_value = b"", b""

    def on_headers_finished(self) -> None:
        part = self.part
        _, opts = parse_options_header(part.headers.get(b"content-disposition", b""))
        raw_name = opts.get(b"name")
        if raw_name is None:
            raise ValidationError("a multipart part has no name in its Content-Disposition")
        part.name = raw_name.decode("utf-8", "replace")
        # A part named like a file field is a file even without a filename (some clients omit it).
        part.is_file = b"filename" in opts or part.name in self.file_limits
        if not part.is_file:
            return
        if part.name not in self.file_limits or part.name in self.form.files:
            part.skip = True
            return
        self._stage_file(part.name, opts.get(b"filename", b""))

    def _stage_file(self, name: str, filename: bytes) -> None:
        """Open the staged file on the volume that this file part's data goes to."""
        part = self.part
        path = self.tmp_dir / f"{uuid.uuid4().hex}.upload.part"
        part.handle = open(path, "wb")  # noqa: SIM115 - closed in on_part_end or on failure
        # known from the start, so an abort closes it even before its first chunk was written
        self.handles.add(part.handle)
        ctype = part.headers.get(b"content-type")
        part.upload = UploadedFile(
            path=path,
            filename=filename.decode("utf-8", "replace"),
            content_type=ctype.decode("latin-1") if ctype else None,
        )
        part.limit = self.file_limits[name]
        self.form.files[name] = part.upload

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.skip:
            return
        if part.is_file:
            assert part.upload is not None and part.handle is not None
            part.upload.size += end - start
            if part.upload.size > part.limit:
                raise PayloadTooLargeError(f"{part.name!r} is over the {_mb(part.limit)} limit")
            self.pending.append((part.handle, bytes(data[start:end])))
            return
        part.data.extend(data[start:end])
        if len(part.data) > MAX_FIELD_BYTES:
            raise ValidationError(f"form field {part.name!r} is over {MAX_FIELD_BYTES // 1024} KB")

    def on_part_end(self) -> None:
        part = self.part
        if part.skip or part.name is None:
            return
        if part.is_file:
            if part.handle is not None:
                self.pending.append((part.handle, b""))  # marker: close after the writes before it
            return
        self.form.fields.setdefault(part.name, part.data.decode("utf-8", "replace"))

    def take_pending(self) -> list[tuple[BinaryIO, bytes]]:
        batch, self.pending[:] = list(self.pending), []
        return batch

    def flush(self, batch: list[tuple[BinaryIO, bytes]]) -> None:
        """Write the queued chunks (a worker thread); an empty chunk closes its file."""
        for handle, chunk in batch:
            if chunk:
                handle.write(chunk)
            else:
                handle.close()

    def open_handles(self) -> list[BinaryIO]:
        return [handle for handle in self.handles if not handle.closed]

    def finish(self) -> UploadForm:
        for handle in self.open_handles():
            handle.close()
        return self.form

    def abort(self) -> None:
        """Close every staged file and remove them: the request fails as a whole."""
        for handle in self.open_handles():
            with contextlib.suppress(OSError):  # a full volume fails the close's flush too
                handle.close()
        with contextlib.suppress(OSError):
            self.form.cleanup()


def _boundary(request: Request, file_limits: dict[str, int]) -> bytes:
    disposition, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if disposition != b"multipart/form-data" or not boundary:
        raise ValidationError(
            "send this request as multipart/form-data (fields: "
            + ", ".join(sorted(file_limits))
            + " and the form fields documented for the endpoint)"
        )
    return boundary


def _refuse_declared_length(request: Request, file_limits: dict[str, int]) -> None:
    """413 before reading anything when ``Content-Length`` is already past every limit together."""
    total_limit = sum(file_limits.values()) + FORM_OVERHEAD
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > total_limit:
        biggest = max(file_limits.values())
        raise PayloadTooLargeError(f"the upload is over the {_mb(biggest)} limit")


async def _feed(request: Request, parser: MultipartParser, reader: _FormReader) -> None:
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        finally:
            batch = reader.take_pending()
            if batch:
                await anyio.to_thread.run_sync(reader.flush, batch)
    parser.finalize()


async def read_multipart(
    request: Request, *, tmp_dir: Path, file_limits: dict[str, int]
) -> UploadForm:
    """Parse a multipart body: file parts named in ``file_limits`` go to ``tmp_dir``; others are dropped."""
    boundary = _boundary(request, file_limits)
    _refuse_declared_length(request, file_limits)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    reader = _FormReader(tmp_dir, file_limits)
    try:
        await _feed(request, MultipartParser(boundary, reader.callbacks()), reader)
    except (PayloadTooLargeError, ValidationError):
        reader.abort()
        raise
    except (
        OSError
    ) as exc:  # writing the staged file failed: the volume's fault, not the client's body
        reader.abort()
        fault = volume_fault(exc)
        if fault is not None:
            raise fault from None
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several kinds on a broken body
        reader.abort()
        raise ValidationError(f"the multipart body could not be parsed: {exc}") from None
    return reader.finish()


def _missing(name: str) -> dict[str, Any]:
    return {"type": "missing", "loc": ("body", name), "msg": "Field required", "input": None}


def upload_form(
    limit_of: Callable[[Settings], int],
    *,
    file_field: str = "file",
    require_file: bool = True,
    required_fields: tuple[str, ...] = (),
) -> Callable[[Request], AsyncIterator[UploadForm]]:
    """A FastAPI dependency that yields the parsed form and removes unused staged files afterwards."""

    async def dependency(request: Request) -> AsyncIterator[UploadForm]:
        settings = get_services(request).settings
        form = await read_multipart(
            request, tmp_dir=settings.tmp_dir, file_limits={file_field: limit_of(settings)}
        )
        try:
            errors = [_missing(name) for name in required_fields if name not in form.fields]
            if require_file and file_field not in form.files:
                errors.insert(0, _missing(file_field))
            if errors:
                raise RequestValidationError(errors)
            yield form
        finally:
            form.cleanup()

    return dependency


def multipart_openapi(
    fields: dict[str, str],
    required: tuple[str, ...],
    files: tuple[str, ...] = ("file",),
    rules: dict[str, dict[str, Any]] | None = None,
    one_of: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``openapi_extra`` describing a multipart body (the parser above is invisible to FastAPI).

    ``rules`` adds JSON-schema keywords to a field (``minLength``, ``pattern`` ...): what the route accepts,
    so clients see the rule in the spec rather than learn it from a 400."""
    props: dict[str, Any] = {name: {"type": "string", "format": "binary"} for name in files}
    props.update({name: {"type": "string", "description": desc} for name, desc in fields.items()})
    for name, extra in (rules or {}).items():
        props[name].update(extra)
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if one_of:  # exactly one of these fields
        schema["oneOf"] = [
            {"required": [name], "not": {"required": [o for o in one_of if o != name]}}
            for name in one_of
        ]
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


#: The form of every bundle import: a zip ``file``, or ``volume_name`` for one already in ``voicebox/imports/``.
bundle_form = upload_form(lambda settings: settings.max_bundle_bytes, require_file=False)
BUNDLE_FORM_OPENAPI = multipart_openapi(
    {"volume_name": "instead of file: a bundle's name in voicebox/imports/ on the volume"},
    (),
    rules={"volume_name": {"pattern": VOLUME_NAME_PATTERN, "maxLength": VOLUME_NAME_MAX}},
    one_of=("file", "volume_name"),
)


def bundle_source(form: UploadForm, services: Services) -> Path:
    """The uploaded bundle, or the named one in ``voicebox/imports/`` (exactly one of the two)."""
    name = form.fields.get("volume_name")
    upload = form.files.get("file")
    if upload is not None and name:
        raise ValidationError("send either a file or a volume_name, not both")
    if upload is not None:
        return upload.path
    if name:
        return services.bundles.imports_file(name.strip())
    raise ValidationError(
        "send the bundle as the multipart field 'file', or name a bundle in voicebox/imports/ with "
        "the form field 'volume_name'"
    )
