"""What the bridge answers on its own, without a RunPod job — so a desktop app left open costs nothing.

Why: every job wakes (or keeps awake) a billed GPU worker, and the Voicebox app polls in the background
(``/health`` every 30 s, ``/tasks/active`` every 5–30 s, ``/models/status`` every 5 s on the Models page,
``/capture/readiness`` every 5 s, ``/backend/*-status`` every 10 s). Forwarding those would keep an endpoint from
ever scaling to zero. So (listed in docs/client.md):

- **Not-available routes** (``backend/api/unavailable.py``) are answered here with the server's own shapes.
- **``/tasks/active``** is the bridge's own view: the generations it is running (it started them), no downloads.
- **Worker state** (``/health``, ``/models/status``) comes from a cache: fetched by a job the first time, then
  answered from the cache; it is fetched again only when it is older than ``ttl`` *and* the bridge has since sent a
  job that changes worker state (a generation, a transcription, a model action). Idle polling never sends a job.
- **Audio** (``/audio/{id}``, ``/samples/{id}``) is cached by id after the first fetch and served with ``Range``
  (206), which the app's audio player uses to seek; deletes and retries evict their entry.
- **Generation** goes through ``/run`` with an id the bridge picks (``X-Generation-Id``), so ``POST /generate``
  answers at once and ``/generate/{id}/status`` follows the job through RunPod's free ``/status`` (IN_QUEUE →
  ``loading_model``, IN_PROGRESS → ``generating``); cancel maps to RunPod's ``/cancel``.

This module needs only the standard library, FastAPI and the client: importing it imports no torch or numpy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse, Response

from backend.api import unavailable
from backend.client.client import Answer, VoiceboxClient
from backend.client.errors import ClientError
from backend.statuses import GenerationStatus, is_final

#: worker-state answers served from the cache (see the module docstring)
WORKER_STATE = frozenset({("GET", "/health"), ("GET", "/models/status")})
#: jobs after which worker state may have changed (models loaded, downloaded, deleted)
_STATE_CHANGING = (
    re.compile(r"POST /generate(/[^/]+/retry)?"),
    re.compile(r"POST /generate/stream"),
    re.compile(r"POST /transcribe"),
    re.compile(r"(POST|DELETE) /models/.*"),
)
_AUDIO = re.compile(r"/audio/(?P<id>[^/]+)")
_SAMPLE = re.compile(r"/samples/(?P<id>[^/]+)")
_RETRY = re.compile(r"/generate/(?P<id>[^/]+)/retry")
_CANCEL = re.compile(r"/generate/(?P<id>[^/]+)/cancel")
_STATUS = re.compile(r"/generate/(?P<id>[^/]+)/status")
_BYTES = re.compile(r"bytes=(\d*)-(\d*)")

#: RunPod job state → the generation status the app knows
JOB_TO_STATUS = {"IN_QUEUE": "loading_model", "IN_PROGRESS": "generating"}
CANCELLED = "Generation cancelled"
#: seconds after which a finished generation is forgotten
FORGET_AFTER = 3600.0


def _now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def range_response(
    content: bytes,
    media_type: str,
    range_header: str | None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``content`` as a 200, or the one byte range asked for as a 206 (416 when it is outside)."""
    base = {**(headers or {}), "Accept-Ranges": "bytes"}
    size = len(content)
    found = _BYTES.fullmatch((range_header or "").strip())
    if not found or (found.group(1) == "" and found.group(2) == ""):
        return Response(content, media_type=media_type, headers=base)  # none, or several ranges
    first, last = found.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), (int(last) if last else size - 1)
    end = min(end, size - 1)
    if start >= size or start > end:
        return Response(status_code=416, headers={**base, "Content-Range": f"bytes */{size}"})
    return Response(
        content[start : end + 1],
        status_code=206,
        media_type=media_type,
        headers={**base, "Content-Range": f"bytes {start}-{end}/{size}"},
    )


class AudioCache:
    """Audio answers by id, least recently used first out, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, ...], tuple[bytes, str]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[str, ...]) -> tuple[bytes, str] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, ...], content: bytes, media_type: str) -> None:
        if len(content) > self.max_bytes:
            return
        self.evict(key)
        self._items[key] = (content, media_type)
        self._bytes += len(content)
        while self._bytes > self.max_bytes:
            _, (old, _) = self._items.popitem(last=False)
            self._bytes -= len(old)

    def evict(self, key: tuple[str, ...]) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= len(item[0])

    def evict_id(self, kind: str, item_id: str) -> None:
        for key in [k for k in self._items if k[:2] == (kind, item_id)]:
            self.evict(key)


@dataclass
class TrackedGeneration:
    """A generation this bridge started as a ``/run`` job."""

    id: str
    job_id: str
    profile_id: str | None
    text: str
    language: str
    started_at: str = field(default_factory=_now_iso)
    job_status: str = "IN_QUEUE"
    job_output: Any = None
    final: dict[str, Any] | None = None  # the last status event once completed / failed
    row: dict[str, Any] | None = None  # the server's answer once the job ended
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    finished_at: float | None = None

    def event(self) -> dict[str, Any]:
        if self.final is not None:
            return self.final
        event: dict[str, Any] = {
            "id": self.id,
            "status": JOB_TO_STATUS.get(self.job_status, "generating"),
            "duration": None,
            "error": None,
            "source": "manual",
            "job_status": self.job_status,
        }
        if isinstance(self.job_output, dict):  # the worker's progress report: chunks so far
            for key in ("chunks_done", "chunks_total"):
                if isinstance(self.job_output.get(key), int):
                    event[key] = self.job_output[key]
        return event

    def provisional_row(self) -> dict[str, Any]:
        """Voicebox's ``GenerationResponse`` before the job has answered."""
        return {
            "id": self.id,
            "profile_id": self.profile_id,
            "text": self.text,
            "language": self.language,
            "audio_path": None,
            "duration": None,
            "seed": None,
            "instruct": None,
            "engine": "qwen",
            "model_size": None,
            "status": self.event()["status"],
            "error": None,
            "is_favorited": False,
            "source": "manual",
            "created_at": self.started_at,
            "versions": None,
            "active_version_id": None,
            "job_id": self.job_id,
        }


class LocalBridge:
    """The bridge's local state: caches, its generations, and the answers that need no job."""

    def __init__(
        self,
        client: VoiceboxClient,
        *,
        ttl: float = 30.0,
        poll_interval: float = 1.0,
        generate_wait: float = 2.0,
        audio_cache_bytes: int = 256 * 2**20,
        clock: Callable[[], float] = time.monotonic,
        render: Callable[[Answer], Response] | None = None,
    ) -> None:
        self.client = client
        self.render = render or _json_render
        self.ttl = ttl
        self.poll_interval = poll_interval
        self.generate_wait = generate_wait
        self.clock = clock
        self.audio = AudioCache(audio_cache_bytes)
        self.generations: dict[str, TrackedGeneration] = {}
        self._state: dict[str, tuple[float, Answer]] = {}
        self._changed_at: float | None = None

    # ------------------------------------------------------------------ answers without a job
    def answer(
        self, method: str, route: str, query: str, headers: Mapping[str, str]
    ) -> Response | None:
        """The local answer to ``method route``, or None when it needs the worker."""
        found = unavailable.match(method, route)
        if found is not None:
            status, content_type, body = unavailable.render(*found)
            extra = unavailable.SSE_HEADERS if content_type == "text/event-stream" else {}
            return Response(body, status_code=status, media_type=content_type, headers=extra)
        if (method, route) == ("GET", "/tasks/active"):
            return JSONResponse(self.active_tasks())
        if (method, route) in WORKER_STATE:
            cached = self._state.get(f"{route}?{query}")
            if cached is not None and not self._needs_refresh(cached[0]):
                response = self.render(cached[1])
                response.headers["X-Voicebox-Bridge-Cache"] = (
                    f"hit; age={self.clock() - cached[0]:.0f}"
                )
                return response
        if method == "GET":
            key = self._audio_key(route, query)
            item = self.audio.get(key) if key else None
            if item is not None:
                return range_response(item[0], item[1], headers.get("range"))
        return None

    def _needs_refresh(self, fetched_at: float) -> bool:
        stale = self.clock() - fetched_at > self.ttl
        return stale and self._changed_at is not None and self._changed_at > fetched_at

    @staticmethod
    def _audio_key(route: str, query: str) -> tuple[str, ...] | None:
        found = _AUDIO.fullmatch(route)
        if found and found.group("id") != "version":
            fmt = re.search(r"(?:^|&)format=([a-z0-9]+)", query)
            return ("audio", found.group("id"), fmt.group(1) if fmt else "wav")
        found = _SAMPLE.fullmatch(route)
        if found:
            return ("sample", found.group("id"))
        return None

    def active_tasks(self) -> dict[str, list[dict[str, Any]]]:
        """Voicebox's ``ActiveTasksResponse`` from what this bridge is running."""
        running = [g for g in self.generations.values() if g.final is None]
        return {
            "downloads": [],
            "generations": [
                {
                    "task_id": g.id,
                    "profile_id": g.profile_id,
                    "text_preview": g.text[:50],
                    "started_at": g.started_at,
                }
                for g in running
            ],
        }

    # ------------------------------------------------------------------ after a forwarded job
    def forwarded(
        self, method: str, route: str, query: str, headers: Mapping[str, str], answer: Answer
    ) -> Response | None:
        """Learn from a forwarded answer (caches, evictions); a Range answer when it is audio."""
        line = f"{method} {route}"
        if any(p.fullmatch(line) for p in _STATE_CHANGING):
            self._changed_at = self.clock()
        if (method, route) in WORKER_STATE and answer.status_code == 200:
            self._state[f"{route}?{query}"] = (self.clock(), answer)
        if method == "DELETE":
            for pattern, kind in (
                (r"/history/([^/]+)", "audio"),
                (r"/profiles/samples/([^/]+)", "sample"),
            ):
                found = re.fullmatch(pattern, route)
                if found:
                    self.audio.evict_id(kind, found.group(1))
        key = self._audio_key(route, query) if method == "GET" else None
        if key and answer.status_code == 200 and answer.content is not None:
            media_type = answer.content_type or "application/octet-stream"
            self.audio.put(key, answer.content, media_type)
            keep = {k: v for k, v in answer.headers.items() if k.lower() == "content-disposition"}
            return range_response(answer.content, media_type, headers.get("range"), keep)
        return None

    # ------------------------------------------------------------------ generation through /run
    def owns(self, generation_id: str) -> bool:
        return generation_id in self.generations

    async def start_generation(
        self,
        route: str,
        raw_path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any],
        headers: dict[str, str],
    ) -> Response:
        """``POST /generate`` or a retry as a ``/run`` job; answers within ``generate_wait`` either way."""
        retry = _RETRY.fullmatch(route)
        if retry:
            gen_id = retry.group("id")
            self.audio.evict_id("audio", gen_id)
            known = self.generations.get(gen_id)
            text = known.text if known else ""
            profile_id, language = (known.profile_id, known.language) if known else (None, "en")
        else:
            gen_id = str(uuid.uuid4())
            headers = {**headers, "X-Generation-Id": gen_id}
            body = body or {}
            text = str(body.get("text") or "")
            profile_id = body.get("profile_id")
            language = str(body.get("language") or "en")
        envelope = self.client.build_envelope(
            "POST", raw_path, body=body, params=params, headers=headers, inline_audio=True
        )
        self._prune()
        job_id = await asyncio.to_thread(self.client.submit, envelope)
        tracked = TrackedGeneration(gen_id, job_id, profile_id, text, language)
        self.generations[gen_id] = tracked
        self._changed_at = self.clock()
        tracked.task = asyncio.create_task(self._follow(tracked))
        try:
            await asyncio.wait_for(tracked.done.wait(), timeout=self.generate_wait)
        except TimeoutError:
            return JSONResponse(tracked.provisional_row())
        if tracked.row is not None:
            status = int(tracked.row.get("_status_code", 200))
            row = {k: v for k, v in tracked.row.items() if k != "_status_code"}
            if status >= 400:
                self.generations.pop(gen_id, None)  # refused: the app never sees this id
            return JSONResponse(row, status_code=status)
        return JSONResponse(tracked.provisional_row())

    async def _follow(self, tracked: TrackedGeneration) -> None:
        """Poll RunPod's ``/status`` (not a job, not billed) until the job ends; keep its answer."""
        delay = self.poll_interval
        failures = 0
        while tracked.final is None:
            try:
                state = await asyncio.to_thread(self.client.status, tracked.job_id)
                failures = 0
            except ClientError as exc:
                failures += 1
                if failures > 5:
                    self._finish(tracked, error=f"RunPod: {exc}")
                    return
                await asyncio.sleep(delay)
                continue
            status = str(state.get("status"))
            tracked.job_status = status
            tracked.job_output = state.get("output") if status == "IN_PROGRESS" else None
            if status == "COMPLETED":
                self._completed(tracked, state.get("output"))
                return
            if status in ("FAILED", "TIMED_OUT", "CANCELLED"):
                message = (
                    CANCELLED
                    if status == "CANCELLED"
                    else f"RunPod job {status}: {state.get('error')}"
                )
                self._finish(tracked, error=message)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max(self.poll_interval, 2.0))

    def _completed(self, tracked: TrackedGeneration, output: Any) -> None:
        try:
            answer = self.client.decode_output(output, job_id=tracked.job_id)
        except ClientError as exc:
            self._finish(tracked, error=str(exc))
            return
        body = answer.body if isinstance(answer.body, dict) else {}
        status = str(body.get("status") or "completed")
        if answer.status_code < 400 and not is_final(status):
            # the server queued it instead of waiting: hand the id over to the history-polling stream
            tracked.row = body
            self.generations.pop(tracked.id, None)
            tracked.done.set()
            return
        if answer.status_code >= 400:
            detail = body.get("detail") if isinstance(body.get("detail"), str) else None
            tracked.row = {**body, "_status_code": answer.status_code}
            self._finish(tracked, error=detail or f"HTTP {answer.status_code}")
            return
        tracked.row = body
        if body.get("id") and body["id"] != tracked.id:  # a server that chose its own id
            self.generations[str(body["id"])] = self.generations.pop(tracked.id, tracked)
            tracked.id = str(body["id"])
        if answer.audio is not None and answer.audio.content is not None:
            media_type = answer.audio.content_type or "audio/wav"
            self.audio.put(("audio", tracked.id, "wav"), answer.audio.content, media_type)
        self._finish(
            tracked,
            status=GenerationStatus.COMPLETED
            if status == GenerationStatus.COMPLETED
            else GenerationStatus.FAILED,
            error=body.get("error") if status != GenerationStatus.COMPLETED else None,
            duration=body.get("duration"),
            source=body.get("source"),
        )

    def _finish(
        self,
        tracked: TrackedGeneration,
        *,
        status: str = "failed",
        error: str | None = None,
        duration: Any = None,
        source: Any = None,
    ) -> None:
        if tracked.final is not None:
            return
        tracked.final = {
            "id": tracked.id,
            "status": status,
            "duration": duration,
            "error": error,
            "source": source or "manual",
            "job_status": tracked.job_status,
        }
        tracked.finished_at = self._changed_at = self.clock()
        tracked.done.set()

    def _prune(self) -> None:
        """Forget generations that ended an hour ago (the app has long read their final event)."""
        limit = self.clock() - FORGET_AFTER
        for gen_id in [
            g.id
            for g in self.generations.values()
            if g.finished_at is not None and g.finished_at < limit
        ]:
            self.generations.pop(gen_id, None)

    async def status_events(self, generation_id: str) -> AsyncIterator[str]:
        """The app's status stream for a generation this bridge runs: an event per change (and a heartbeat)."""
        tracked = self.generations[generation_id]
        last: str | None = None
        quiet = 0.0
        while True:
            event = tracked.event()
            text = json.dumps(event)
            if text != last or quiet >= 5.0:
                yield f"data: {text}\n\n"
                last, quiet = text, 0.0
            if tracked.final is not None:
                return
            try:
                await asyncio.wait_for(tracked.done.wait(), timeout=self.poll_interval)
            except TimeoutError:
                quiet += self.poll_interval

    async def cancel(self, generation_id: str) -> Response:
        """RunPod ``/cancel`` for the job; a job already running also gets the server's cancel (one job)."""
        tracked = self.generations[generation_id]
        if tracked.final is not None:
            return JSONResponse(
                {
                    "detail": f"generation {generation_id} is already {tracked.final['status']}; "
                    "only a generation in progress can be cancelled"
                },
                status_code=409,
            )
        was_running = tracked.job_status == "IN_PROGRESS"
        try:
            await asyncio.to_thread(self.client.cancel, tracked.job_id)
        except ClientError as exc:
            return JSONResponse({"detail": f"RunPod refused the cancel: {exc}"}, status_code=502)
        self._finish(tracked, error=CANCELLED)
        if tracked.task is not None:
            tracked.task.cancel()
        if was_running:  # the worker may still be synthesising: mark its row failed as well
            # a failure here leaves the row to the worker or its fsck: the job itself is cancelled
            with contextlib.suppress(ClientError):
                await asyncio.to_thread(
                    self.client.request, "POST", f"/generate/{generation_id}/cancel", check=False
                )
        return JSONResponse({"message": CANCELLED, "id": generation_id, "status": "failed"})


def _json_render(answer: Answer) -> Response:
    return JSONResponse(answer.body, status_code=answer.status_code)
