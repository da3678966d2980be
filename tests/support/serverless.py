"""Fixtures for the serverless tests: a small app, a canary server, a mock RunPod job server, worker processes.

Why a stand-in app: the handler, the answers and the SDK's loops are exercised against an app whose every answer
is known (JSON, text, multipart echo, WAV bytes, a big binary for the budget, slow and crashing routes), so these
tests say something precise about the serverless layer on its own. The real app is driven by the same subprocess
tests when ``backend.app`` is importable.

Run as a module (``python -m tests.support.serverless``) it is a worker: the real launcher and the real RunPod SDK
around the stand-in app (``STUB_READY_DELAY`` delays startup, for the readiness timeout test).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

# Module level on purpose: FastAPI resolves the routes' string annotations in this module's globals.
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from tests.support import settings as test_settings
from tests.support.audio import wav_bytes

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


# -- the stand-in app ----------------------------------------------------------------------------------------


def big_bytes(size: int) -> bytes:
    """Deterministic incompressible-ish bytes so sha256 checks mean something."""
    block = hashlib.sha256(b"voicebox").digest() * 2048  # 64 KiB
    reps = size // len(block) + 1
    return (block * reps)[:size]


def make_test_app() -> Any:
    """The stand-in FastAPI app. ``app.state.hits`` records every request it served."""
    app = FastAPI()
    app.state.hits = []
    app.state.on_crash = None

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        app.state.hits.append((request.method, request.url.path))
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "healthy", "stub": True}

    @app.api_route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(request: Request) -> dict:
        raw = await request.body()
        return {
            "method": request.method,
            "path": request.url.path,
            "query": list(request.query_params.multi_items()),
            "headers": dict(request.headers),
            "json": json.loads(raw) if raw else None,
        }

    @app.post("/upload")
    async def upload(request: Request) -> dict:
        form = await request.form()
        files, fields = [], []
        for key, value in form.multi_items():
            if hasattr(value, "filename"):
                data = await value.read()
                files.append(
                    {
                        "field": key,
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
            else:
                fields.append([key, value])
        return {"files": files, "fields": fields}

    @app.post("/form")
    async def form(request: Request) -> dict:
        data = await request.form()
        return {
            "fields": [[k, v] for k, v in data.multi_items()],
            "content_type": request.headers.get("content-type", ""),
        }

    @app.post("/generate")
    async def generate(request: Request) -> JSONResponse:
        body = await request.json()
        if not body.get("text"):
            raise HTTPException(422, "text is required")
        gid = body.get("id", "gen-1")
        return JSONResponse(
            {"id": gid, "status": "completed", "wait": request.query_params.get("wait")}
        )

    @app.get("/audio/{gid}")
    async def audio(gid: str, format: str = "wav", seconds: float = 0.1) -> Response:
        if gid == "missing":
            raise HTTPException(404, "no such generation")
        if gid == "long":
            seconds = 30.0
        media = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}.get(format)
        if media is None:
            raise HTTPException(400, f"unknown format {format}")
        return Response(wav_bytes(seconds), media_type=media)

    @app.get("/big")
    async def big(size: int = 1024) -> Response:
        return Response(
            big_bytes(size),
            media_type="application/octet-stream",
            headers={"content-disposition": 'attachment; filename="big.bin"', "x-size": str(size)},
        )

    @app.get("/bigjson")
    async def bigjson(n: int = 10) -> list:
        return [{"i": i, "text": "é" * 50} for i in range(n)]

    @app.get("/zip")
    async def zipped() -> Response:
        return Response(b"PK\x05\x06" + b"\0" * 18, media_type="application/zip")

    @app.get("/text")
    async def text() -> PlainTextResponse:
        return PlainTextResponse("plain words", headers={"server": "stub", "retry-after": "3"})

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        raise HTTPException(code, f"status {code} on purpose")

    @app.get("/slow")
    async def slow(seconds: float = 1.0) -> dict:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.get("/redirect")
    async def redirect() -> Response:
        return Response(status_code=307, headers={"location": "http://example.invalid/x"})

    @app.post("/shutdown")
    async def shutdown() -> dict:
        return {"message": "would shut down"}

    @app.delete("/models/{name}")
    async def delete_model(name: str) -> dict:
        return {"deleted": name}

    @app.post("/db/restore")
    async def restore() -> dict:
        return {"restored": True}

    @app.post("/__crash")
    async def crash() -> dict:
        if app.state.on_crash is not None:
            app.state.on_crash()
        return {"crashing": True}

    return app


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    """Settings on a temp volume (``tmp_path/volume``), serverless, with overrides."""
    from backend.config import load_settings

    env = test_settings.worker_env(tmp_path / "volume", tmp_path / "local")
    return load_settings(env).with_overrides(serverless=True, **overrides)


# -- a canary HTTP server: proof that nothing reached another host/port ---------------------------------------


class Canary:
    """An HTTP server on another loopback port that records every request it receives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "15")
                self.end_headers()
                self.wfile.write(b'{"canary":true}')

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Canary:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a worker dropping its long-poll connection at shutdown is expected


# -- a mock RunPod job server (job-take / job-stop / job-done) ------------------------------------------------


@dataclass
class MockJobServer:
    """What RunPod's queue looks like to the SDK: long-poll job-take, job-stop, job-done (form-encoded JSON)."""

    jobs: queue.Queue = field(default_factory=queue.Queue)
    results: dict[str, dict] = field(default_factory=dict)
    takes: list[str] = field(default_factory=list)
    done_event: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
                self.send_response(code)
                if body:
                    self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith(("/job-take/", "/job-take-batch/")):
                    owner.takes.append(self.path)
                    batch = self.path.startswith("/job-take-batch/")
                    size = 1
                    if batch:
                        query = dict(parse_qsl(self.path.partition("?")[2]))
                        size = max(1, int(query.get("batch_size", "1")))
                    try:
                        jobs = [owner.jobs.get(timeout=0.5)]  # a short long-poll
                    except queue.Empty:
                        self._send(204)
                        return
                    while len(jobs) < size:
                        try:
                            jobs.append(owner.jobs.get_nowait())
                        except queue.Empty:
                            break
                    self._send(200, json.dumps(jobs if batch else jobs[0]).encode())
                elif self.path.startswith("/job-stop/"):
                    time.sleep(0.5)
                    self._send(204)
                elif self.path.startswith("/ping/"):
                    self._send(200, b"{}")
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.startswith("/job-done/"):
                    job_id = self.path.split("/")[3].split("?")[0]
                    with owner.done_event:
                        owner.results[job_id] = json.loads(raw.decode("utf-8"))
                        owner.done_event.notify_all()
                    self._send(200, b"{}")
                else:
                    self._send(404, b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self, worker_id: str = "w1") -> dict[str, str]:
        base = f"http://127.0.0.1:{self.port}"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?x=1",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?x=1",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }

    def submit(self, job_id: str, job_input: Any) -> None:
        self.jobs.put({"id": job_id, "input": job_input})

    def wait_results(self, ids: list[str], timeout: float) -> dict[str, dict]:
        with self.done_event:
            self.done_event.wait_for(lambda: all(i in self.results for i in ids), timeout=timeout)
            return {i: self.results[i] for i in ids if i in self.results}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- worker processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def real_app_available() -> tuple[bool, str]:
    """Whether ``backend.app`` (and the fake engine) can be imported, with the reason when not."""
    import importlib.util

    for name in ("backend.app", "backend.engines.manager", "volume_bootstrap"):
        try:
            if importlib.util.find_spec(name) is None:
                return False, f"{name} is not written yet"
        except ImportError as err:
            return False, f"{name} cannot be imported: {err}"
    probe = subprocess.run(
        [PYTHON, "-c", "import backend.app, backend.engines.manager, volume_bootstrap"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"backend.app is not importable yet: {tail}"
    return True, ""


def worker_env(volume: Path, *, port: int | None = None, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess on ``volume`` (created) with the fake engines."""
    volume.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNPOD_", "VOICEBOX_")) and k not in {"SERVERLESS"}
    }
    env.update(
        test_settings.worker_env(
            volume,
            volume.parent / f"local-{volume.name}",
            SERVERLESS="1",
            VOICEBOX_DEVICE="cpu",
            VOICEBOX_PORT=str(port or free_port()),
            VOICEBOX_READY_TIMEOUT_SECONDS="60",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(REPO),
        )
    )
    env.update(extra)
    return env


STUB = [PYTHON, "-m", "tests.support.serverless"]
REAL = [PYTHON, "-m", "backend.serverless_handler"]


@dataclass
class Worker:
    """A worker subprocess whose output goes to a file (never an undrained pipe)."""

    proc: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> Worker:
    handle = open(log_path, "wb")  # noqa: SIM115 - owned by the child; closed when the test ends
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return Worker(proc, log_path)


@contextlib.contextmanager
def serve_api(
    cmd: list[str], env: dict[str, str], log_path: Path, timeout: float = 90
) -> Iterator[str]:
    """Start ``cmd --rp_serve_api`` and yield the RunPod local API base URL once it answers."""
    import httpx

    port = free_port()
    worker = spawn([*cmd, "--rp_serve_api", "--rp_api_port", str(port)], env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited {worker.proc.returncode}:\n{worker.output()}")
            try:
                if httpx.get(f"{base}/docs", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"local API not up in {timeout} s:\n{worker.output()}")
            time.sleep(0.2)
        yield base
    finally:
        worker.stop()


def runsync(base: str, job_input: Any, timeout: float = 60) -> dict:
    import httpx

    reply = httpx.post(f"{base}/runsync", json={"input": job_input}, timeout=timeout)
    reply.raise_for_status()
    return reply.json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- the stub worker ---------------------------------------------------------------------------------------


@dataclass
class _StubReport:
    phases: dict[str, float]

    def as_json(self) -> str:
        return json.dumps({"phases": self.phases})


def _stub_hooks() -> Any:
    from backend.serverless.launcher import LaunchHooks

    delay = float(os.environ.get("STUB_READY_DELAY", "0") or 0)

    def make_app(settings: Any, engines: Any) -> Any:
        from contextlib import asynccontextmanager

        app = make_test_app()
        if delay:

            @asynccontextmanager
            async def lifespan(_app: Any) -> Any:
                await asyncio.sleep(delay)
                yield

            app.router.lifespan_context = lifespan
        return app

    def bootstrap(settings: Any) -> _StubReport:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return _StubReport({"layout": 0.0})

    return LaunchHooks(bootstrap=bootstrap, load_engines=lambda s: None, make_app=make_app)


def _stub_main() -> None:
    """The real launcher and SDK around the stand-in app; ``/__crash`` stops the API server."""
    from backend.serverless import launcher

    hooks = _stub_hooks()
    made: dict[str, Any] = {}
    original = hooks.make_app

    def make_app(settings: Any, engines: Any) -> Any:
        made["app"] = original(settings, engines)
        return made["app"]

    hooks.make_app = make_app
    real_server_thread = launcher.ServerThread

    class CrashableServer(real_server_thread):  # type: ignore[misc, valid-type]
        def __init__(self, app: Any, **kwargs: Any) -> None:
            super().__init__(app, **kwargs)
            app.state.on_crash = lambda: setattr(self.server, "should_exit", True)

    launcher.ServerThread = CrashableServer  # type: ignore[misc]
    launcher.main(hooks=hooks)


if __name__ == "__main__":
    _stub_main()
