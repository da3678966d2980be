"""A mock of RunPod's serverless REST API on loopback, running jobs through a handler in-process.

Why a real socket: the client is built on the runpod SDK, which talks ``requests`` to a URL; a
loopback server exercises exactly that path (auth header, JSON, HTTP errors) while the jobs
themselves run in-process through the handler under test, so a test sees the whole round trip.

Modelled behaviour (docs.runpod.io, the endpoint operations reference):
- ``POST /v2/{endpoint}/run`` → ``{"id", "status": "IN_QUEUE"}``; the job waits ``queue_delay`` in
  IN_QUEUE, then runs IN_PROGRESS.
- ``POST /v2/{endpoint}/runsync?wait=ms`` waits at most ``min(wait, runsync_wait_cap)`` and answers
  the final state, or a **non-final** ``{"id", "status"}`` the caller must poll.
- ``GET /v2/{endpoint}/status/{id}``: IN_QUEUE / IN_PROGRESS (with ``output`` from ``progress()``),
  COMPLETED, FAILED (a handler that raises gives the SDK's **JSON-string** error; a returned
  ``{"error"}`` gives that string), TIMED_OUT (past ``execution_timeout``), CANCELLED; **404** once
  a result has expired (``retention`` seconds after it finished, or ``expire(job_id)``).
- ``POST /v2/{endpoint}/cancel/{id}``.
- Progress: ``start_stack`` wires the handler's ``progress`` to ``RunPodMock.progress`` (what
  ``runpod.serverless.progress_update`` does), so ``/status`` carries a generation's chunks while it runs.
- ``GET /v2/{endpoint}/stream/{id}`` for a generator handler (``handler.stream``, as the worker registers
  it): ``{"status", "stream": [{"output": item}, ...]}`` with the items yielded since the last call, waiting
  up to ``stream_wait`` seconds for one; with ``return_aggregate_stream`` the final ``output`` is the list
  of every item (``[answer]`` for an ordinary job), as the SDK does.
- Auth: ``Authorization: Bearer <api_key>`` or 401. Payload caps: 10 MB for ``/run``, 20 MB for
  ``/runsync`` (400 past them). A result over ``result_limit`` is dropped and the job reads
  COMPLETED with no output, as the SDK does when its upload fails.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
FINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


@dataclass
class MockJob:
    id: str
    input: Any
    status: str = "IN_QUEUE"
    output: Any = None
    error: Any = None
    progress: Any = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    task: asyncio.Task[Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stream: list[Any] = field(default_factory=list)
    streamed: int = 0  # items already handed out by /stream
    stream_event: asyncio.Event = field(default_factory=asyncio.Event)

    def state(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started is not None:
            answer["delayTime"] = int((self.started - self.submitted) * 1000)
        if self.finished is not None and self.started is not None:
            answer["executionTime"] = int((self.finished - self.started) * 1000)
            answer["workerId"] = "mock-worker"
        if self.status == "IN_PROGRESS" and self.progress is not None:
            answer["output"] = self.progress
        if self.status in FINAL:
            if self.output is not None:
                answer["output"] = self.output
            if self.error is not None:
                answer["error"] = self.error
        return answer


class RunPodMock:
    """Serve the mock on ``127.0.0.1:<free port>``; use as a context manager or
    ``start()``/``stop()``.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        endpoint_id: str = "ep-test",
        api_key: str = "test-key",
        queue_delay: float = 0.0,
        runsync_wait_cap: float = 30.0,
        execution_timeout: float | None = None,
        retention: float | None = None,
        result_limit: int = 20_000_000,
        run_limit: int = 10_000_000,
        runsync_limit: int = 20_000_000,
        stream_wait: float = 1.0,
    ) -> None:
        self.handler = handler
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.queue_delay = queue_delay
        self.runsync_wait_cap = runsync_wait_cap
        self.execution_timeout = execution_timeout
        self.retention = retention
        self.result_limit = result_limit
        self.run_limit = run_limit
        self.runsync_limit = runsync_limit
        self.stream_wait = stream_wait
        self.jobs: dict[str, MockJob] = {}
        self.status_failures = 0  # answer this many /status calls with 503
        self.calls: list[tuple[str, str]] = []  # (route kind, job id or "") in arrival order
        self.inputs: list[Any] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_base(self) -> str:
        """What ``RUNPOD_API_BASE`` should be for a client of this mock."""
        return f"{self.url}/v2"

    def start(self) -> RunPodMock:
        app = Starlette(
            routes=[
                Route("/v2/{endpoint}/run", self._run, methods=["POST"]),
                Route("/v2/{endpoint}/runsync", self._runsync, methods=["POST"]),
                Route("/v2/{endpoint}/status/{job_id}", self._status, methods=["GET"]),
                Route("/v2/{endpoint}/cancel/{job_id}", self._cancel, methods=["POST"]),
                Route("/v2/{endpoint}/stream/{job_id}", self._stream, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name="runpod-mock", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the RunPod mock did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> RunPodMock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def expire(self, job_id: str) -> None:
        """Forget a job as RunPod does after retention or TTL (``/status`` → 404)."""
        self.jobs.pop(job_id, None)

    def progress(self, job_id: str, output: Any) -> None:
        """What ``runpod.serverless.progress_update`` does: attach an output to an IN_PROGRESS
        job.
        """
        job = self.jobs.get(job_id)
        if job is not None:
            job.progress = output

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    # ------------------------------------------------------------------ routes

    def _check(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if request.path_params["endpoint"] != self.endpoint_id:
            return JSONResponse({"error": "endpoint not found"}, status_code=404)
        return None

    async def _submit(self, request: Request, limit: int) -> MockJob | JSONResponse:
        raw = await request.body()
        if len(raw) > limit:
            return JSONResponse(
                {"error": f"payload of {len(raw)} bytes exceeds the {limit} byte limit"},
                status_code=400,
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "invalid JSON"}, status_code=400)
        if not isinstance(payload, dict) or not isinstance(payload.get("input"), dict):
            return JSONResponse({"error": "input must be a JSON object"}, status_code=400)
        self.inputs.append(payload["input"])
        job = MockJob(id=f"{uuid.uuid4()}-u1", input=payload["input"])
        self.jobs[job.id] = job
        job.task = asyncio.create_task(self._execute(job))
        return job

    async def _run(self, request: Request) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        job = await self._submit(request, self.run_limit)
        if isinstance(job, JSONResponse):
            return job
        self.calls.append(("run", job.id))
        return JSONResponse({"id": job.id, "status": "IN_QUEUE"})

    async def _runsync(self, request: Request) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        job = await self._submit(request, self.runsync_limit)
        if isinstance(job, JSONResponse):
            return job
        self.calls.append(("runsync", job.id))
        wait = float(request.query_params.get("wait", "90000")) / 1000
        try:
            await asyncio.wait_for(job.done.wait(), timeout=min(wait, self.runsync_wait_cap))
        except TimeoutError:
            return JSONResponse({"id": job.id, "status": job.status})
        return JSONResponse(job.state())

    async def _status(self, request: Request) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        job_id = request.path_params["job_id"]
        self.calls.append(("status", job_id))
        if self.status_failures > 0:  # a transient failure of RunPod's API
            self.status_failures -= 1
            return JSONResponse({"error": "service unavailable"}, status_code=503)
        job = self.jobs.get(job_id)
        if (
            job is not None
            and self.retention is not None
            and job.finished is not None
            and time.monotonic() - job.finished > self.retention
        ):
            self.expire(job_id)
            job = None
        if job is None:
            return JSONResponse({"error": "request does not exist"}, status_code=404)
        return JSONResponse(job.state())

    async def _stream(self, request: Request) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        job_id = request.path_params["job_id"]
        self.calls.append(("stream", job_id))
        job = self.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "request does not exist"}, status_code=404)
        if job.streamed >= len(job.stream) and job.status not in FINAL:
            job.stream_event.clear()
            waiters = [
                asyncio.ensure_future(job.stream_event.wait()),
                asyncio.ensure_future(job.done.wait()),
            ]
            await asyncio.wait(
                waiters, timeout=self.stream_wait, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()
        items = job.stream[job.streamed :]
        job.streamed += len(items)
        answer: dict[str, Any] = {"id": job.id, "status": job.status, "stream": items}
        if job.status == "FAILED" and job.error is not None:
            answer["error"] = job.error
        return JSONResponse(answer)

    async def _cancel(self, request: Request) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        job_id = request.path_params["job_id"]
        self.calls.append(("cancel", job_id))
        job = self.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "request does not exist"}, status_code=404)
        if job.status not in FINAL and job.task is not None:
            job.task.cancel()
            job.status = "CANCELLED"
            job.finished = time.monotonic()
            job.done.set()
        return JSONResponse({"id": job.id, "status": job.status})

    # ------------------------------------------------------------------ execution

    async def _execute(self, job: MockJob) -> None:
        try:
            await asyncio.sleep(self.queue_delay)
            job.status = "IN_PROGRESS"
            job.started = time.monotonic()
            call = self.handler({"id": job.id, "input": job.input})
            if inspect.isasyncgen(call):
                await self._execute_generator(job, call)
                return
            try:
                if self.execution_timeout is not None:
                    result = await asyncio.wait_for(call, timeout=self.execution_timeout)
                else:
                    result = await call
            except TimeoutError:
                job.status = "TIMED_OUT"
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # what runpod's run_job does with a raised exception
                job.status = "FAILED"
                job.error = json.dumps(
                    {
                        "error_type": str(type(exc)),
                        "error_message": str(exc),
                        "error_traceback": traceback.format_exc(),
                        "hostname": "mock-host",
                        "worker_id": "mock-worker",
                        "runpod_version": "1.12.0",
                    }
                )
                return
            if isinstance(result, dict) and "error" in result:
                rest = dict(result)
                job.error = rest.pop("error")
                job.output = rest or None
                job.status = "FAILED"
                return
            size = len(json.dumps({"output": result}, ensure_ascii=False).encode())
            job.output = None if size > self.result_limit else result
            job.status = "COMPLETED"
        except asyncio.CancelledError:
            job.status = "CANCELLED"
        finally:
            job.finished = job.finished or time.monotonic()
            job.done.set()

    async def _execute_generator(self, job: MockJob, items: Any) -> None:
        """What the SDK does with a generator handler and ``return_aggregate_stream``: each item is a stream
        result at once; an item with ``error`` fails the job; the output is the list of items."""
        aggregate: list[Any] = []
        try:
            async for item in items:
                if isinstance(item, dict) and item.get("error"):
                    job.error = str(item["error"])
                    job.status = "FAILED"
                    return
                aggregate.append(item)
                job.stream.append({"output": item})
                job.stream_event.set()
        except asyncio.CancelledError:
            await items.aclose()
            raise
        except Exception as exc:  # the SDK's run_job_generator: the error string, the job FAILED
            job.error = f"handler: {exc} \ntraceback: {traceback.format_exc()}"
            job.status = "FAILED"
            return
        size = len(json.dumps({"output": aggregate}, ensure_ascii=False).encode())
        job.output = None if size > self.result_limit else aggregate
        job.status = "COMPLETED"


# --------------------------------------------------------------------------------------------------
# Test harness: mock RunPod → job handler → a Voicebox app, all in-process.


@dataclass
class Stack:
    mock: RunPodMock
    app: Any
    settings: Any
    real_handler: bool

    def client(self, **kwargs: Any) -> Any:
        from backend.client.client import VoiceboxClient

        options: dict[str, Any] = {
            "poll_initial": 0.02,
            "poll_max": 0.1,
            "timeout": 20.0,
            "env": {},
            "env_file": "/nonexistent/.env",
        }
        options.update(kwargs)
        options.setdefault("api_key", self.mock.api_key)
        return VoiceboxClient(self.mock.endpoint_id, api_base=self.mock.api_base, **options)


def build_handler(settings: Any, app: Any) -> tuple[Handler, bool]:
    """The real ``JobHandler``, talking to ``app`` in-process over ``httpx.ASGITransport``."""
    import httpx

    from backend.api.admin import admin_table
    from backend.serverless.handler import JobHandler

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=30.0
    )
    # the admin table of the app under test (the real API's, or none for a stub app): reading it from the app
    # keeps the torch-free client venv (scripts/check-client-venv.sh) from importing the whole server
    admin = admin_table(getattr(app, "routes", ()))
    handler = JobHandler(settings, base_url="http://127.0.0.1", client=client, admin_routes=admin)
    return handler, True


def make_settings(tmp: Any, **env: str) -> Any:
    from tests.support.settings import worker_settings

    settings = worker_settings(
        tmp / "volume", tmp / "local", **{"VOICEBOX_WORKER_ID": "test-worker", **env}
    )
    for folder in (settings.exports_dir, settings.imports_dir, settings.tmp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return settings


def start_stack(
    tmp: Any,
    *,
    settings_env: dict[str, str] | None = None,
    app: Any = None,
    settings: Any = None,
    **mock_kwargs: Any,
) -> Stack:
    """Start mock + handler + a Voicebox app; the caller stops ``stack.mock``.

    By default the app is the stub (tests/support/voicebox_stub.py) on settings made under ``tmp``;
    pass ``app`` and its ``settings`` to run jobs through any ASGI app instead (e.g. the real
    ``backend.app.create_app`` on a bootstrapped volume).
    """
    if app is None:
        from tests.support.voicebox_stub import create_stub_app

        settings = settings or make_settings(tmp, **(settings_env or {}))
        app = create_stub_app(settings.volume)
    elif settings is None:
        raise ValueError("start_stack(app=...) needs the app's settings")
    handler, real = build_handler(settings, app)
    mock = RunPodMock(handler, **mock_kwargs).start()
    # what runpod.serverless.progress_update does on RunPod: the job's output while IN_PROGRESS
    handler.progress = lambda job, output: mock.progress(job["id"], output)  # type: ignore[attr-defined]
    handler.progress_interval = 0.05  # type: ignore[attr-defined]
    return Stack(mock=mock, app=app, settings=settings, real_handler=real)
