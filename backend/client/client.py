"""Python client for a deployed voicebox-worker RunPod endpoint.

Why this exists: every request to the worker is a RunPod job wrapping one Voicebox HTTP request in
an envelope (`docs/serverless.md`). Doing that by hand means base64 for uploads and audio, choosing
``/runsync`` or ``/run``, polling ``/status`` and telling RunPod's failure states apart. This module
does all of it behind Voicebox-shaped methods.

Transport: the runpod SDK's ``Endpoint`` (its ``requests`` session, auth header and retries) submits
``/run`` jobs and carries every REST call. Its ``run_sync``/``Job.output`` are *not* used:
``run_sync`` returns only ``output`` and drops ``error`` (a FAILED job looks like ``None``), and
``Job.output`` polls once a second without backoff and turns an expired job into a bare
``HTTPError``. The client reads the full ``/runsync`` and ``/status`` answers instead and maps each
state to its own exception (``errors.py``).

Blocking by design (the SDK is ``requests``-based); the bridge runs calls in worker threads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from backend.client.errors import (
    AuthError,
    ConfigError,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    ResultExpired,
    ResultMissing,
    ResultOnVolume,
    TransportError,
)
from backend.statuses import ACTIVE

if TYPE_CHECKING:
    from backend.client.stream import RemoteStream

DEFAULT_API_BASE = "https://api.runpod.ai/v2"
# RunPod's documented request caps (send-requests / operation-reference). Decimal MB: the docs do
# not say, and the smaller reading is the safe one.
RUNSYNC_PAYLOAD_LIMIT = 20_000_000
RUN_PAYLOAD_LIMIT = 10_000_000
# Largest spilled file fetched back through a job: what fits the worker's default result budget
# (14 MiB) once base64 grows it by a third. Larger files are only reachable with RunPod's S3 API.
DEFAULT_FETCH_LIMIT = 14 * 1024 * 1024 * 3 // 4
# Texts longer than this are generated with /run + polling: /runsync holds an HTTP request open for
# up to 90 s and keeps its result only a minute, which a long generation behind a cold start can
# outlast.
DEFAULT_ASYNC_THRESHOLD = 400

TRANSIENT_STATUS = frozenset({None, 408, 429, 500, 502, 503, 504})
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})
#: still running: the server's active statuses plus words other Voicebox servers have used
PENDING_GENERATION = frozenset({*ACTIVE, "pending", "running"})

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

ProgressCallback = Callable[["JobProgress"], None]
FileSpec = str | os.PathLike[str] | tuple[str, bytes] | tuple[str, bytes, str | None]


@dataclass(frozen=True)
class JobProgress:
    """One observation of a running job, passed to progress callbacks.

    ``output`` is whatever the worker posted with ``runpod.serverless.progress_update`` (None when
    nothing).
    """

    job_id: str
    status: str
    elapsed: float
    output: Any = None
    phase: str = "job"


@dataclass
class Answer:
    """The Voicebox server's answer, unwrapped from the job output."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content: bytes | None = None
    content_type: str | None = None
    job_id: str | None = None
    export: dict[str, Any] | None = None
    audio: Answer | None = None  # ``inline_audio``: the generation's audio, attached by the handler

    @property
    def is_binary(self) -> bool:
        return self.content is not None

    @property
    def spilled(self) -> bool:
        return self.export is not None and self.content is None


# --------------------------------------------------------------------------------------------------
# configuration


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``.env`` file (``KEY=VALUE``, ``export`` prefix, quotes, ``#`` comments).

    Why not python-dotenv: four lines of parsing are not worth a dependency, and we must not touch
    ``os.environ`` (no side effects; the real environment wins over the file).
    """
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


#: the RunPod SDK's local test API (``scripts/run-local.sh``): ``/run``, ``/runsync`` and ``/status/{id}`` at
#: its root, no endpoint id in the path, no API key
LOCAL_ENDPOINT_ID = "local"


@dataclass(frozen=True)
class ClientConfig:
    api_key: str
    endpoint_id: str
    api_base: str
    local: bool = False


def resolve_config(
    *,
    endpoint_id: str | None = None,
    api_key: str | None = None,
    api_base: str | None = None,
    env: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    local_url: str | None = None,
) -> ClientConfig:
    """Arguments first, then the environment, then ``.env`` (``env_file`` or ``./.env``).

    ``local_url`` (or ``VOICEBOX_LOCAL_URL``) selects the RunPod SDK's local test API instead of RunPod: the
    worker of ``scripts/run-local.sh`` at ``http://127.0.0.1:8000``; no key or endpoint id is needed.
    """
    environ = dict(os.environ if env is None else env)
    file_values = read_env_file(env_file if env_file is not None else Path.cwd() / ".env")

    def pick(*names: str) -> str | None:
        for source in (environ, file_values):
            for name in names:
                value = (source.get(name) or "").strip()
                if value:
                    return value
        return None

    local = local_url or pick("VOICEBOX_LOCAL_URL")
    if local:
        return ClientConfig(
            api_key=api_key or "local",
            endpoint_id=LOCAL_ENDPOINT_ID,
            api_base=local.rstrip("/"),
            local=True,
        )
    key = api_key or pick("RUNPOD_API_KEY")
    endpoint = endpoint_id or pick("VOICEBOX_ENDPOINT_ID", "RUNPOD_ENDPOINT_ID")
    base = api_base or pick("RUNPOD_API_BASE") or DEFAULT_API_BASE
    if not key:
        raise ConfigError("no RunPod API key: set RUNPOD_API_KEY in the environment or in .env")
    if not endpoint:
        raise ConfigError(
            "no endpoint id: pass --endpoint, or set VOICEBOX_ENDPOINT_ID (or RUNPOD_ENDPOINT_ID)"
        )
    return ClientConfig(api_key=key, endpoint_id=endpoint, api_base=base.rstrip("/"))


# --------------------------------------------------------------------------------------------------
# helpers


def _file_entry(spec: FileSpec) -> dict[str, Any]:
    if isinstance(spec, tuple):
        filename, data = spec[0], spec[1]
        content_type = spec[2] if len(spec) > 2 else None
    else:
        path = Path(spec)
        filename, data = path.name, path.read_bytes()
        content_type = None
    content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return {
        "filename": filename,
        "content_base64": base64.b64encode(data).decode("ascii"),
        "content_type": content_type,
    }


def detail_message(body: Any) -> str:
    """The human part of a FastAPI error body: ``detail`` as a string, a ``message``, or validation
    errors.
    """
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        for key in ("message", "error", "detail"):
            if isinstance(detail.get(key), str):
                return detail[key]
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        parts = []
        for item in detail:
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
        return "; ".join(parts)
    if detail is None:
        return "(no message)"
    return json.dumps(detail) if not isinstance(detail, bytes) else repr(detail[:200])


def _parse_job_error(error: Any) -> tuple[str, str | None, str | None]:
    """RunPod errors are either the handler's own string or a JSON string the SDK built from an
    exception.
    """
    parsed = error
    if isinstance(error, str):
        try:
            parsed = json.loads(error)
        except ValueError:
            return error, None, None
    if isinstance(parsed, dict):
        message = parsed.get("error_message") or parsed.get("message") or parsed.get("error")
        kind = parsed.get("error_type")
        if isinstance(kind, str) and kind.startswith("<class '") and kind.endswith("'>"):
            kind = kind[len("<class '") : -2]  # the SDK stores str(type(err))
        if not isinstance(message, str):
            message = json.dumps(parsed)
        return message, kind if isinstance(kind, str) else None, parsed.get("error_traceback")
    if parsed is None:
        return "job failed without an error message", None, None
    return str(parsed), None, None


def s3_download_hint(name: str) -> str:
    return (
        f"aws s3 cp s3://<NETWORK_VOLUME_ID>/voicebox/exports/{name} ./{name} "
        "--region <DATACENTER> --endpoint-url https://s3api-<datacenter>.runpod.io"
    )


def s3_upload_hint(local: str, name: str) -> str:
    return (
        f"aws s3 cp {local} s3://<NETWORK_VOLUME_ID>/voicebox/imports/{name} "
        "--region <DATACENTER> --endpoint-url https://s3api-<datacenter>.runpod.io"
    )


# --------------------------------------------------------------------------------------------------
# the client


class VoiceboxClient:
    """Talk to a voicebox-worker endpoint as if it were a Voicebox server.

    ``api_base`` (or ``RUNPOD_API_BASE``) points the client at another RunPod-compatible API, such
    as the test mock. ``timeout`` bounds how long one call waits for its job in total;
    ``runsync_wait`` is how long RunPod holds a ``/runsync`` request before answering with a
    non-final status (then the client polls).
    """

    def __init__(
        self,
        endpoint_id: str | None = None,
        api_key: str | None = None,
        *,
        api_base: str | None = None,
        env: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        local_url: str | None = None,
        timeout: float = 900.0,
        runsync_wait: float = 60.0,
        poll_initial: float = 0.5,
        poll_max: float = 5.0,
        async_threshold: int = DEFAULT_ASYNC_THRESHOLD,
        fetch_limit: int = DEFAULT_FETCH_LIMIT,
        runsync_payload_limit: int = RUNSYNC_PAYLOAD_LIMIT,
        run_payload_limit: int = RUN_PAYLOAD_LIMIT,
        request_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from runpod.endpoint.runner import (
            Endpoint,
        )  # runpod imports slowly; only pay when a client is made

        self.config = resolve_config(
            endpoint_id=endpoint_id,
            api_key=api_key,
            api_base=api_base,
            env=env,
            env_file=env_file,
            local_url=local_url,
        )
        self.endpoint_id = self.config.endpoint_id
        self._endpoint = Endpoint(self.endpoint_id, api_key=self.config.api_key)
        # The SDK reads its base URL from a module global at construction; set ours on this instance
        # only.
        self._endpoint.rp_client.endpoint_url_base = self.config.api_base
        self.timeout = timeout
        self.runsync_wait = runsync_wait
        self.poll_initial = poll_initial
        self.poll_max = poll_max
        self.async_threshold = async_threshold
        self.fetch_limit = fetch_limit
        self.runsync_payload_limit = runsync_payload_limit
        self.run_payload_limit = run_payload_limit
        self.request_timeout = request_timeout
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"VoiceboxClient(endpoint_id={self.endpoint_id!r}, api_base={self.config.api_base!r})"
        )

    # ---------------------------------------------------------------- RunPod REST

    def _route(self, action: str) -> str:
        """``<endpoint>/<action>`` on RunPod; ``<action>`` at the root of the SDK's local test API."""
        return action if self.config.local else f"{self.endpoint_id}/{action}"

    def _rest(
        self, method: str, route: str, data: Any = None, *, timeout: float | None = None
    ) -> Any:
        client = self._endpoint.rp_client
        try:
            if method == "GET":
                return client.get(route, timeout=timeout or self.request_timeout)
            return client.post(route, data, timeout=timeout or self.request_timeout)
        except RuntimeError as exc:  # the SDK's "401 Unauthorized | ..." message
            if "401" in str(exc):
                raise AuthError(str(exc), status_code=401) from None
            raise
        except requests.HTTPError as exc:
            response = exc.response
            code = response.status_code if response is not None else None
            text = (response.text or "").strip()[:500] if response is not None else str(exc)
            raise TransportError(
                f"RunPod API {method} /{route}: HTTP {code}: {text}", status_code=code
            ) from None
        except requests.RequestException as exc:
            raise TransportError(f"RunPod API {method} /{route}: {exc}") from None
        except ValueError as exc:  # a non-JSON body
            raise TransportError(f"RunPod API {method} /{route}: invalid JSON ({exc})") from None

    def submit(
        self, envelope: Mapping[str, Any], *, policy: Mapping[str, Any] | None = None
    ) -> str:
        """Queue a job with ``/run`` and return its id."""
        request: dict[str, Any] = {"input": dict(envelope)}
        if policy:
            request["policy"] = dict(policy)
        if self.config.local:
            answer = self._rest("POST", self._route("run"), request)
            if not isinstance(answer, dict) or "id" not in answer:
                raise TransportError(f"local API POST /run: unexpected answer {answer!r}")
            return str(answer["id"])
        try:
            job = self._endpoint.run(request)
        except RuntimeError as exc:
            raise AuthError(str(exc), status_code=401) from None
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else None
            text = exc.response.text[:500] if exc.response is not None else str(exc)
            raise TransportError(
                f"RunPod API POST /run: HTTP {code}: {text}", status_code=code
            ) from None
        except requests.RequestException as exc:
            raise TransportError(f"RunPod API POST /run: {exc}") from None
        except (KeyError, ValueError) as exc:
            raise TransportError(f"RunPod API POST /run: unexpected answer ({exc})") from None
        return str(job.job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        """The raw ``/status`` answer; a 404 means RunPod forgot the job, raised as
        ``ResultExpired``.
        """
        try:
            # the SDK's local test API answers /status only to POST
            method = "POST" if self.config.local else "GET"
            state = self._rest(method, self._route(f"status/{job_id}"))
        except TransportError as exc:
            if exc.status_code == 404:
                raise ResultExpired(
                    f"job {job_id} is unknown to RunPod (its result expired or its TTL passed); "
                    "submit it again",
                    job_id=job_id,
                ) from None
            raise
        if not isinstance(state, dict) or "status" not in state:
            raise TransportError(f"RunPod API /status/{job_id}: unexpected answer {state!r:.200}")
        return state

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask RunPod to cancel a queued or running job."""
        return self._rest("POST", self._route(f"cancel/{job_id}"))

    def wait(
        self,
        job_id: str,
        *,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        started: float | None = None,
    ) -> Any:
        """Poll ``/status`` with exponential backoff until the job is final; return its output."""
        started = time.monotonic() if started is None else started
        deadline = started + (self.timeout if timeout is None else timeout)
        delay = self.poll_initial
        failures = 0
        while True:
            try:
                state = self.status(job_id)
                failures = 0
            except TransportError as exc:
                # A blip on the status route (network, 429, 5xx) must not lose a job that is running
                # fine: keep polling, give up after a few in a row.
                failures += 1
                if failures > 5 or exc.status_code not in TRANSIENT_STATUS:
                    raise
                state = {"status": "RETRYING"}
            status = str(state.get("status"))
            if status in FINAL_STATES:
                return self._final_output(job_id, state)
            now = time.monotonic()
            if progress is not None:
                progress(JobProgress(job_id, status, now - started, state.get("output")))
            if now >= deadline:
                raise JobTimedOut(
                    f"stopped waiting for job {job_id} after {now - started:.0f}s (still {status}); "
                    "it may still finish — its result stays on RunPod for 30 minutes",
                    job_id=job_id,
                    on_server=False,
                )
            self._sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 1.6, self.poll_max)

    def _final_output(self, job_id: str, state: Mapping[str, Any]) -> Any:
        status = state.get("status")
        if status == "COMPLETED":
            if state.get("output") is None:
                raise ResultMissing(
                    f"job {job_id} COMPLETED without an output: the worker's result was probably too "
                    "large for RunPod and dropped",
                    job_id=job_id,
                )
            return state["output"]
        if status == "FAILED":
            message, kind, trace = _parse_job_error(state.get("error"))
            raise JobFailed(
                f"job {job_id} failed: {f'{kind}: ' if kind else ''}{message}",
                job_id=job_id,
                error_type=kind,
                traceback=trace,
                raw=state.get("error"),
            )
        if status == "TIMED_OUT":
            raise JobTimedOut(
                f"job {job_id} TIMED_OUT on RunPod (the endpoint's execution timeout or the request TTL)",
                job_id=job_id,
                on_server=True,
            )
        if status == "CANCELLED":
            raise JobCancelled(f"job {job_id} was cancelled", job_id=job_id)
        raise ProtocolError(f"job {job_id}: unknown final status {status!r}")

    def run_job(
        self,
        envelope: Mapping[str, Any],
        *,
        mode: str = "sync",
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> tuple[str | None, Any]:
        """Run one envelope as a job; return ``(job_id, output)``.

        ``mode="sync"`` uses ``/runsync`` and falls back to polling when RunPod answers non-final;
        ``"async"`` submits with ``/run`` and polls. The payload is measured first: over ``/run``'s
        cap a job goes through ``/runsync`` (20 MB), over that it is refused here with
        ``PayloadTooLarge``.
        """
        request: dict[str, Any] = {"input": dict(envelope)}
        if policy:
            request["policy"] = dict(policy)
        size = len(json.dumps(request, separators=(",", ":")).encode())
        if size > self.runsync_payload_limit:
            raise PayloadTooLarge(
                f"request is {size / 1e6:.1f} MB; RunPod accepts at most "
                f"{self.runsync_payload_limit / 1e6:.0f} MB per job",
                size=size,
                limit=self.runsync_payload_limit,
            )
        if mode == "async" and size > self.run_payload_limit:
            mode = "sync"
        started = time.monotonic()
        total = self.timeout if timeout is None else timeout
        if mode == "async":
            job_id = self.submit(envelope, policy=policy)
            if progress is not None:
                progress(JobProgress(job_id, "IN_QUEUE", time.monotonic() - started))
            return job_id, self.wait(job_id, progress=progress, timeout=total, started=started)
        wait_s = max(1.0, min(self.runsync_wait, total))
        answer = self._rest(
            "POST",
            self._route(f"runsync?wait={int(wait_s * 1000)}"),
            request,
            timeout=wait_s + self.request_timeout,
        )
        if not isinstance(answer, dict) or "status" not in answer:
            raise TransportError(f"RunPod API /runsync: unexpected answer {answer!r:.200}")
        job_id = str(answer.get("id") or "")
        if answer["status"] in FINAL_STATES:
            return job_id, self._final_output(str(job_id), answer)
        if not job_id:
            raise TransportError("RunPod API /runsync: a non-final answer without a job id")
        if progress is not None:
            progress(JobProgress(job_id, str(answer["status"]), time.monotonic() - started))
        return job_id, self.wait(job_id, progress=progress, timeout=total, started=started)

    # ---------------------------------------------------------------- envelope

    @staticmethod
    def build_envelope(
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        files: Mapping[str, FileSpec] | None = None,
        form: Mapping[str, Any] | None = None,
        inline_audio: bool | None = None,
        inline_only: bool | None = None,
    ) -> dict[str, Any]:
        """The job input for one HTTP request (`docs/serverless.md`); empty parts are left out."""
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"path must be an origin-form path such as /profiles, not {path!r}")
        envelope: dict[str, Any] = {"method": method.upper(), "path": path}
        if body is not None:
            envelope["body"] = body
        if params:
            envelope["params"] = {k: v for k, v in params.items() if v is not None}
        if headers:
            envelope["headers"] = dict(headers)
        if files:
            envelope["files"] = {name: _file_entry(spec) for name, spec in files.items()}
        if form:
            envelope["form"] = {k: str(v) for k, v in form.items() if v is not None}
        if inline_audio is not None:
            envelope["inline_audio"] = inline_audio
        if inline_only is not None:
            envelope["inline_only"] = inline_only
        return envelope

    def decode_output(self, output: Any, *, job_id: str | None = None) -> Answer:
        """Turn a job output into an ``Answer`` (binary decoded, spill described, JSON as is).

        A worker with a generator handler (``VOICEBOX_STREAM_JOBS``) answers a list: ``[answer]``, or the
        chunks of a stream job, joined here into one binary answer.
        """
        if isinstance(output, list):
            from backend.client.stream import aggregate_answer

            output = aggregate_answer(output)
        if not isinstance(output, dict):
            raise ProtocolError(f"job {job_id}: output is not an envelope answer: {output!r:.200}")
        if "error" in output and "status_code" not in output:
            message, kind, trace = _parse_job_error(output["error"])
            raise JobFailed(message, job_id=job_id, error_type=kind, traceback=trace, raw=output)
        try:
            status_code = int(output.get("status_code", 200))
        except (TypeError, ValueError):
            raise ProtocolError(
                f"job {job_id}: bad status_code {output.get('status_code')!r}"
            ) from None
        headers = {str(k): str(v) for k, v in (output.get("headers") or {}).items()}
        if output.get("spilled"):
            export = output.get("export")
            if not isinstance(export, dict) or not export.get("name"):
                raise ProtocolError(f"job {job_id}: spilled answer without an export name")
            return Answer(
                status_code,
                headers,
                export=export,
                job_id=job_id,
                content_type=export.get("content_type"),
            )
        if output.get("is_binary"):
            try:
                content = base64.b64decode(output.get("body_base64") or "", validate=True)
            except ValueError:
                raise ProtocolError(f"job {job_id}: body_base64 is not valid base64") from None
            content_type = output.get("content_type") or headers.get("content-type")
            return Answer(
                status_code, headers, content=content, content_type=content_type, job_id=job_id
            )
        answer = Answer(
            status_code,
            headers,
            body=output.get("body"),
            job_id=job_id,
            content_type=headers.get("content-type", "application/json"),
        )
        if isinstance(output.get("audio"), dict):
            answer.audio = self.decode_output(output["audio"], job_id=job_id)
        return answer

    def fetch_export(self, export: Mapping[str, Any], *, job_id: str | None = None) -> Answer:
        """Fetch a spilled answer from ``voicebox/exports/`` through a job, when it fits through
        RunPod.
        """
        name = str(export["name"])
        size = export.get("size")
        if isinstance(size, int) and size > self.fetch_limit:
            raise ResultOnVolume(
                f"the answer ({size / 1e6:.1f} MB) is too large to return through RunPod and was saved "
                f"on the network volume as voicebox/exports/{name}; download it with RunPod's S3 API: "
                f"{s3_download_hint(name)}",
                export=dict(export),
                job_id=job_id,
            )
        try:
            fetched = self.request(
                "GET", f"/exports/{quote(name, safe='')}", inline_only=True, fetch_spilled=False
            )
        except (JobFailed, RemoteError) as exc:  # over the worker's budget even alone, or gone
            raise ResultOnVolume(
                f"the answer was saved on the network volume as voicebox/exports/{name} and could "
                f"not be fetched through a job ({exc}); download it with RunPod's S3 API: "
                f"{s3_download_hint(name)}",
                export=dict(export),
                job_id=job_id,
            ) from None
        if fetched.spilled or fetched.content is None:
            raise ResultOnVolume(
                f"could not fetch voicebox/exports/{name} through a job; download it with RunPod's S3 "
                f"API: {s3_download_hint(name)}",
                export=dict(export),
                job_id=job_id,
            )
        digest = export.get("sha256")
        if digest and hashlib.sha256(fetched.content).hexdigest() != digest:
            raise ProtocolError(f"voicebox/exports/{name}: sha256 mismatch after download")
        return Answer(
            200,
            fetched.headers,
            content=fetched.content,
            content_type=export.get("content_type") or fetched.content_type,
            job_id=job_id,
            export=dict(export),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        files: Mapping[str, FileSpec] | None = None,
        form: Mapping[str, Any] | None = None,
        inline_audio: bool | None = None,
        inline_only: bool | None = None,
        mode: str = "sync",
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        check: bool = True,
        fetch_spilled: bool = True,
    ) -> Answer:
        """Send one Voicebox HTTP request as a job and return the server's answer.

        With ``check`` an HTTP error status raises ``RemoteError`` carrying the server's ``detail``.
        A spilled answer is fetched back (``fetch_spilled``) and a spilled JSON answer is parsed.
        """
        envelope = self.build_envelope(
            method,
            path,
            body=body,
            params=params,
            headers=headers,
            files=files,
            form=form,
            inline_audio=inline_audio,
            inline_only=inline_only,
        )
        job_id, output = self.run_job(envelope, mode=mode, progress=progress, timeout=timeout)
        answer = self.decode_output(output, job_id=job_id)
        if answer.spilled and fetch_spilled:
            status_code, headers_ = answer.status_code, answer.headers
            answer = self.fetch_export(answer.export or {}, job_id=job_id)
            answer.status_code, answer.headers = status_code, {**headers_, **answer.headers}
            if (answer.content_type or "").startswith("application/json") and answer.content:
                answer.body = json.loads(answer.content)
                answer.content = None
        if check and answer.status_code >= 400:
            body_ = answer.body
            if body_ is None and answer.content is not None:
                try:
                    body_ = json.loads(answer.content)
                except ValueError:
                    body_ = answer.content.decode("utf-8", "replace")[:500]
            raise RemoteError(answer.status_code, detail_message(body_), body=body_)
        return answer

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.request(method, path, **kwargs)
        if answer.content is not None:
            raise ProtocolError(f"{method} {path}: expected JSON, got {answer.content_type}")
        return answer.body

    # ---------------------------------------------------------------- Voicebox API

    def health(self) -> dict[str, Any]:
        """``GET /health`` — also wakes a worker, so the first call pays the cold start."""
        return self._json("GET", "/health")

    def list_profiles(self) -> list[dict[str, Any]]:
        return self._json("GET", "/profiles")

    def get_profile(self, profile: str) -> dict[str, Any]:
        """Find a profile by id, exact name, or unique case-insensitive name."""
        profiles = self.list_profiles()
        for match in (
            lambda p: p.get("id") == profile,
            lambda p: p.get("name") == profile,
            lambda p: str(p.get("name", "")).casefold() == profile.casefold(),
        ):
            found = [p for p in profiles if match(p)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RemoteError(409, f"{len(found)} profiles match {profile!r}; use the id")
        names = ", ".join(sorted(str(p.get("name")) for p in profiles)) or "none"
        raise RemoteError(404, f"no profile named {profile!r} (profiles: {names})")

    def _profile_id(self, profile: str | Mapping[str, Any]) -> str:
        if isinstance(profile, Mapping):
            return str(profile["id"])
        if _UUID_RE.fullmatch(profile):
            return profile  # an id already: skip the lookup job
        return str(self.get_profile(profile)["id"])

    def create_profile(
        self, name: str, *, description: str | None = None, language: str = "en", **fields: Any
    ) -> dict[str, Any]:
        body = {"name": name, "language": language, **fields}
        if description is not None:
            body["description"] = description
        return self._json("POST", "/profiles", body=body)

    def delete_profile(self, profile: str | Mapping[str, Any]) -> Any:
        return self._json("DELETE", f"/profiles/{self._profile_id(profile)}")

    def add_sample(
        self, profile: str | Mapping[str, Any], path: str | os.PathLike[str], reference_text: str
    ) -> dict[str, Any]:
        """Upload a reference recording and its transcript to a profile (multipart through the
        envelope).
        """
        profile_id = self._profile_id(profile)
        return self._json(
            "POST",
            f"/profiles/{profile_id}/samples",
            files={"file": path},
            form={"reference_text": reference_text},
        )

    def list_samples(self, profile: str | Mapping[str, Any]) -> list[dict[str, Any]]:
        return self._json("GET", f"/profiles/{self._profile_id(profile)}/samples")

    def export_profile(
        self, profile: str | Mapping[str, Any], dest: str | os.PathLike[str]
    ) -> Path:
        """Download a profile bundle (zip) to ``dest``; a bundle past the result budget comes via
        the volume.
        """
        profile_id = self._profile_id(profile)
        answer = self.request("GET", f"/profiles/{profile_id}/export", mode="async")
        if answer.content is None:
            raise ProtocolError(f"export of {profile_id}: expected a zip, got JSON")
        target = Path(dest)
        target.write_bytes(answer.content)
        return target

    def import_profile(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        volume_name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Import a profile bundle, inline when it fits a job, else from ``voicebox/imports/`` on
        the volume.

        A bundle past RunPod's payload cap cannot travel in a job: upload it to
        ``voicebox/imports/<name>`` with RunPod's S3 API first, then call with
        ``volume_name=<name>`` (the error says exactly how).
        """
        if volume_name is not None:
            if "/" in volume_name or "\\" in volume_name or volume_name in {"", ".", ".."}:
                raise ConfigError("volume_name is a file name inside voicebox/imports/, not a path")
            return self._json(
                "POST",
                "/profiles/import",
                form={"volume_name": volume_name},
                mode="async",
                progress=progress,
            )
        if path is None:
            raise ConfigError("import_profile needs a file path or volume_name")
        source = Path(path)
        size = source.stat().st_size
        # base64 grows by 4/3; keep 64 KiB for the rest of the envelope.
        if size * 4 // 3 + 65536 > self.runsync_payload_limit:
            raise PayloadTooLarge(
                f"{source.name} is {size / 1e6:.1f} MB, past what a RunPod job can carry "
                f"({self.runsync_payload_limit / 1e6:.0f} MB after base64). Upload it to the network "
                f"volume first — {s3_upload_hint(str(source), source.name)} — then run: "
                f"voicebox-worker remote import --volume-name {source.name}",
                size=size,
                limit=self.runsync_payload_limit,
            )
        return self._json(
            "POST", "/profiles/import", files={"file": source}, mode="async", progress=progress
        )

    def generate(
        self,
        text: str,
        *,
        profile: str | Mapping[str, Any],
        output: str | os.PathLike[str] | None = None,
        language: str | None = None,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        mode: str | None = None,
        **options: Any,
    ) -> bytes | Path:
        """Speak ``text`` in a profile's voice; return the audio bytes, or write ``output`` and
        return its path.

        Texts longer than ``async_threshold`` go through ``/run`` and are polled with backoff
        (``progress`` gets each poll). The job asks for the audio inline; if the worker answers with
        a generation record instead, the client waits for it to finish (``GET /history/{id}``) and
        fetches ``GET /audio/{id}``. The handler attaches the audio as ``output["audio"]`` (an
        inline or spilled answer), fetched back when spilled.
        """
        profile_id = self._profile_id(profile)
        body: dict[str, Any] = {"profile_id": profile_id, "text": text, **options}
        if language is not None:
            body["language"] = language
        if seed is not None:
            body["seed"] = seed
        chosen = mode or ("async" if len(text) > self.async_threshold else "sync")
        started = time.monotonic()
        total = self.timeout if timeout is None else timeout

        def remaining() -> float:
            return max(1.0, total - (time.monotonic() - started))

        answer = self.request(
            "POST",
            "/generate",
            body=body,
            inline_audio=True,
            mode=chosen,
            progress=progress,
            timeout=total,
        )
        audio = answer.content
        attached = answer.audio
        if audio is None and attached is not None and attached.status_code < 300:
            if attached.spilled:
                attached = self.fetch_export(attached.export or {}, job_id=answer.job_id)
            audio = attached.content
        if audio is None:
            record = answer.body if isinstance(answer.body, dict) else {}
            inline = record.get("audio_base64")
            if isinstance(inline, str):
                audio = base64.b64decode(inline)
            else:
                generation_id = record.get("id") or record.get("generation_id")
                if not generation_id:
                    raise ProtocolError(
                        f"/generate answered without an id or audio: {record!r:.200}"
                    )
                self._wait_generation(str(generation_id), record, progress, started, total)
                audio_answer = self.request("GET", f"/audio/{generation_id}", timeout=remaining())
                if audio_answer.content is None:
                    raise ProtocolError(f"/audio/{generation_id} answered JSON, not audio")
                audio = audio_answer.content
        if output is None:
            return audio
        target = Path(output)
        target.write_bytes(audio)
        return target

    def stream(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RemoteStream:
        """Start a stream job (``POST /generate/stream`` or ``/v1/audio/speech``) and return it opened:
        iterate it for the audio bytes as they arrive; a refused request raises ``RemoteError`` here."""
        from backend.client.stream import RemoteStream

        envelope = self.build_envelope(
            "POST", path, body=dict(body or {}), params=params, headers=headers
        )
        return RemoteStream(self, envelope, timeout=timeout).open()

    def generate_stream(
        self,
        text: str,
        *,
        profile: str | Mapping[str, Any],
        format: str = "wav",  # noqa: A002 - the route's query parameter
        persist: bool = True,
        language: str | None = None,
        seed: int | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> RemoteStream:
        """Speak ``text`` as a stream: ``for chunk in vb.generate_stream(...)`` gets the audio as it is made
        (``format`` wav, pcm, mp3 or opus; ``persist=False`` keeps no history row)."""
        body: dict[str, Any] = {"profile_id": self._profile_id(profile), "text": text, **options}
        if language is not None:
            body["language"] = language
        if seed is not None:
            body["seed"] = seed
        params = {"format": format, "persist": "true" if persist else "false"}
        return self.stream("/generate/stream", body=body, params=params, timeout=timeout)

    def _wait_generation(
        self,
        generation_id: str,
        record: Mapping[str, Any],
        progress: ProgressCallback | None,
        started: float,
        total: float,
    ) -> None:
        """Wait for a queued generation (servers where POST /generate returns before the audio
        exists).
        """
        delay = self.poll_initial
        status = str(record.get("status") or "completed")
        while status in PENDING_GENERATION:
            elapsed = time.monotonic() - started
            if elapsed >= total:
                raise JobTimedOut(
                    f"generation {generation_id} still {status} after {elapsed:.0f}s",
                    on_server=False,
                )
            if progress is not None:
                progress(JobProgress(generation_id, status, elapsed, phase="generation"))
            self._sleep(delay)
            delay = min(delay * 1.6, self.poll_max)
            record = self._json(
                "GET", f"/history/{generation_id}", timeout=max(1.0, total - elapsed)
            )
            status = str(record.get("status") or "completed")
        if status == "failed":
            raise RemoteError(
                500, f"generation {generation_id} failed: {record.get('error')}", body=dict(record)
            )

    def audio(self, generation_id: str) -> bytes:
        answer = self.request("GET", f"/audio/{generation_id}")
        if answer.content is None:
            raise ProtocolError(f"/audio/{generation_id} answered JSON, not audio")
        return answer.content

    def history(
        self,
        *,
        profile: str | Mapping[str, Any] | None = None,
        limit: int = 50,
        offset: int = 0,
        search: str | None = None,
    ) -> dict[str, Any]:
        """``GET /history`` → ``{"items": [...], "total": n}``."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "search": search}
        if profile is not None:
            params["profile_id"] = self._profile_id(profile)
        return self._json("GET", "/history", params=params)

    def transcribe(
        self,
        path: str | os.PathLike[str],
        *,
        language: str | None = None,
        model: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """``POST /transcribe`` → ``{"text", "duration"}``.

        A 202 (Whisper still downloading on the worker) is retried with backoff until ``timeout``.
        """
        started = time.monotonic()
        delay = max(self.poll_initial, 1.0)
        while True:
            answer = self.request(
                "POST",
                "/transcribe",
                files={"file": path},
                form={"language": language, "model": model},
                progress=progress,
            )
            if answer.status_code != 202:
                return answer.body
            elapsed = time.monotonic() - started
            if elapsed >= self.timeout:
                raise JobTimedOut(
                    f"the transcription model was still downloading after {elapsed:.0f}s",
                    on_server=False,
                )
            if progress is not None:
                progress(JobProgress("-", "MODEL_DOWNLOADING", elapsed, answer.body, "transcribe"))
            self._sleep(delay)
            delay = min(delay * 1.6, max(self.poll_max, 1.0))
