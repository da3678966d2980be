"""Cold start of a RunPod worker: volume → engines → API on loopback → only then take jobs.

Why this order, in one process:
- RunPod bills from container start. A worker that takes jobs before its server is ready bills the caller for
  waiting (the Kokoro worker's flaw); one that can never get ready must *exit non-zero* so RunPod replaces it,
  rather than fail every job forever (worker-vllm#29, a1111#26). So each phase is bounded and a failure ends the
  process with one line that says which phase failed and why.
- uvicorn runs in a thread of this process (no second interpreter to load the model into, no pipe to drain) on
  ``127.0.0.1`` only. Readiness is an event the server sets when it has bound its socket and finished the app's
  startup -- no polling of ``/health`` at a fixed interval. A watchdog thread exits the worker if the server stops
  later.
- ``runpod.serverless.start`` is called only from ``main()``: the SDK reads its environment and parses
  ``sys.argv`` when started, so importing this module (tests, the bench) must never start a worker.

The cold-start phases are printed as one JSON line so a RunPod log search finds them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.engines.base import Engines

__all__ = [
    "LaunchHooks",
    "ServerThread",
    "concurrency_modifier",
    "default_hooks",
    "main",
    "sdk_config",
]

log = logging.getLogger("voicebox.serverless")
LOOPBACK = "127.0.0.1"


def _line(message: str) -> None:
    print(f"voicebox-worker: {message}", file=sys.stderr, flush=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    _line(message)
    raise SystemExit(code)


class ServerThread:
    """uvicorn serving ``app`` on loopback in a daemon thread, with readiness and exit as events.

    The socket is bound here, in the caller's thread, so "port in use" is an immediate, clear error and port 0
    (an ephemeral port, for tests) works.
    """

    def __init__(
        self, app: Any, *, host: str = LOOPBACK, port: int = 0, log_level: str = "warning"
    ) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            # Listening now: a second server on this port fails here, with a clear error.
            self._sock.listen(2048)
        except OSError:
            self._sock.close()
            raise
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._cond = threading.Condition()
        self.ready = False
        self.exited = False
        self.error: BaseException | None = None
        self.stopping = False
        config = uvicorn.Config(
            app,
            log_level=log_level.lower(),
            log_config=None,  # keep the process's logging setup; uvicorn's loggers propagate to it
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        owner = self

        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if self.started:
                    owner._set(ready=True)

        self.server = _Server(config)
        self.thread = threading.Thread(target=self._run, name="voicebox-api", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _set(self, **flags: Any) -> None:
        with self._cond:
            for key, value in flags.items():
                setattr(self, key, value)
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as err:  # uvicorn signals startup failure with SystemExit
            self.error = err
        finally:
            self._sock.close()
            self._set(exited=True)

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Block until the server is ready (True), or it exited or ``timeout`` passed (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self.ready or self.exited, timeout=timeout)
            return self.ready and not self.exited

    def wait_exited(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.exited, timeout=timeout)

    def describe_exit(self) -> str:
        err = self.error
        if err is None:
            return "it stopped"
        if isinstance(err, SystemExit):
            return f"it exited during startup (uvicorn code {err.code}; see the log above)"
        return f"it crashed: {type(err).__name__}: {err}"

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (in-flight requests get ``timeout_graceful_shutdown``); the watchdog stays quiet."""
        self.stopping = True
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)


def start_watchdog(server: ServerThread, *, exit_code: int = 1) -> threading.Thread:
    """Exit the whole worker if the API server stops while the worker still takes jobs."""

    def watch() -> None:
        server.wait_exited()
        if server.stopping:
            return
        _line(f"the API server on {server.base_url} stopped ({server.describe_exit()}); exiting")
        os._exit(exit_code)  # the SDK's loop owns the main thread; only a hard exit ends the worker

    thread = threading.Thread(target=watch, name="voicebox-watchdog", daemon=True)
    thread.start()
    return thread


def concurrency_modifier(settings: Any) -> Callable[[int], int]:
    """The SDK calls this every loop turn; the answer is the setting (the GPU lock serializes inference),
    never more than the generation queue accepts (``VOICEBOX_MAX_QUEUED``), so a RunPod job is never
    answered 429 by its own worker."""
    wanted = max(1, min(int(settings.concurrency), int(settings.max_queued)))

    def modifier(_current: int) -> int:
        return wanted

    return modifier


@dataclass
class LaunchHooks:
    """The three heavy steps, injectable so tests can launch the real loop around a small app."""

    bootstrap: Callable[[Settings], Any]
    load_engines: Callable[[Settings], Engines | None]
    make_app: Callable[[Settings, Engines | None], Any]


def _bootstrap(settings: Settings) -> Any:
    import importlib

    # The module, not the package attribute: the package may or may not re-export the function.
    return importlib.import_module("volume_bootstrap.bootstrap").bootstrap(settings)


def _load_engines(settings: Settings) -> Engines:
    from backend.engines.manager import EngineManager

    manager = EngineManager(settings)
    manager.load_all()
    return manager


def _make_app(settings: Settings, engines: Engines | None) -> Any:
    from backend.app import create_app
    from backend.services.container import Services

    # The engines loaded in the previous phase go to the app, so nothing loads twice. The launcher owns these
    # services (the app closes only services it made) and closes them after the server stops.
    return create_app(settings, services=Services.create(settings, engines=engines))


def _close_services(app: Any) -> None:
    services = getattr(getattr(app, "state", None), "services", None)
    close = getattr(services, "close", None)
    if callable(close):
        try:
            close()
        except Exception as err:  # shutting down anyway; say what went wrong
            _line(f"closing services failed: {type(err).__name__}: {err}")


def default_hooks() -> LaunchHooks:
    return LaunchHooks(bootstrap=_bootstrap, load_engines=_load_engines, make_app=_make_app)


def _timed(phases: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return step()
    except SystemExit:
        raise
    except BaseException as err:
        _fail(f"cold start failed in phase '{name}': {type(err).__name__}: {err}")
    finally:
        phases[name] = round(time.perf_counter() - started, 3)


def sdk_config(
    handler: Any,
    settings: Any,
    *,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What ``runpod.serverless.start`` gets.

    With ``VOICEBOX_STREAM_JOBS`` on (the default) the handler is the generator ``handler.stream``, so stream
    jobs reach ``/stream/{job_id}`` chunk by chunk; ``return_aggregate_stream`` makes ``/runsync`` and
    ``/status`` answer the list of everything yielded — ``[answer]`` for an ordinary job. Off, or when the
    SDK runs one local test job (``--test_input`` / ``test_input.json``: its one-shot runner cannot drive a
    generator), the handler is the plain coroutine and every output is the answer itself (stream jobs then
    arrive whole).
    """
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ) if env is None else env
    config: dict[str, Any] = {"concurrency_modifier": concurrency_modifier(settings)}
    if settings.stream_jobs and not _sdk_runs_one_local_job(argv, env):
        config.update(handler=handler.stream, return_aggregate_stream=True)
    else:
        config["handler"] = handler
    return config


def _sdk_runs_one_local_job(argv: list[str], env: dict[str, str]) -> bool:
    """The SDK's choice (``runpod.serverless.start``): its API server modes drive generators; otherwise,
    with ``--test_input`` or outside RunPod (no ``RUNPOD_WEBHOOK_GET_JOB``), it runs one job and exits."""
    if "--rp_serve_api" in argv or env.get("RUNPOD_REALTIME_PORT"):
        return False
    return any(a.startswith("--test_input") for a in argv) or not env.get("RUNPOD_WEBHOOK_GET_JOB")


def main(argv: list[str] | None = None, *, hooks: LaunchHooks | None = None) -> None:
    """Entry of ``python -m backend.serverless_handler``: cold start, then the RunPod SDK's loop.

    ``argv`` (default ``sys.argv[1:]``) is left for the SDK to parse (``--rp_serve_api``, ``--test_input``...).
    """
    started = time.perf_counter()
    from backend.serverless.fast_start import gc_paused, prefetch_cpu_info

    prefetch_cpu_info()  # the SDK's import waits on this probe; it runs while the engines load
    with gc_paused():
        server, app, settings = _cold_start(argv, hooks, started)

    import runpod

    from backend.serverless.handler import JobHandler

    handler = JobHandler(
        settings, base_url=server.base_url, progress=runpod.serverless.progress_update
    )
    start_watchdog(server)

    try:
        runpod.serverless.start(sdk_config(handler, settings))
    finally:
        server.stop()
        _close_services(app)


def _cold_start(
    argv: list[str] | None, hooks: LaunchHooks | None, started: float
) -> tuple[ServerThread, Any, Any]:
    """Settings, the four phases and the RunPod SDK's import; prints the ``cold_start`` line."""
    # The SDK logs every handler output at DEBUG, its default level: base64 audio in logs. Before importing it.
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    from backend.config import SettingsError, load_settings

    try:
        settings = load_settings().with_overrides(serverless=True)
    except SettingsError as err:
        _fail(f"bad setting: {err}", code=2)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per loopback request is noise
    if settings.log_level.upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(
            logging.WARNING
        )  # plugin set-up lines; migrations log their own
    hooks = hooks or default_hooks()
    phases: dict[str, float] = {}

    report = _timed(phases, "bootstrap", lambda: hooks.bootstrap(settings))
    engines = _timed(phases, "engines", lambda: hooks.load_engines(settings))
    app = _timed(phases, "app", lambda: hooks.make_app(settings, engines))

    def serve() -> ServerThread:
        try:
            server = ServerThread(
                app, host=LOOPBACK, port=settings.port, log_level=settings.log_level
            )
        except OSError as err:
            _fail(f"cannot listen on {LOOPBACK}:{settings.port} (VOICEBOX_PORT): {err}")
        server.start()
        if not server.wait_ready(settings.ready_timeout_seconds):
            if server.exited:
                _fail(f"the API server did not start: {server.describe_exit()}")
            _fail(
                f"the API server was not ready within {settings.ready_timeout_seconds:g} s "
                "(VOICEBOX_READY_TIMEOUT_SECONDS); exiting so RunPod replaces this worker"
            )
        return server

    server = _timed(phases, "server", serve)
    # Ready. The SDK is imported before the line so its cost is a phase of its own (it takes no job yet).
    _timed(phases, "sdk", _import_sdk)
    boot_phases = getattr(report, "phases", None)
    print(
        json.dumps(
            {
                "event": "cold_start",
                "worker": settings.worker_id,
                "phases_s": phases,
                "bootstrap_phases_s": boot_phases if isinstance(boot_phases, dict) else None,
                "total_s": round(time.perf_counter() - started, 3),
                # CPU seconds of this process so far (all threads): on a shared machine the wall time
                # above depends on the neighbours, this much less
                "cpu_s": round(time.process_time(), 3),
            }
        ),
        flush=True,
    )
    return server, app, settings


def _import_sdk() -> None:
    """The RunPod SDK and, for ``--rp_serve_api``, its local API server module (imported by ``start``)."""
    import runpod  # noqa: F401

    import backend.serverless.handler  # noqa: F401

    if "--rp_serve_api" in sys.argv[1:]:
        import runpod.serverless.modules.rp_fastapi  # noqa: F401
