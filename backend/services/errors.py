"""Failures services raise; ``backend/api/errors.py`` maps each kind to one HTTP status in one place.

Why plain exceptions: services know nothing of HTTP (the CLI and the RunPod handler reuse them), and a route
never has to translate ``None`` into a 404 by hand — the mistake that turns Voicebox's 404s into 500s.
Every message is meant for the person who sent the request: say what was wrong and what to do instead.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every failure a service reports on purpose; ``message`` is shown to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ServiceError):
    """The profile, sample, generation or file named in the request does not exist (404)."""


class ConflictError(ServiceError):
    """The request clashes with the current state: a taken name, work in progress (409)."""


class ValidationError(ServiceError):
    """The request or its payload is malformed or unusable: bad audio, a hostile bundle (400)."""


class PayloadTooLargeError(ServiceError):
    """An upload or bundle is over a size limit (413)."""


class UnsupportedMediaError(ValidationError):
    """A file is not of a type this endpoint accepts (400, like every other validation failure)."""


class BusyError(ServiceError):
    """The worker is at its bound of queued work (``VOICEBOX_MAX_QUEUED``): retry after ``retry_after`` (429)."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
