"""The bridge's streamed speech: ``POST /generate/stream`` served from a RunPod stream job.

Why its own module: the bridge's forwarding of ordinary requests (``bridge.py``) answers when a job ends; a
stream job's chunks arrive at RunPod's ``/stream/{job_id}`` while it runs, read here with
``backend.client.stream.RemoteStream`` in a worker thread and handed to the HTTP answer as they come. The app
hears the WAV start after the first chunk instead of after the whole text. A caller that disconnects cancels
the job (RunPod ``/cancel``), which stops the synthesis on the worker.

A request the worker refuses (unknown profile, bad format, every stream slot taken) keeps its status and
``detail``; RunPod failures map as for every other bridged request (``bridge.error_response``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from backend.client.client import VoiceboxClient
from backend.client.errors import ClientError, RemoteError
from backend.client.stream import RemoteStream

#: chunks buffered between the RunPod reader thread and the HTTP answer (back-pressure beyond it)
QUEUE_CHUNKS = 64
#: answer headers of the worker's stream kept for the app
KEPT_HEADERS = (
    "content-disposition",
    "x-generation-id",
    "x-voicebox-stream-mode",
    "x-voicebox-model",
)


def install_stream_routes(
    app: FastAPI, client: VoiceboxClient, error_response: Callable[[ClientError], Response]
) -> None:
    """Add ``POST /generate/stream`` (before the bridge's catch-all forwarding route)."""

    @app.post("/generate/stream")
    async def generate_stream(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"detail": "request body is not valid JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "the body must be a JSON object"}, status_code=400)
        params = dict(request.query_params)
        try:
            stream = await asyncio.to_thread(
                client.stream, "/generate/stream", body=body, params=params
            )
        except RemoteError as exc:
            return JSONResponse(
                exc.body if isinstance(exc.body, dict) else {"detail": exc.message},
                status_code=exc.status_code,
            )
        except ClientError as exc:
            return error_response(exc)
        headers = {k: v for k, v in stream.headers.items() if k.lower() in KEPT_HEADERS}
        headers["Cache-Control"] = "no-cache"
        return StreamingResponse(
            relay(stream),
            media_type=stream.content_type or "application/octet-stream",
            headers=headers,
        )


async def relay(stream: RemoteStream) -> AsyncIterator[bytes]:
    """The stream's chunks, read in a thread; closing this (a disconnect) cancels the RunPod job."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                future.result(timeout=0.5)
                return
        future.cancel()

    def read() -> None:
        try:
            for chunk in stream:
                if stop.is_set():
                    return
                put(chunk)
            put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the answer, which ends early
            put(exc)

    reader = threading.Thread(target=read, name="bridge-stream", daemon=True)
    reader.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                return  # the job failed midway: the answer ends early (its status is already sent)
            yield item
    finally:
        stop.set()
        await asyncio.to_thread(stream.close)


__all__ = ["install_stream_routes", "relay"]
