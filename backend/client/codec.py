"""The envelope codec: one Voicebox HTTP request as a job input, and a job's output back as an ``Answer``.

Why apart from the transport: the envelope and the answer are this project's own wire format (``docs/serverless.md``,
"The job envelope" and "Answers"); RunPod only carries them. The answer's keys are defined once, in
``backend/job_answer.py``, which the serverless handler writes with.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from backend.client.errors import JobFailed, ProtocolError
from backend.client.runpod import parse_job_error
from backend.job_answer import (
    AUDIO,
    BODY,
    BODY_BASE64,
    CONTENT_TYPE,
    ERROR,
    EXPORT,
    HEADERS,
    IS_BINARY,
    SPILLED,
    STATUS_CODE,
)

FileSpec = str | os.PathLike[str] | tuple[str, bytes] | tuple[str, bytes, str | None]


@dataclass
class Answer:
    """The Voicebox server's answer, unwrapped from the job output."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content: bytes | None = None
    content_type: str | None = None
    job_id: str | None = None
    export: dict[str, Any] | None = None
    audio: Answer | None = None  # ``inline_audio``: the generation's audio, attached by the handler

    @property
    def is_binary(self) -> bool:
        return self.content is not None

    @property
    def spilled(self) -> bool:
        return self.export is not None and self.content is None


def file_entry(spec: FileSpec) -> dict[str, Any]:
    if isinstance(spec, tuple):
        filename, data = spec[0], spec[1]
        content_type = spec[2] if len(spec) > 2 else None
    else:
        path = Path(spec)
        filename, data = path.name, path.read_bytes()
        content_type = None
    content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return {
        "filename": filename,
        "content_base64": base64.b64encode(data).decode("ascii"),
        "content_type": content_type,
    }


class EnvelopeParts(TypedDict, total=False):
    """The parts of a request ``build_envelope`` takes besides its method and path (for ``**parts``)."""

    body: Any
    params: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    files: Mapping[str, FileSpec] | None
    form: Mapping[str, Any] | None
    inline_audio: bool | None
    inline_only: bool | None


def build_envelope(
    method: str,
    path: str,
    *,
    body: Any = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    files: Mapping[str, FileSpec] | None = None,
    form: Mapping[str, Any] | None = None,
    inline_audio: bool | None = None,
    inline_only: bool | None = None,
) -> dict[str, Any]:
    """The job input for one HTTP request (`docs/serverless.md`); empty parts are left out."""
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"path must be an origin-form path such as /profiles, not {path!r}")
    envelope: dict[str, Any] = {"method": method.upper(), "path": path}
    if body is not None:
        envelope["body"] = body
    if params:
        envelope["params"] = {k: v for k, v in params.items() if v is not None}
    if headers:
        envelope["headers"] = dict(headers)
    if files:
        envelope["files"] = {name: file_entry(spec) for name, spec in files.items()}
    if form:
        envelope["form"] = {k: str(v) for k, v in form.items() if v is not None}
    if inline_audio is not None:
        envelope["inline_audio"] = inline_audio
    if inline_only is not None:
        envelope["inline_only"] = inline_only
    return envelope


def decode_output(output: Any, *, job_id: str | None = None) -> Answer:
    """Turn a job output into an ``Answer`` (binary decoded, spill described, JSON as is).

    A worker with a generator handler (``VOICEBOX_STREAM_JOBS``) answers a list: ``[answer]``, or the
    chunks of a stream job, joined here into one binary answer.
    """
    if isinstance(output, list):
        from backend.client.stream import aggregate_answer

        output = aggregate_answer(output)
    if not isinstance(output, dict):
        raise ProtocolError(f"job {job_id}: output is not an envelope answer: {output!r:.200}")
    if ERROR in output and STATUS_CODE not in output:
        message, kind, trace = parse_job_error(output[ERROR])
        raise JobFailed(message, job_id=job_id, error_type=kind, traceback=trace, raw=output)
    try:
        status_code = int(output.get(STATUS_CODE, 200))
    except (TypeError, ValueError):
        raise ProtocolError(f"job {job_id}: bad status_code {output.get(STATUS_CODE)!r}") from None
    headers = {str(k): str(v) for k, v in (output.get(HEADERS) or {}).items()}
    if output.get(SPILLED):
        export = output.get(EXPORT)
        if not isinstance(export, dict) or not export.get("name"):
            raise ProtocolError(f"job {job_id}: spilled answer without an export name")
        return Answer(
            status_code,
            headers,
            export=export,
            job_id=job_id,
            content_type=export.get("content_type"),
        )
    if output.get(IS_BINARY):
        try:
            content = base64.b64decode(output.get(BODY_BASE64) or "", validate=True)
        except ValueError:
            raise ProtocolError(f"job {job_id}: body_base64 is not valid base64") from None
        content_type = output.get(CONTENT_TYPE) or headers.get("content-type")
        return Answer(
            status_code, headers, content=content, content_type=content_type, job_id=job_id
        )
    answer = Answer(
        status_code,
        headers,
        body=output.get(BODY),
        job_id=job_id,
        content_type=headers.get("content-type", "application/json"),
    )
    if isinstance(output.get(AUDIO), dict):
        answer.audio = decode_output(output[AUDIO], job_id=job_id)
    return answer


def detail_message(body: Any) -> str:
    """The human part of a FastAPI error body: ``detail`` as a string, a ``message``, or validation
    errors.
    """
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        for key in ("message", "error", "detail"):
            if isinstance(detail.get(key), str):
                return detail[key]
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        parts = []
        for item in detail:
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
        return "; ".join(parts)
    if detail is None:
        return "(no message)"
    return json.dumps(detail) if not isinstance(detail, bytes) else repr(detail[:200])
