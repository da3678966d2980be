"""Local bridge: the Voicebox HTTP API on localhost, each request forwarded as a RunPod job.

Why: the Voicebox desktop app (remote-server mode) and Voicebox scripts speak plain HTTP to one
server. A serverless endpoint only takes jobs. The bridge sits between them on the user's machine,
so the app works unchanged against a serverless GPU: multipart uploads become base64 ``files`` +
``form`` in the envelope, binary answers are decoded and served with their content type, and the
server's status codes and ``detail`` messages come through as they are.

What needs no job is answered locally by ``bridge_local.LocalBridge`` (not-available routes,
``/tasks/active``, cached worker state and audio, generations it runs through ``/run``).
What cannot work through jobs, and what the bridge does instead (documented in docs/client.md):
- ``GET /generate/{id}/status`` (SSE) of a generation it did not start is **emulated**: the bridge
  polls ``GET /history/{id}`` through jobs and emits ``data: {id, status, duration, error}`` events
  until the generation is completed or failed.
- Other progress streams (``/models/progress/{name}``, ``/generate/progress/{id}``,
  ``/events/speak``, ``/models/migrate/progress``) answer **501** with a message: a job cannot
  stream, and polling model downloads would keep a GPU worker awake.
- ``/shutdown`` answers 501: the bridge cannot stop a serverless worker (RunPod scales it down when
  idle).

Cost guard: the desktop app polls in the background, and every forwarded request is a job that
keeps (or wakes) a billed worker; ``bridge_local.py`` says what is answered without one.

Safety: the bridge spends the user's RunPod credit, so it listens on loopback by default and, through
``backend.http_guard`` (the same rules as ``serve``), refuses browser requests whose ``Origin`` is not the
desktop app's, ``Origin: null``, and a ``Host`` that is not loopback (DNS rebinding). Requests with no
``Origin`` at all (scripts, curl) must carry the per-run token (``Authorization: Bearer <token>``), printed at
start and written to a 0600 file: the app's own requests always carry its origin, and without the token an
``<img>`` tag on a rebinding page could start billed jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse

from backend.client.bridge_local import LocalBridge
from backend.client.bridge_stream import install_stream_routes
from backend.client.client import Answer, VoiceboxClient
from backend.client.errors import (
    AuthError,
    ClientError,
    ConfigError,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    PayloadTooLarge,
    ResultExpired,
    ResultMissing,
    ResultOnVolume,
    TransportError,
)
from backend.http_guard import APP_ORIGINS, GuardMiddleware, OriginPolicy, parse_origins
from backend.statuses import is_final

log = logging.getLogger("voicebox.bridge")

#: Origins of the Voicebox desktop app (Tauri) and its dev server; extend with VOICEBOX_CORS_ORIGINS.
DEFAULT_ORIGINS = APP_ORIGINS
#: Where ``serve`` writes the per-run token for local scripts (mode 0600), unless told otherwise.
DEFAULT_TOKEN_FILE = Path("~/.config/voicebox-worker/bridge-token")

#: Streams the bridge cannot carry: (method, pattern, what to use instead).
UNSUPPORTED_STREAMS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/models/progress/[^/]+"), "poll GET /models/status instead"),
    ("GET", re.compile(r"/generate/progress/[^/]+"), "poll GET /history/{id} instead"),
    ("GET", re.compile(r"/models/migrate/progress"), "migration is not available remotely"),
    ("GET", re.compile(r"/events/speak"), "speak events are not available remotely"),
    ("POST", re.compile(r"/shutdown"), "RunPod stops idle workers by itself"),
)

RETRY_ROUTE = re.compile(r"/generate/[^/]+/retry")
CANCEL_ROUTE = re.compile(r"/generate/([^/]+)/cancel")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: the longest a status stream emulated by polling runs (a generation's own limit is well below it)
STATUS_DEADLINE_SECONDS = 1800.0

#: Request headers worth forwarding (everything else describes the local connection).
FORWARDED_HEADERS = ("x-voicebox-client-id", "accept-language")
#: Answer headers not copied back (the bridge's own response sets framing and type).
DROPPED_ANSWER_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding", "connection"}
)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, **extra}, status_code=status)


def error_response(exc: ClientError) -> JSONResponse:
    """Map a client error to an HTTP answer the desktop app shows: the message is the point."""
    if isinstance(exc, PayloadTooLarge):
        return _error(413, str(exc))
    if isinstance(exc, JobTimedOut):
        return _error(504, f"RunPod: {exc}")
    if isinstance(exc, ResultExpired):
        return _error(504, f"RunPod: {exc}")
    if isinstance(exc, JobCancelled):
        return _error(503, f"RunPod: {exc}")
    if isinstance(exc, ResultOnVolume):
        return _error(502, str(exc), export=exc.export)
    if isinstance(exc, JobFailed | ResultMissing):
        return _error(502, f"RunPod: {exc}")
    if isinstance(exc, AuthError):
        return _error(502, f"RunPod refused the API key: {exc}")
    if isinstance(exc, TransportError):
        return _error(502, f"RunPod API unreachable or failing: {exc}")
    if isinstance(exc, ConfigError):
        return _error(500, str(exc))
    return _error(502, str(exc))


def answer_response(answer: Answer) -> Response:
    """The forwarded answer as the Voicebox server would have sent it."""
    headers = {k: v for k, v in answer.headers.items() if k.lower() not in DROPPED_ANSWER_HEADERS}
    content_type = answer.content_type or answer.headers.get("content-type")
    if answer.content is not None:
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=content_type or "application/octet-stream",
            headers=headers,
        )
    if answer.body is None:
        return Response(status_code=answer.status_code, headers=headers)
    if isinstance(answer.body, str) and not (content_type or "").startswith("application/json"):
        return Response(
            answer.body,
            status_code=answer.status_code,
            media_type=content_type or "text/plain",
            headers=headers,
        )
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


def _params(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in items:
        if key in params:
            current = params[key]
            params[key] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            params[key] = value
    return params


#: ``client.request`` run in a worker thread, never raising on an HTTP error status
Call = Callable[..., Awaitable[Answer]]


@dataclass
class _Payload:
    """A request's content as the envelope carries it: a JSON body, or multipart files and fields."""

    body: Any = None
    files: dict[str, Any] = field(default_factory=dict)
    form: dict[str, Any] = field(default_factory=dict)


def create_bridge_app(
    client: VoiceboxClient,
    *,
    health_ttl: float = 30.0,
    poll_interval: float = 1.0,
    status_deadline: float = STATUS_DEADLINE_SECONDS,
    allowed_origins: Iterable[str] | None = None,
    token: str | None = None,
    local: LocalBridge | None = None,
) -> FastAPI:
    """Build the bridge app around ``client`` (blocking client calls run in worker threads).

    ``local`` answers what needs no job (``bridge_local.py``); tests pass one with a fake clock.

    ``status_deadline``: seconds a status stream emulated by polling ``/history`` runs at most (each poll is a
    billed RunPod job); it ends sooner on every final status (``completed``, ``failed``, ``cancelled``).

    ``token`` is what requests without an ``Origin`` must present (``Authorization: Bearer``); a fresh random
    one when not given, readable as ``app.state.bridge_token``.
    """
    token = token or secrets.token_urlsafe(32)
    local = local or LocalBridge(
        client, ttl=health_ttl, poll_interval=poll_interval, render=answer_response
    )
    app = FastAPI(title="voicebox-worker bridge", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.bridge_token = token
    _install_guard(app, allowed_origins, token)

    async def call(*args: Any, **kwargs: Any) -> Answer:
        return await asyncio.to_thread(client.request, *args, check=False, **kwargs)

    _install_status_route(app, call, local, poll_interval, status_deadline)
    install_stream_routes(app, client, error_response)  # POST /generate/stream: bridge_stream.py
    _install_forward_route(app, call, local)
    return app


def _install_guard(app: FastAPI, allowed_origins: Iterable[str] | None, token: str) -> None:
    """CORS for the app's origins and, outermost, the origin/host/token guard (``http_guard``)."""
    extra, any_origin = parse_origins(os.environ.get("VOICEBOX_CORS_ORIGINS"))
    origins = [*(DEFAULT_ORIGINS if allowed_origins is None else allowed_origins), *extra]
    hosts = [h for h in os.environ.get("VOICEBOX_ALLOWED_HOSTS", "").split(",") if h.strip()]
    if any_origin:
        log.warning(
            "VOICEBOX_CORS_ORIGINS=*: any web page may drive this bridge and spend RunPod credit; "
            "list the origins you need instead"
        )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if any_origin else origins,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    policy = OriginPolicy.build(
        origins, any_origin=any_origin, hosts=hosts, token=token, what="this bridge"
    )
    app.add_middleware(GuardMiddleware, policy=policy)  # outermost: before CORS and routing


def _install_status_route(
    app: FastAPI, call: Call, local: LocalBridge, poll_interval: float, status_deadline: float
) -> None:
    @app.get("/generate/{generation_id}/status")
    async def generation_status(generation_id: str) -> StreamingResponse:
        """SSE of the bridge's own ``/run`` jobs, else emulated by polling ``GET /history/{id}``."""
        events = (
            local.status_events(generation_id)
            if local.owns(generation_id)
            else _polled_status_events(call, generation_id, poll_interval, status_deadline)
        )
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"


def _history_event(generation_id: str, answer: Answer) -> tuple[dict[str, Any], bool]:
    """The status event for one ``GET /history/{id}`` answer, and whether it is the last one."""
    record = answer.body if isinstance(answer.body, dict) else {}
    if answer.status_code == 404:  # as the server: one event the app closes on
        return {"id": generation_id, "status": "not_found"}, True
    if answer.status_code >= 400:
        message = record.get("detail") or f"HTTP {answer.status_code}"
        return {"id": generation_id, "status": "failed", "error": message}, True
    status = record.get("status") or "completed"
    event = {
        "id": generation_id,
        "status": status,
        "duration": record.get("duration"),
        "error": record.get("error"),
        "source": record.get("source"),
    }
    return event, is_final(status)


async def _polled_status_events(
    call: Call, generation_id: str, poll_interval: float, status_deadline: float
) -> AsyncIterator[str]:
    """A generation's status stream emulated by polling ``GET /history/{id}`` through jobs, until a
    final status or ``status_deadline``."""
    delay = poll_interval
    deadline = time.monotonic() + status_deadline
    while True:
        try:
            answer = await call("GET", f"/history/{generation_id}")
        except ClientError as exc:
            yield _sse({"id": generation_id, "status": "failed", "error": str(exc)})
            return
        event, last = _history_event(generation_id, answer)
        yield _sse(event)
        if last or time.monotonic() + delay > deadline:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 5.0)


def _unsupported(method: str, route: str) -> Response | None:
    """The 501 for a stream the bridge cannot carry, else None."""
    for stream_method, pattern, instead in UNSUPPORTED_STREAMS:
        if method == stream_method and pattern.fullmatch(route):
            return _error(
                501,
                f"{method} {route} is not available through the RunPod bridge: a serverless "
                f"job cannot stream or hold a connection; {instead}",
            )
    return None


async def _read_payload(request: Request) -> _Payload | Response:
    """The request's content for the envelope, or the error answer for content it cannot carry."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    payload = _Payload()
    if content_type in {"multipart/form-data", "application/x-www-form-urlencoded"}:
        data = await request.form()
        for key, value in data.multi_items():
            if isinstance(value, str):
                payload.form[key] = value
            else:
                payload.files[key] = (
                    value.filename or "upload.bin",
                    await value.read(),
                    value.content_type,
                )
        await data.close()
        return payload
    raw = await request.body()
    if not raw:
        return payload
    if content_type not in {"application/json", ""} and not content_type.endswith("+json"):
        return _error(415, f"the bridge forwards JSON or multipart, not {content_type}")
    try:
        payload.body = json.loads(raw)
    except ValueError:
        return _error(400, "request body is not valid JSON")
    if not isinstance(payload.body, dict):
        return _error(400, "the RunPod envelope carries JSON object bodies only")
    return payload


def _install_forward_route(app: FastAPI, call: Call, local: LocalBridge) -> None:
    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def forward(request: Request, path: str) -> Response:
        method = request.method
        route = "/" + path
        query = request.url.query
        answered = _unsupported(method, route)
        if answered is None:
            answered = local.answer(method, route, query, request.headers)
        if answered is not None:
            return answered
        raw_path = request.scope.get("raw_path", route.encode()).decode("latin-1")
        params = _params(request.query_params.multi_items())
        headers = {k: request.headers[k] for k in FORWARDED_HEADERS if k in request.headers}
        payload = await _read_payload(request)
        if isinstance(payload, Response):
            return payload
        owned = await _answer_owned(local, method, route, raw_path, payload, params, headers)
        if owned is not None:
            return owned
        try:
            answer = await call(
                method,
                raw_path,
                body=payload.body,
                params=params,
                headers=headers,
                files=payload.files or None,
                form=payload.form or None,
                mode="sync",
            )
        except ValueError as exc:  # a path the envelope cannot carry
            return _error(400, str(exc))
        except ClientError as exc:
            return error_response(exc)
        learned = local.forwarded(method, route, query, request.headers, answer)
        return learned if learned is not None else answer_response(answer)


async def _answer_owned(
    local: LocalBridge,
    method: str,
    route: str,
    raw_path: str,
    payload: _Payload,
    params: dict[str, Any],
    headers: dict[str, str],
) -> Response | None:
    """What the bridge runs itself: a generation it starts with ``/run``, or the cancel of one."""
    if method == "POST" and (route == "/generate" or RETRY_ROUTE.fullmatch(route)):
        try:
            return await local.start_generation(route, raw_path, payload.body, params, headers)
        except ValueError as exc:
            return _error(400, str(exc))
        except ClientError as exc:
            return error_response(exc)
    cancel = CANCEL_ROUTE.fullmatch(route)
    if method == "POST" and cancel and local.owns(cancel.group(1)):
        return await local.cancel(cancel.group(1))
    return None


def write_token_file(path: Path, token: str) -> Path:
    """Write ``token`` to ``path`` readable by this user only (0600 from creation, never world-readable)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    return path


def serve(
    client: VoiceboxClient,
    *,
    host: str = "127.0.0.1",
    port: int = 17493,
    token_file: Path | None = DEFAULT_TOKEN_FILE,
) -> None:
    """Run the bridge with uvicorn until interrupted; print the per-run token (and write its file)."""
    import sys

    import uvicorn

    token = secrets.token_urlsafe(32)
    where = ""
    if token_file is not None:
        where = f" (also in {write_token_file(token_file, token)}, mode 0600)"
    print(
        f"bridge token for scripts (requests without an Origin): {token}{where}\n"
        f"  curl -H 'Authorization: Bearer {token}' http://{host}:{port}/health",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(create_bridge_app(client, token=token), host=host, port=port, log_level="info")
