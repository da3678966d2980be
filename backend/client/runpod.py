"""RunPod's serverless REST API for one endpoint: submit, poll, cancel, and one envelope run as a job.

Transport: the runpod SDK's ``Endpoint`` (its ``requests`` session, auth header and retries) submits
``/run`` jobs and carries every REST call. Its ``run_sync``/``Job.output`` are *not* used:
``run_sync`` returns only ``output`` and drops ``error`` (a FAILED job looks like ``None``), and
``Job.output`` polls once a second without backoff and turns an expired job into a bare
``HTTPError``. This class reads the full ``/runsync`` and ``/status`` answers instead and maps each
state to its own exception (``errors.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from backend.client.config import resolve_config
from backend.client.errors import (
    AuthError,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    PayloadTooLarge,
    ProtocolError,
    ResultExpired,
    ResultMissing,
    TransportError,
)

# RunPod's documented request caps (send-requests / operation-reference). Decimal MB: the docs do
# not say, and the smaller reading is the safe one.
RUNSYNC_PAYLOAD_LIMIT = 20_000_000
RUN_PAYLOAD_LIMIT = 10_000_000
TRANSIENT_STATUS = frozenset({None, 408, 429, 500, 502, 503, 504})
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})


def parse_job_error(error: Any) -> tuple[str, str | None, str | None]:
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


ProgressCallback = Callable[["JobProgress"], None]


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


class RunPodEndpoint:
    """Jobs on one RunPod serverless endpoint (or the SDK's local test API).

    ``api_base`` (or ``RUNPOD_API_BASE``) points it at another RunPod-compatible API, such as the test
    mock. ``timeout`` bounds how long one call waits for its job in total; ``runsync_wait`` is how long
    RunPod holds a ``/runsync`` request before answering with a non-final status (then it polls).
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
        self.runsync_payload_limit = runsync_payload_limit
        self.run_payload_limit = run_payload_limit
        self.request_timeout = request_timeout
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint_id={self.endpoint_id!r}, api_base={self.config.api_base!r})"

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
            message, kind, trace = parse_job_error(state.get("error"))
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
