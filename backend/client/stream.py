"""Streamed speech from a deployed endpoint: a ``stream: true`` job read through RunPod's ``/stream/{job_id}``.

Why a separate reader: ``/runsync`` and ``/status`` give a job's output only when it has finished; a stream
job's chunks arrive at ``/stream/{job_id}`` while it runs (the worker registers a generator handler). The
reader submits with ``/run``, polls ``/stream`` (RunPod holds each poll briefly until a chunk arrives),
decodes each item's ``chunk_base64`` in ``seq`` order and checks the final ``size`` and ``sha256``. Closing
the reader before the end cancels the job (``/cancel``), which stops the synthesis on the worker.

Also ``aggregate_answer``: what ``/runsync`` or ``/status`` hold for a job run by the generator handler
(``return_aggregate_stream``): the list of every item, turned back into one answer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from backend import job_answer as keys
from backend.client.errors import (
    ClientError,
    JobTimedOut,
    ProtocolError,
    RemoteError,
    TransportError,
)
from backend.client.runpod import FINAL_STATES

if TYPE_CHECKING:
    from backend.client.client import VoiceboxClient


def is_stream_item(item: Any) -> bool:
    return isinstance(item, dict) and ("chunk_base64" in item or item.get("done") is True)


def aggregate_answer(items: list[Any]) -> dict[str, Any]:
    """One answer from a generator handler's aggregated output: ``[answer]`` → the answer; stream items →
    a binary answer with the chunks joined (size and sha256 checked)."""
    if len(items) == 1 and isinstance(items[0], dict) and not is_stream_item(items[0]):
        return items[0]
    if not items or not all(is_stream_item(item) for item in items):
        raise ProtocolError(
            f"an aggregated output that is neither one answer nor a stream: {items!r:.200}"
        )
    data = b"".join(_chunk(item) for item in sorted(items, key=lambda i: int(i.get("seq", 0))))
    _check_end(items[-1], data)
    head = items[0]
    return {
        keys.STATUS_CODE: head.get(keys.STATUS_CODE, 200),
        keys.HEADERS: head.get(keys.HEADERS) or {},
        keys.IS_BINARY: True,
        keys.CONTENT_TYPE: head.get(keys.CONTENT_TYPE),
        keys.BODY_BASE64: base64.b64encode(data).decode("ascii"),
    }


def _chunk(item: Mapping[str, Any]) -> bytes:
    encoded = item.get("chunk_base64")
    if encoded is None:
        return b""
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ProtocolError("a stream chunk is not valid base64") from None


def _check_end(item: Mapping[str, Any], data: bytes) -> None:
    if not item.get("done"):
        raise ProtocolError("the stream ended without its final item (the job stopped early)")
    if item.get("size") != len(data) or item.get("sha256") != hashlib.sha256(data).hexdigest():
        raise ProtocolError(
            f"the stream's {len(data)} bytes do not match its final size/sha256 ({item.get('size')})"
        )


class RemoteStream:
    """Iterate over the audio bytes of a stream job as they arrive; ``content_type``, ``headers`` and
    ``job_id`` are known once ``open()`` returned (it waits for the first item)."""

    def __init__(
        self,
        client: VoiceboxClient,
        envelope: Mapping[str, Any],
        *,
        timeout: float | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self.client = client
        self.envelope = {**envelope, "stream": True}
        self.timeout = client.timeout if timeout is None else timeout
        self.poll_interval = poll_interval
        self.job_id: str | None = None
        self.status_code = 0
        self.content_type: str | None = None
        self.headers: dict[str, str] = {}
        self.first_chunk_at: float | None = None
        self.started = time.monotonic()
        self._pending: list[Any] = []
        self._finished = False
        self._data = hashlib.sha256()
        self._size = 0
        self._next_seq = 0

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> RemoteStream:
        """Submit the job and read up to its first item; a refusal raises ``RemoteError`` here."""
        self.job_id = self.client.submit(self.envelope)
        while not self._pending:
            if self._finished:
                raise ProtocolError(f"stream job {self.job_id} ended without any output")
            self._poll()
        first = self._pending[0]
        if not is_stream_item(first):  # the API refused before any audio: an ordinary answer
            self._pending.clear()
            self._finished = True
            answer = self.client.decode_output(first, job_id=self.job_id)
            raise RemoteError(answer.status_code, _detail(answer.body), body=answer.body)
        self.status_code = int(first.get("status_code", 200))
        self.content_type = first.get("content_type")
        self.headers = {str(k): str(v) for k, v in (first.get("headers") or {}).items()}
        return self

    def close(self) -> None:
        """Stop reading; an unfinished job is cancelled (the worker stops synthesising)."""
        if not self._finished and self.job_id is not None:
            self._finished = True
            # best effort: otherwise the job ends by its timeout
            with contextlib.suppress(ClientError, OSError):
                self.client.cancel(self.job_id)

    def __enter__(self) -> RemoteStream:
        return self.open() if self.job_id is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- reading
    def __iter__(self) -> Iterator[bytes]:
        if self.job_id is None:
            self.open()
        try:
            while True:
                while self._pending:
                    item = self._pending.pop(0)
                    if int(item.get("seq", self._next_seq)) != self._next_seq:
                        raise ProtocolError(f"stream job {self.job_id}: chunk out of order")
                    self._next_seq += 1
                    data = _chunk(item)
                    if data:
                        self._data.update(data)
                        self._size += len(data)
                        if self.first_chunk_at is None:
                            self.first_chunk_at = time.monotonic()
                        yield data
                    if item.get("done"):
                        if item.get("size") != self._size or item.get("sha256") != (
                            self._data.hexdigest()
                        ):
                            raise ProtocolError(f"stream job {self.job_id}: size/sha256 mismatch")
                        self._finished = True
                        return
                if self._finished:
                    raise ProtocolError(
                        f"stream job {self.job_id} ended before its final chunk (it was stopped)"
                    )
                self._poll()
        finally:
            self.close()

    def _poll(self) -> None:
        if time.monotonic() - self.started > self.timeout:
            raise JobTimedOut(
                f"stopped waiting for stream job {self.job_id} after {self.timeout:.0f}s",
                job_id=self.job_id,
                on_server=False,
            )
        # RunPod: GET <endpoint>/stream/<id>, held until chunks arrive. The SDK's local test API
        # (scripts/run-local.sh): POST /stream/<id>, which runs the whole job and answers every chunk at once.
        method = "POST" if self.client.config.local else "GET"
        try:
            state = self.client._rest(method, self.client._route(f"stream/{self.job_id}"))
        except TransportError as exc:
            if exc.status_code in (429, 500, 502, 503, 504):
                time.sleep(self.poll_interval * 10)
                return
            raise
        if not isinstance(state, dict):
            raise ProtocolError(f"RunPod API /stream: unexpected answer {state!r:.200}")
        items = [
            entry.get("output") for entry in state.get("stream") or [] if isinstance(entry, dict)
        ]
        for item in items:
            if isinstance(item, dict) and item.get("error"):
                self._finished = True
                self.client._final_output(
                    str(self.job_id), {"status": "FAILED", "error": item["error"]}
                )
        self._pending.extend(item for item in items if isinstance(item, dict))
        status = str(state.get("status"))
        if status in FINAL_STATES:
            if status != "COMPLETED" and not self._pending:
                self._finished = True
                self.client._final_output(str(self.job_id), state)  # raises the matching error
            if not items:
                self._finished = True
        elif not items:
            time.sleep(self.poll_interval)


def _detail(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]
