"""Exceptions of the remote client.

Why so many: a RunPod job can go wrong in ways that call for different reactions from the user — the
Voicebox server refused the request (fix the request), the handler crashed (read the worker log),
RunPod killed the job at its execution timeout (raise the timeout or shorten the text), someone
cancelled it, or the result aged out of RunPod's retention (submit again). One generic error would
hide which of these happened, so each has a class, and every class carries the message the server or
RunPod gave.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base class of every error the client raises on purpose."""


class ConfigError(ClientError):
    """The client cannot start: no API key, no endpoint id, or a bad setting."""


class TransportError(ClientError):
    """RunPod's REST API itself refused or failed (network, 4xx/5xx from api.runpod.ai, bad
    JSON).
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthError(TransportError):
    """RunPod answered 401: the API key is missing, wrong, or lacks access to this endpoint."""


class PayloadTooLarge(ClientError):
    """The request would exceed RunPod's payload cap, so it was not sent.

    Sending it anyway gets a bare 400 from RunPod; failing here lets the message say what to do
    instead.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class RemoteError(ClientError):
    """The Voicebox server answered with an HTTP error status; ``message`` is its ``detail``."""

    def __init__(self, status_code: int, message: str, *, body: Any = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body


class JobError(ClientError):
    """A RunPod job ended in a state other than COMPLETED, or its result cannot be had."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.message = message


class JobFailed(JobError):
    """RunPod marked the job FAILED: the handler returned ``{"error": ...}`` or raised.

    ``error_type`` and ``traceback`` are filled when the SDK serialised a raised exception (its
    error is a JSON string with ``error_type``/``error_message``/``error_traceback``).
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        error_type: str | None = None,
        traceback: str | None = None,
        raw: Any = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.error_type = error_type
        self.traceback = traceback
        self.raw = raw


class JobTimedOut(JobError):
    """The job ran out of time.

    ``on_server`` is True when RunPod reported TIMED_OUT (the endpoint's execution timeout or the
    request TTL); False when the client stopped waiting — the job may still finish, and ``job_id``
    lets you fetch it later.
    """

    def __init__(self, message: str, *, job_id: str | None = None, on_server: bool = True) -> None:
        super().__init__(message, job_id=job_id)
        self.on_server = on_server


class JobCancelled(JobError):
    """RunPod reports the job CANCELLED (by this client, the console, or a queue purge)."""


class ResultExpired(JobError):
    """``/status`` answered 404: RunPod no longer knows the job (retention or TTL passed). Submit it
    again.
    """


class ResultMissing(JobError):
    """The job COMPLETED without an output.

    The RunPod SDK drops a result it fails to upload (typically one too large) and reports COMPLETED
    anyway.
    """


class ResultOnVolume(JobError):
    """The answer was too large to return through RunPod and sits on the network volume.

    ``export`` is the handler's description (``name``, ``size``, ``sha256``, ``content_type``); the
    file is at ``voicebox/exports/<name>`` on the volume and can be downloaded with RunPod's
    S3-compatible API.
    """

    def __init__(self, message: str, *, export: dict[str, Any], job_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id)
        self.export = export


class ProtocolError(ClientError):
    """The job's output does not follow the envelope contract (an older or foreign worker image)."""
