"""The RunPod job handler: one job = one HTTP request to the API on loopback.

Why a proxy and not direct service calls: the same routes, validation and error codes serve the desktop app, the
standalone server and RunPod jobs, so a job behaves exactly like the HTTP call it describes. The handler adds only
what RunPod needs: an envelope that can carry uploads, a fixed loopback origin (no job can reach another host --
the request URL is built from the origin chosen at construction and the validated origin-form path, and proxies
from the environment are ignored), a size budget on the answer, and durable ``/generate`` (``wait=true``: the
worker may be stopped the moment a job ends, so a job must not end before its audio is on the volume).

It is ``async`` so the SDK can run ``settings.concurrency`` jobs at once on one event loop, and it re-raises
``asyncio.CancelledError`` -- swallowing it would report a cancelled or timed-out job as COMPLETED.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

import httpx

from backend import job_answer as keys
from backend.api.admin import AdminTable
from backend.config import Settings
from backend.serverless.answers import BodyCollector, OverBudget, serialized_size, useful_headers
from backend.serverless.envelope import Envelope, EnvelopeError, parse_envelope
from backend.serverless.progress import ProgressReporter, generation_id_of, watch_progress

__all__ = ["JobHandler"]

log = logging.getLogger("voicebox.serverless")

_LOOPBACK = "127.0.0.1"
#: the most audio bytes one stream item carries (base64 makes it a third larger): RunPod posts every yield of a
#: generator handler as its own stream result, so each stays far below its payload caps
STREAM_CHUNK_BYTES = 256 * 1024
#: what ends a running job with an error answer (``JobHandler._failure``) rather than a crash of the worker
_JOB_FAILURES = (TimeoutError, OverBudget, EnvelopeError, httpx.HTTPError)


class JobHandler:
    """Callable handed to ``runpod.serverless.start``: validates, proxies and answers one job.

    ``base_url`` defaults to ``http://127.0.0.1:<settings.port>``; tests pass an in-process ASGI ``client``.
    ``admin_routes`` defaults to the API's own admin table (routes declared with ``openapi_extra=ADMIN``, see
    ``backend/api/admin.py``): jobs may call them only when ``VOICEBOX_ALLOW_ADMIN_JOBS=1``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str | None = None,
        client: httpx.AsyncClient | None = None,
        admin_routes: AdminTable | None = None,
        progress: ProgressReporter | None = None,
        progress_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        if admin_routes is None:
            from backend.app import api_admin_table  # the app's routers: only when not given

            admin_routes = api_admin_table()
        self.admin_routes = admin_routes
        #: ``runpod.serverless.progress_update`` on RunPod: generation jobs report their chunks
        self.progress = progress
        self.progress_interval = progress_interval
        self.origin = httpx.URL(base_url or f"http://{_LOOPBACK}:{settings.port}")
        if self.origin.path not in {"", "/"} or self.origin.query or not self.origin.host:
            raise ValueError(
                f"base_url must be a bare origin like http://127.0.0.1:8000, got {base_url}"
            )
        self._client = client
        self._owns_client = client is None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # -- client ---------------------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """The shared client (connection reuse); recreated only if the SDK runs jobs on a new event loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or (self._owns_client and self._client_loop is not loop):
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.job_timeout_seconds, connect=10.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                follow_redirects=False,
                trust_env=False,  # an HTTP(S)_PROXY in the environment must not see loopback traffic
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the client this handler created (an injected client belongs to the caller)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- the job --------------------------------------------------------------------------------------------

    async def __call__(self, job: dict) -> dict:
        """Run one RunPod job; returns an answer dict, or ``{"error": ...}`` for envelope/transport errors."""
        job_id = str(job.get("id") or "job") if isinstance(job, dict) else "job"
        raw = job.get("input") if isinstance(job, dict) else None
        try:
            env = parse_envelope(raw, max_file_bytes=self.settings.max_job_upload_bytes)
        except EnvelopeError as err:
            log.info("job %s refused: %s", job_id, err)
            return {keys.ERROR: str(err)}
        if (env.method, env.path) in self.admin_routes and not self.settings.allow_admin_jobs:
            return {
                keys.ERROR: f"input.path: {env.method} {env.route_path} is an admin route; jobs may call it "
                "only when the endpoint sets VOICEBOX_ALLOW_ADMIN_JOBS=1"
            }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.job_timeout_seconds):
                answer = await self._run(env, job_id, job)
        except asyncio.CancelledError:
            log.info("job %s cancelled", job_id)
            raise
        except (*_JOB_FAILURES, OSError) as err:
            return self._failure(err, "job")
        log.info(
            "job %s %s %s -> %s in %.1f ms",
            job_id,
            env.method,
            env.route_path,
            answer.get(keys.STATUS_CODE),
            (time.perf_counter() - started) * 1000,
        )
        return answer

    def _failure(self, err: Exception, what: Literal["job", "stream"]) -> dict[str, Any]:
        """The error answer for a job (or stream job) that failed while it ran: the one wording of each kind."""
        if isinstance(err, TimeoutError):  # before OSError: TimeoutError is one
            hint = "; keep it below the endpoint's execution timeout" if what == "job" else ""
            return {
                keys.ERROR: f"timeout: the {what} ran past {self.settings.job_timeout_seconds:g} s "
                f"(VOICEBOX_JOB_TIMEOUT_SECONDS){hint}"
            }
        if isinstance(err, httpx.HTTPError):
            return {keys.ERROR: f"transport: {type(err).__name__} talking to the local API: {err}"}
        if isinstance(err, OSError):
            return {keys.ERROR: f"export: could not write the answer to the volume: {err}"}
        return {keys.ERROR: str(err)}  # OverBudget, EnvelopeError: their message names the field

    # -- streaming jobs (the generator handler) ------------------------------------------------------------------

    async def stream(self, job: dict) -> AsyncIterator[dict[str, Any]]:
        """The generator handler RunPod runs with ``return_aggregate_stream``: a stream job yields its audio
        as it is generated; any other job yields its one answer (so ``/runsync`` gets ``[answer]``).

        Stream items: the first carries ``status_code``, ``headers`` and ``content_type``; each carries
        ``seq`` and ``chunk_base64`` (at most ``STREAM_CHUNK_BYTES`` decoded); the last has ``done: true``,
        the total ``size`` and its ``sha256``. A request the API refuses yields its answer once, as a
        non-streamed job would. Cancelling the job (RunPod ``/cancel``) closes the local request, which stops
        the synthesis after the chunk in progress.
        """
        job_id = str(job.get("id") or "job") if isinstance(job, dict) else "job"
        raw = job.get("input") if isinstance(job, dict) else None
        try:
            env = parse_envelope(raw, max_file_bytes=self.settings.max_job_upload_bytes)
        except EnvelopeError as err:
            yield {keys.ERROR: str(err)}
            return
        if not env.is_stream():
            yield await self(job)
            return
        try:
            async with asyncio.timeout(self.settings.job_timeout_seconds):
                async for item in self._stream(env, job_id):
                    yield item
        except asyncio.CancelledError:
            log.info("stream job %s cancelled", job_id)
            raise
        except _JOB_FAILURES as err:
            yield self._failure(err, "stream")

    def build_stream_request(self, env: Envelope, job_id: str) -> httpx.Request:
        """The loopback request of a stream job: ``/generate/stream``, or speech with ``stream_format``."""
        route = env.streamed_route() or env.route_path
        headers = dict(env.headers)
        headers.setdefault("X-Request-ID", job_id[:128])
        body = dict(env.body or {})
        if route == "/v1/audio/speech":
            body["stream_format"] = (
                "audio"  # the job carries bytes; SSE framing would be noise here
            )
        return self._http().build_request(
            "POST",
            self._url(route),
            params=tuple(env.query_items()),
            headers=headers,
            json=body,
        )

    async def _stream(self, env: Envelope, job_id: str) -> AsyncIterator[dict[str, Any]]:
        request = self.build_stream_request(env, job_id)
        response = await self._http().send(request, stream=True)
        try:
            if response.status_code != 200:  # refused before any audio: one ordinary answer
                collector = BodyCollector(
                    self.settings,
                    budget=self.settings.result_budget_bytes,
                    inline_only=True,
                    job_id=job_id,
                    headers=useful_headers(response.headers),
                )
                async for chunk in response.aiter_bytes():
                    await collector.feed(chunk)
                yield await collector.answer(response.status_code)
                return
            digest = hashlib.sha256()
            size = 0
            seq = 0
            head: dict[str, Any] = {
                "status_code": response.status_code,
                "headers": useful_headers(response.headers),
                "content_type": response.headers.get("content-type"),
                "stream": True,
            }
            async for data in response.aiter_raw():
                for start in range(0, len(data), STREAM_CHUNK_BYTES):
                    piece = data[start : start + STREAM_CHUNK_BYTES]
                    digest.update(piece)
                    size += len(piece)
                    item = {**head, "seq": seq, "chunk_base64": base64.b64encode(piece).decode()}
                    head = {}
                    seq += 1
                    yield item
            yield {**head, "seq": seq, "done": True, "size": size, "sha256": digest.hexdigest()}
            log.info("stream job %s sent %d bytes in %d chunks", job_id, size, seq)
        finally:
            await response.aclose()

    def _url(self, path: str) -> httpx.URL:
        url = self.origin.copy_with(raw_path=path.encode("ascii"))
        # Defence in depth: the envelope already guarantees an origin-form path.
        if (url.scheme, url.host, url.port) != (
            self.origin.scheme,
            self.origin.host,
            self.origin.port,
        ):
            raise EnvelopeError("path", "does not stay on the local server")
        return url

    def build_request(self, env: Envelope, job_id: str) -> httpx.Request:
        """The loopback request the envelope describes (exposed for tests and the bench)."""
        params = env.query_items()
        if env.is_generate():
            params = [(k, v) for k, v in params if k != "wait"] + [("wait", "true")]
        headers = dict(env.headers)
        # The job id makes /generate idempotent: a job RunPod retries finds its first generation.
        headers.setdefault("X-Request-ID", job_id[:128])
        kwargs: dict[str, Any] = {}
        if env.files:
            kwargs["files"] = env.file_parts()
            kwargs["data"] = _as_form(env.form_items())
        elif env.form:
            # Fields alone still go as multipart/form-data: the app's form routes (imports by
            # volume_name) parse multipart only, and FastAPI's Form() accepts it as well.
            kwargs["files"] = [(key, (None, value)) for key, value in env.form_items()]
        elif env.body is not None and env.method != "GET":
            kwargs["json"] = env.body
        return self._http().build_request(
            env.method,
            self._url(env.route_path),
            params=tuple(params),
            headers=headers,
            **kwargs,
        )

    async def _run(self, env: Envelope, job_id: str, job: Any = None) -> dict[str, Any]:
        budget = self.settings.result_budget_bytes
        if (
            env.is_stream()
        ):  # run by the plain handler (VOICEBOX_STREAM_JOBS=0): the audio arrives whole
            request = self.build_stream_request(env, job_id)
            return await self._exchange(request, env, job_id, budget)
        generation_id = generation_id_of(env) if self.progress and isinstance(job, dict) else None
        watcher = None
        if generation_id and self.progress:
            watcher = asyncio.create_task(
                watch_progress(
                    self._http(),
                    self._url,
                    generation_id,
                    job,
                    self.progress,
                    self.progress_interval,
                )
            )
        try:
            answer = await self._exchange(self.build_request(env, job_id), env, job_id, budget)
        finally:
            if watcher is not None:
                watcher.cancel()
        if env.is_generate() and env.inline_audio:
            answer = await self._attach_audio(answer, env, job_id, budget)
        return answer

    async def _exchange(
        self, request: httpx.Request, env: Envelope, job_id: str, budget: int
    ) -> dict[str, Any]:
        response = await self._http().send(request, stream=True)
        try:
            collector = BodyCollector(
                self.settings,
                budget=budget,
                inline_only=env.inline_only,
                job_id=job_id,
                headers=useful_headers(response.headers),
            )
            try:
                async for chunk in response.aiter_bytes():
                    await collector.feed(chunk)
                return await collector.answer(response.status_code)
            except BaseException:
                await collector.abort()
                raise
        finally:
            await response.aclose()

    async def _attach_audio(
        self, answer: dict[str, Any], env: Envelope, job_id: str, budget: int
    ) -> dict[str, Any]:
        """``inline_audio``: fetch the generation's audio in the same job, within what is left of the budget."""
        body = answer.get(keys.BODY)
        status = answer.get(keys.STATUS_CODE, 0)
        if not (200 <= status < 300 and isinstance(body, dict) and body.get("id")):
            return answer  # the generation failed or was spilled: nothing to attach
        params = [("format", env.audio_format)] if env.audio_format else []
        request = self._http().build_request(
            "GET",
            self._url(f"/audio/{quote(str(body['id']), safe='')}"),
            params=tuple(params),
            headers={"X-Request-ID": job_id},
        )
        left = budget - serialized_size(answer) - 256
        audio = await self._exchange(request, env, job_id, max(left, 0))
        audio.pop(keys.HEADERS, None)
        answer[keys.AUDIO] = audio
        return answer


def _as_form(items: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    form: dict[str, str | list[str]] = {}
    for key, value in items:
        if key in form:
            current = form[key]
            form[key] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            form[key] = value
    return form
