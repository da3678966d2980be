"""The RunPod job envelope: one HTTP request to the local API, described as JSON.

Why a strict model: the envelope is the only input a RunPod caller controls, and the template worker this
project replaces built its request as ``BASE_URL + path`` -- so ``"path": "@evil.host/"`` made the worker fetch
another host with the worker's network position (SSRF). Here ``path`` must be an origin-form path (RFC 9112 §3.2.1) on the local server, checked on the
raw text *and* after percent-decoding (uvicorn decodes once before routing; a second pass catches double
encoding). Header values may not carry CR/LF (smuggling a second request or header), and uploads are base64 checked
before anything is sent. Every error names the field (``input.files.file.content_base64: ...``) so a caller can
fix the job without reading server logs.

Nothing here does I/O: parsing an envelope is pure and cheap.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backend.api.admin import decoded_route
from backend.config import DEFAULT_MAX_JOB_UPLOAD_BYTES
from backend.serverless.request_path import MAX_PATH_LENGTH as MAX_PATH_LENGTH
from backend.serverless.request_path import check_path as check_path
from backend.serverless.request_path import has_control

__all__ = [
    "DROPPED_HEADERS",
    "Envelope",
    "EnvelopeError",
    "FileSpec",
    "MAX_PATH_LENGTH",
    "parse_envelope",
]

MAX_HEADERS = 64
MAX_HEADER_VALUE = 8192
#: What one job can carry at all: base64 of it fills RunPod's 20 MB ``/runsync`` cap (``/run`` takes 10 MB).
DEFAULT_MAX_FILE_BYTES = DEFAULT_MAX_JOB_UPLOAD_BYTES

#: Headers a job may not set: hop-by-hop (RFC 9110 §7.6.1) and those that describe the connection or framing the
#: handler itself owns. Content-Type is set by the handler from ``body``/``form``/``files``.
DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "expect",
    }
)

_RETRY_RE = re.compile(r"/generate/[^/]+/retry")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token (header field name)

Scalar = str | int | float | bool


class EnvelopeError(ValueError):
    """The job's input cannot become a request; ``str(err)`` names the field and says what to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def decoded_upper_bound(text: str) -> int:
    """At most how many bytes base64 ``text`` decodes to, from its length alone (no decoding)."""
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return len(text) * 3 // 4 - padding


def over_limit(size: int, limit: int) -> str:
    return (
        f"decodes to {size} bytes ({size / 1e6:.1f} MB), over the per-job upload limit of {limit} "
        f"bytes ({limit / 1e6:.1f} MB) "
        "(VOICEBOX_MAX_JOB_UPLOAD_MB; RunPod takes at most 20 MB per /runsync job, base64 included); "
        "upload large files to voicebox/imports/ on the volume and name them with volume_name"
    )


def _flat_value(value: Any, where: str, *, allow_list: bool = True) -> Scalar | list[Scalar] | None:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if allow_list and isinstance(value, list):
        for item in value:
            if not isinstance(item, str | bool | int | float):
                raise ValueError(
                    f"{where}: list items must be strings, numbers or booleans (no nesting)"
                )
        return value
    kind = "object" if isinstance(value, dict) else type(value).__name__
    raise ValueError(
        f"{where}: nested {kind} is not allowed; use a string, number, boolean or a list of them"
    )


def as_text(value: Scalar) -> str:
    """Query/form text for a flat value: booleans as true/false (what FastAPI parses), numbers as JSON does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FileSpec(BaseModel):
    """One upload: base64 content that becomes a multipart file part."""

    model_config = ConfigDict(extra="forbid")

    filename: StrictStr = Field(default="upload.bin", min_length=1, max_length=255)
    content_base64: StrictStr
    content_type: StrictStr = Field(default="application/octet-stream", max_length=255)
    _data: bytes = PrivateAttr(default=b"")

    @field_validator("filename", "content_type")
    @classmethod
    def _no_control(cls, value: str) -> str:
        if has_control(value) or '"' in value:
            raise ValueError("must not contain control characters or quotes")
        return value

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in {".", ".."}:
            raise ValueError("must be a plain file name, not a path")
        return value

    @field_validator("content_base64")
    @classmethod
    def _size_first(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        # Checked on the length before decoding, so an oversized upload costs no memory beyond the job itself.
        if decoded_upper_bound(value) > limit:
            raise ValueError(over_limit(decoded_upper_bound(value), limit))
        return value

    @model_validator(mode="after")
    def _decode(self, info: ValidationInfo) -> FileSpec:
        limit = (info.context or {}).get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        text = self.content_base64
        if text.startswith("data:") and ";base64," in text[:200]:
            text = text.split(";base64,", 1)[1]  # tolerate a data: URL, a common client shape
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "content_base64: not valid base64 (standard alphabet, padded)"
            ) from None
        if len(data) > limit:
            raise ValueError(
                f"content_base64: decodes to {len(data)} bytes, over the limit {limit}"
            )
        self._data = data
        return self

    @property
    def data(self) -> bytes:
        """The decoded bytes (decoded once, during validation)."""
        return self._data


class Envelope(BaseModel):
    """``job["input"]``: the HTTP request to make on the local API, plus job options."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: StrictStr
    body: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, StrictStr] = Field(default_factory=dict)
    files: dict[str, FileSpec | list[FileSpec]] = Field(default_factory=dict)
    form: dict[str, Any] = Field(default_factory=dict)
    # Job options (not sent to the app).
    inline_audio: StrictBool = False
    inline_only: StrictBool = False
    audio_format: Literal["wav", "flac", "mp3", "opus"] | None = None
    stream: StrictBool = False

    _route_path: str = PrivateAttr(default="/")
    _query: list[tuple[str, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _files_size_first(cls, raw: Any, info: ValidationInfo) -> Any:
        """All uploads together, measured on their base64 length before any of them is decoded."""
        files = raw.get("files") if isinstance(raw, dict) else None
        if not isinstance(files, dict):
            return raw
        limit = (info.context or {}).get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        sizes = [
            decoded_upper_bound(one["content_base64"])
            for spec in files.values()
            for one in (spec if isinstance(spec, list) else [spec])
            if isinstance(one, dict) and isinstance(one.get("content_base64"), str)
        ]
        # One file over the limit is named by its own field (``_size_first``); several are refused here.
        if len(sizes) > 1 and sum(sizes) > limit:
            raise ValueError(f"files: together {over_limit(sum(sizes), limit)}")
        return raw

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _origin_form(cls, value: str) -> str:
        check_path(value)
        return value

    @field_validator("params", "form")
    @classmethod
    def _flat(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not key or has_control(key):
                raise ValueError("names must be non-empty text without control characters")
            _flat_value(item, key)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers")
        kept: dict[str, str] = {}
        for name, item in value.items():
            if not _TOKEN_RE.fullmatch(name):
                raise ValueError(f"{name[:100]!r} is not a valid header name (RFC 9110 token)")
            if "\r" in item or "\n" in item or "\0" in item or has_control(item.replace("\t", "")):
                raise ValueError(f"{name}: value contains CR, LF or control characters")
            if len(item) > MAX_HEADER_VALUE:
                raise ValueError(f"{name}: value longer than {MAX_HEADER_VALUE} characters")
            if name.lower() in DROPPED_HEADERS:
                continue  # hop-by-hop / framing: the handler owns these
            kept[name] = item
        return kept

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Envelope:
        path, query = check_path(self.path)
        self._route_path = path
        self._query = query
        if self.body is not None and (self.files or self.form):
            raise ValueError("body: use either a JSON body or files/form (multipart), not both")
        if self.method == "GET" and (self.body or self.files or self.form):
            raise ValueError("body: a GET request carries no body, files or form")
        limit = (info.context or {}).get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        total = sum(len(spec.data) for spec in self.file_parts_specs())
        if total > limit:
            raise ValueError(f"files: {total} bytes in all, over the upload limit of {limit}")
        if (self.inline_audio or self.audio_format) and not self.is_generate():
            raise ValueError(
                "inline_audio: only applies to POST /generate and its retry (download other audio directly)"
            )
        if self.stream and self.streamed_route() is None:
            raise ValueError(
                "stream: only POST /generate, /generate/stream and /v1/audio/speech can stream"
            )
        if self.is_stream() and (self.inline_audio or self.audio_format):
            raise ValueError("inline_audio: a stream job sends its audio as stream chunks already")
        return self

    # -- derived views used by the handler ------------------------------------------------------------------

    @property
    def route_path(self) -> str:
        """The path without its query string (raw, still percent-encoded)."""
        return self._route_path

    def is_generate(self) -> bool:
        """``POST /generate`` or a retry (which re-runs a generation in its row): both must end durable."""
        if self.method != "POST":
            return False
        route = decoded_route(self._route_path)
        return route == "/generate" or _RETRY_RE.fullmatch(route) is not None

    def streamed_route(self) -> str | None:
        """The route a stream job calls (``/generate`` streams through ``/generate/stream``), or ``None``."""
        if self.method != "POST":
            return None
        route = decoded_route(self._route_path)
        if route in ("/generate", "/generate/stream"):
            return "/generate/stream"
        if route == "/v1/audio/speech":
            return route
        return None

    def is_stream(self) -> bool:
        """``stream: true`` on a route that can stream, or the streaming route itself."""
        if self.streamed_route() is None:
            return False
        return self.stream or decoded_route(self._route_path) == "/generate/stream"

    def query_items(self) -> list[tuple[str, str]]:
        """Query from the path first, then ``params`` (lists become repeated keys)."""
        items = list(self._query)
        for key, value in self.params.items():
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            items.extend((key, as_text(item)) for item in values)
        return items

    def form_items(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] = []
        for key, value in self.form.items():
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            items.extend((key, as_text(item)) for item in values)
        return items

    def file_parts_specs(self) -> list[FileSpec]:
        out: list[FileSpec] = []
        for spec in self.files.values():
            out.extend(spec if isinstance(spec, list) else [spec])
        return out

    def file_parts(self) -> list[tuple[str, tuple[str, bytes, str]]]:
        """httpx ``files=`` argument: (field, (filename, bytes, content type)) per upload."""
        parts: list[tuple[str, tuple[str, bytes, str]]] = []
        for field, spec in self.files.items():
            for one in spec if isinstance(spec, list) else [spec]:
                parts.append((field, (one.filename, one.data, one.content_type)))
        return parts


def _location(loc: tuple[Any, ...]) -> str:
    parts = ["input"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]"
        elif isinstance(item, str) and ("[" in item or item == "FileSpec"):
            continue  # union branch names pydantic adds ("list[...]", "function-after[...]")
        else:
            parts.append(str(item))
    return ".".join(parts)


_FRIENDLY = {
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "missing": "is required",
    "extra_forbidden": "is not a known envelope field",
    "model_type": "must be an object {filename, content_base64, content_type} or a list of them",
}
_NAME_RE = re.compile(r"[A-Za-z0-9_\-]{1,100}")


def _pick_error(err: ValidationError) -> EnvelopeError:
    errors = err.errors(include_url=False, include_input=False)
    # For unions (one file or a list of files) the deepest location is the branch that matched the shape.
    first = max(errors, key=lambda e: len(e["loc"]))
    field = _location(tuple(first["loc"]))
    message = _FRIENDLY.get(first["type"], str(first["msg"]).removeprefix("Value error, "))
    if first["type"] == "literal_error" and field.endswith(".method"):
        message = "must be one of GET, POST, PUT, PATCH, DELETE"
    # Model-level and per-key checks start their message with the name they are about ("body: ...").
    head, sep, rest = message.partition(": ")
    if sep and _NAME_RE.fullmatch(head) and not field.endswith("." + head):
        return EnvelopeError(f"{field}.{head}", rest)
    return EnvelopeError(field, message)


def parse_envelope(raw: Any, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Envelope:
    """Validate ``job["input"]``; raise ``EnvelopeError`` naming the offending field."""
    if not isinstance(raw, dict):
        kind = "missing" if raw is None else f"a JSON {type(raw).__name__}"
        raise EnvelopeError("input", f"must be a JSON object with at least 'path' (got {kind})")
    try:
        return Envelope.model_validate(raw, context={"max_file_bytes": max_file_bytes})
    except ValidationError as err:
        raise _pick_error(err) from None
