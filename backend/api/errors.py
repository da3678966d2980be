"""The one place service and database failures become HTTP answers.

Why one place: routes stay thin (no try/except per route), and a 404 raised deep in a service can never be
rewritten into a 500 by a broad ``except Exception`` in a handler, which is how Voicebox answered 500 for
missing profiles. Answers keep Voicebox's ``{"detail": ...}`` shape.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api.admin import flat_routes
from backend.db.errors import (
    DatabaseCorruptError,
    DatabaseError,
    LeaseTimeoutError,
    LibraryMissingError,
    SchemaMismatchError,
    VolumeError,
    VolumeFullError,
    VolumeReadOnlyError,
    WriteConflictError,
    volume_fault,
)
from backend.services.errors import (
    BusyError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
    ValidationError,
)
from backend.storage.audio import AudioValidationError
from backend.storage.blobs import UnsafePathError
from backend.storage.effects import EffectsError

log = logging.getLogger("voicebox.api")

#: service error → status; the first matching class wins (subclasses before bases).
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (BusyError, 429),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (ValidationError, 400),
    (ServiceError, 400),
)
RETRY_AFTER_SECONDS = "5"
#: a full volume is not fixed in seconds: clients should back off longer (507 Insufficient Storage)
FULL_RETRY_AFTER_SECONDS = "60"


def status_for(exc: Exception) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, BusyError):
        return _detail(429, exc.message, {"Retry-After": str(exc.retry_after)})
    return _detail(status_for(exc), exc.message)


async def _audio_error(_request: Request, exc: Exception) -> JSONResponse:
    return _detail(400, str(exc))


async def _unsafe_path(_request: Request, exc: Exception) -> JSONResponse:
    return _detail(400, f"refused: {exc}")


def _volume_fault_answer(fault: VolumeError) -> JSONResponse:
    """507 for a full volume, 503 for a read-only one; the message names the fault, never a path."""
    if isinstance(fault, VolumeFullError):
        log.error("volume full: %s", fault)
        return _detail(507, str(fault), {"Retry-After": FULL_RETRY_AFTER_SECONDS})
    log.error("volume read-only: %s", fault)
    return _detail(503, str(fault), {"Retry-After": FULL_RETRY_AFTER_SECONDS})


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, VolumeFullError | VolumeReadOnlyError):
        return _volume_fault_answer(exc)
    if isinstance(exc, LeaseTimeoutError | WriteConflictError):
        log.warning("database busy: %s", exc)
        return _detail(503, str(exc), {"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(
        exc, SchemaMismatchError | DatabaseCorruptError | LibraryMissingError | VolumeError
    ):
        log.error("database unusable: %s", exc)
        return _detail(503, str(exc))
    log.error("database error: %s", exc)
    return _detail(503, str(exc), {"Retry-After": RETRY_AFTER_SECONDS})


async def _os_error(request: Request, exc: Exception) -> JSONResponse:
    """ENOSPC/EROFS from any file or SQLite write on the volume: the volume's fault, said so; else a 500."""
    fault = volume_fault(exc)
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if fault is None and isinstance(orig, BaseException):
        fault = volume_fault(orig)
    if fault is not None:
        return _volume_fault_answer(fault)
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", ref, request.method, request.url.path)
    return _detail(500, f"internal error (reference {ref}); the worker log has the details")


#: how much of a refused value a validation error repeats
ECHO_CHARS = 200
ECHO_ITEMS = 20


def short_echo(value: object) -> object:
    """A refused value as a validation error may repeat it: strings past ``ECHO_CHARS`` become their start
    plus their length, containers keep ``ECHO_ITEMS`` entries. A 5,000,000-character ``text`` used to come
    back whole in the 422 (and, through RunPod, spill a 15 MB answer onto the volume)."""
    if isinstance(value, str):
        if len(value) <= ECHO_CHARS:
            return value
        return f"{value[:ECHO_CHARS]}… ({len(value)} characters)"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:ECHO_CHARS]: short_echo(v) for k, v in items[:ECHO_ITEMS]}
        if len(items) > ECHO_ITEMS:
            out["…"] = f"{len(items) - ECHO_ITEMS} more keys"
        return out
    if isinstance(value, list | tuple):
        head = [short_echo(v) for v in list(value)[:ECHO_ITEMS]]
        if len(value) > ECHO_ITEMS:
            head.append(f"… {len(value) - ECHO_ITEMS} more items")
        return head
    return value


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in jsonable_encoder(exc.errors()):
        if isinstance(error, dict) and "input" in error:
            error = {**error, "input": short_echo(error["input"])}
        errors.append(error)
    return JSONResponse({"detail": errors}, status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path (Starlette's 405 names only the first route it tried,
    so ``OPTIONS /profiles/{id}`` said ``Allow: GET`` while PUT and DELETE exist too)."""
    methods: set[str] = set()
    path = request.url.path
    for route in flat_routes(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods.update(route.methods)
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        exc = StarletteHTTPException(405, exc.detail, headers=headers)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(AudioValidationError, _audio_error)
    app.add_exception_handler(
        EffectsError, _audio_error
    )  # a bad effects chain: 400 naming the field
    app.add_exception_handler(UnsafePathError, _unsafe_path)
    app.add_exception_handler(DatabaseError, _database_error)
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(sqlite3.Error, _os_error)
    app.add_exception_handler(SQLAlchemyError, _os_error)
    app.add_exception_handler(Exception, _unexpected)
