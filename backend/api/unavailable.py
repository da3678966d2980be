"""Voicebox routes this server does not provide, answered in a shape the desktop app renders as off or empty.

Why answer them at all: the app calls them (some in the background: ``/capture/readiness`` every 5 s,
``/backend/cuda-status`` every 10 s), and a 404 breaks its screens. Each route here answers the same way every
time, so the app shows the feature as off: lists are empty, statuses say "not available" with a reason, and actions
are a **400** whose ``detail`` says why (the app shows ``detail`` in its error toast). A 4xx, not 501: the request
asks for something this server does not do, and a 5xx here means a server failure and nothing else. Server-sent event routes send
one final event (or, for the speak stream, a one-day reconnect delay) and close.

This module imports only the standard library and FastAPI: the RunPod bridge (``backend/client/bridge_local.py``)
answers these same routes locally from ``UNAVAILABLE``, without starting a billed job.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

STATUS_NOT_AVAILABLE = 400

LLM = "it needs a language model (Qwen3 LLM), which this server does not run"
CAPTURES = "dictation and captures need the desktop app's local recorder and a language model"
MCP = "this server has no MCP endpoint"
GPU_BACKEND = (
    "GPU backends are part of the server image here (CUDA on RunPod); there is nothing to download"
)
PRESETS = "this server clones voices from samples only (no preset voices)"
SHUTDOWN = "stop `voicebox-worker serve` itself; on RunPod idle workers stop by themselves"
IMPORT_AUDIO = "import a generation bundle with POST /history/import instead"
MIGRATE = "the model cache lives on the network volume (`voicebox-worker models prefetch`)"


@dataclass(frozen=True)
class Unavailable:
    """One route: ``kind`` is ``json`` (a fixed 200 answer), ``refuse`` (400 + reason) or ``sse``."""

    method: str
    path: str  # FastAPI template, e.g. /captures/{capture_id}
    kind: str
    reason: str
    body: Callable[[dict[str, str]], Any] | None = None

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _readiness(_: dict[str, str]) -> dict[str, Any]:
    def gate(model_name: str, display: str, size: str) -> dict[str, Any]:
        return {
            "ready": False,
            "model_name": model_name,
            "display_name": display,
            "size": size,
            "size_mb": None,
        }

    return {
        "stt": gate("whisper-base", "Whisper Base", "base"),
        "llm": gate("qwen3-0.6b", "Qwen3 0.6B", "0.6B"),
        "available": False,
        "reason": f"dictation is not available on this server: {CAPTURES}",
    }


def _gpu_status(kind: str) -> Callable[[dict[str, str]], dict[str, Any]]:
    def body(_: dict[str, str]) -> dict[str, Any]:
        return {
            "available": False,
            "active": False,
            "binary_path": None,
            "downloading": False,
            "download_progress": None,
            "applicable": False,
            "reason": f"{kind} backend downloads are not applicable: {GPU_BACKEND}",
        }

    return body


def _capture_settings(_: dict[str, str]) -> dict[str, Any]:
    return {
        "stt_model": "base",
        "language": "en",
        "auto_refine": False,
        "llm_model": "0.6B",
        "smart_cleanup": False,
        "self_correction": False,
        "preserve_technical": False,
        "allow_auto_paste": False,
        "default_playback_voice_id": None,
        "hotkey_enabled": False,
        "chord_push_to_talk_keys": [],
        "chord_toggle_to_talk_keys": [],
        "available": False,
        "reason": f"captures are not available on this server: {CAPTURES}",
    }


def _progress_event(name: str, reason: str) -> dict[str, Any]:
    return {
        "model_name": name,
        "current": 0,
        "total": 0,
        "progress": 0,
        "filename": None,
        "status": "error",
        "timestamp": _now(),
        "error": reason,
    }


def _const(value: Any) -> Callable[[dict[str, str]], Any]:
    return lambda _params: value


UNAVAILABLE: tuple[Unavailable, ...] = (
    # captures / dictation
    Unavailable("POST", "/captures", "refuse", CAPTURES),
    Unavailable("GET", "/captures", "json", CAPTURES, _const({"items": [], "total": 0})),
    Unavailable("GET", "/captures/{capture_id}", "refuse", CAPTURES),
    Unavailable("GET", "/captures/{capture_id}/audio", "refuse", CAPTURES),
    Unavailable("DELETE", "/captures/{capture_id}", "refuse", CAPTURES),
    Unavailable("POST", "/captures/{capture_id}/refine", "refuse", CAPTURES),
    Unavailable("POST", "/captures/{capture_id}/retranscribe", "refuse", CAPTURES),
    Unavailable("GET", "/capture/readiness", "json", CAPTURES, _readiness),
    Unavailable("GET", "/settings/captures", "json", CAPTURES, _capture_settings),
    Unavailable("PUT", "/settings/captures", "refuse", CAPTURES),
    # GPU backends
    Unavailable("GET", "/backend/cuda-status", "json", GPU_BACKEND, _gpu_status("CUDA")),
    Unavailable("POST", "/backend/download-cuda", "refuse", GPU_BACKEND),
    Unavailable("DELETE", "/backend/cuda", "refuse", GPU_BACKEND),
    Unavailable("GET", "/backend/cuda-progress", "sse", GPU_BACKEND),
    Unavailable("GET", "/backend/rocm-status", "json", GPU_BACKEND, _gpu_status("ROCm")),
    Unavailable("POST", "/backend/download-rocm", "refuse", GPU_BACKEND),
    Unavailable("DELETE", "/backend/rocm", "refuse", GPU_BACKEND),
    Unavailable("GET", "/backend/rocm-progress", "sse", GPU_BACKEND),
    Unavailable("POST", "/generate/import", "refuse", IMPORT_AUDIO),
    # agents: speak, MCP, LLM
    Unavailable("GET", "/events/speak", "sse", MCP),
    Unavailable("POST", "/speak", "refuse", MCP),
    Unavailable("GET", "/mcp", "refuse", MCP),
    Unavailable("POST", "/mcp", "refuse", MCP),
    Unavailable("DELETE", "/mcp", "refuse", MCP),
    Unavailable("GET", "/mcp/bindings", "json", MCP, _const({"items": []})),
    Unavailable("PUT", "/mcp/bindings", "refuse", MCP),
    Unavailable("DELETE", "/mcp/bindings/{client_id}", "refuse", MCP),
    Unavailable("POST", "/llm/generate", "refuse", LLM),
    Unavailable("POST", "/profiles/{profile_id}/compose", "refuse", LLM),
    Unavailable(
        "GET",
        "/profiles/presets/{engine}",
        "json",
        PRESETS,
        lambda params: {"engine": params.get("engine", ""), "voices": []},
    ),
    # server lifecycle and the local model folder
    Unavailable("POST", "/shutdown", "refuse", SHUTDOWN),
    Unavailable(
        "POST",
        "/watchdog/disable",
        "json",
        "no watchdog",
        _const({"message": "this server has no watchdog; it runs until it is stopped"}),
    ),
    Unavailable("POST", "/models/migrate", "refuse", MIGRATE),
    Unavailable("GET", "/models/migrate/progress", "sse", MIGRATE),
)

#: the retry delay (ms) sent on the speak stream, so EventSource does not reconnect every 3 s
SSE_RETRY_MS = 24 * 3600 * 1000


def match(method: str, path: str) -> tuple[Unavailable, dict[str, str]] | None:
    """The not-available route ``method path`` is, with its path parameters (None when it is not one)."""
    for route in UNAVAILABLE:
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
    return None


def render(route: Unavailable, params: dict[str, str]) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of a not-available route: the same on the server and the bridge."""
    if route.kind == "json" and route.body is not None:
        return 200, "application/json", json.dumps(route.body(params)).encode()
    if route.kind == "sse":
        name = route.path.strip("/").replace("/", "-")
        event = _progress_event(name, f"not available on this server: {route.reason}")
        text = f"retry: {SSE_RETRY_MS}\ndata: {json.dumps(event)}\n\n"
        return 200, "text/event-stream", text.encode()
    detail = f"{route.method} {route.path} is not available on this server: {route.reason}"
    return STATUS_NOT_AVAILABLE, "application/json", json.dumps({"detail": detail}).encode()


#: headers of the event-stream answers (as every stream of the API)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _endpoint(route: Unavailable) -> Callable[..., Response]:
    def answer(**params: str) -> Response:
        status, content_type, body = render(route, params)
        if content_type == "application/json":
            return JSONResponse(json.loads(body), status_code=status)
        return Response(body, status_code=status, media_type=content_type, headers=SSE_HEADERS)

    names = re.findall(r"\{(\w+)\}", route.path)
    # FastAPI reads the signature: give the function exactly the path parameters of its route
    signature = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=str) for n in names]
    )
    vars(answer)["__signature__"] = signature  # the function's __dict__: what inspect reads
    return answer


#: the spec of an event-stream answer (its content type is not JSON)
_SSE_RESPONSE: dict[int | str, Any] = {
    200: {
        "description": "one final server-sent event",
        # each event's data is one JSON object (the app's progress fields)
        "content": {"text/event-stream": {"schema": {"type": "object"}}},
    }
}


def build_router() -> APIRouter:
    router = APIRouter(tags=["not available here"])
    for route in UNAVAILABLE:
        status = 200 if route.kind != "refuse" else STATUS_NOT_AVAILABLE
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            status_code=status,
            summary=f"not available here: {route.reason}",
            name=f"unavailable {route.method} {route.path}",
            responses=_SSE_RESPONSE if route.kind == "sse" else None,
        )
    return router


router = build_router()
