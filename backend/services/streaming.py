"""Streamed speech: audio handed to the reader chunk by chunk while the rest is still being generated.

Why a bounded buffer between the synthesis thread and the reader: the engine makes a chunk in seconds, a
listener plays it in real time, and a client may stop reading altogether. The buffer holds at most
``VOICEBOX_STREAM_BUFFER_SECONDS`` of audio; when it is full the synthesis waits, and if the reader takes
nothing for ``VOICEBOX_STREAM_STALL_SECONDS`` the synthesis stops (the generation is recorded as cancelled).
A reader that goes away closes the stream: the synthesis stops after the chunk in progress. Memory is bounded
by ``VOICEBOX_MAX_STREAMS`` × the buffer; a stream past that bound is refused at once (``StreamsBusyError``,
answered 429 with ``Retry-After``) instead of queueing a connection behind a long synthesis.

By default a stream is also a durable generation (the intent row, the audio written atomically, the row
completed — ``GenerationService`` with a sink), so the history keeps what was heard. ``persist=False`` is
upstream Voicebox's behaviour: nothing is stored.

Loudness: a stream cannot know the level of audio not generated yet, so ``normalize`` fixes the gain from the
first chunk (``StreamGain``). One-chunk texts are sample-identical to the non-streamed output; longer ones
differ by that constant gain. With ``normalize=False`` every text is sample-identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backend.config import Settings
from backend.db.interface import Database
from backend.engines.base import OUTPUT_SAMPLE_RATE, Engines
from backend.services.common import require_engines
from backend.services.errors import ConflictError, ServiceError, ValidationError
from backend.services.synthesis import GenerationInput, SinkClosed, profile_samples, synthesize
from backend.statuses import GenerationStatus
from backend.storage.audio_stream import StreamGain
from backend.storage.blobs import BlobStore

if TYPE_CHECKING:
    from backend.engines.base import AudioPiece
    from backend.services.generation import GenerationService

log = logging.getLogger(__name__)

#: what a stream's ``Retry-After`` says when every stream slot is taken
RETRY_AFTER_SECONDS = 5


class StreamsBusyError(ServiceError):
    """Every stream slot of this worker is in use (answered 429 with ``Retry-After``)."""


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended: ``completed``, ``failed`` or ``cancelled`` (``error`` says why)."""

    status: str
    error: str | None = None


#: what a reader gets: a piece of audio (float32 mono) or the end
StreamItem = np.ndarray | StreamEnd


class AudioStream:
    """One stream's bounded buffer: the synthesis thread ``push``es, one reader takes pieces in order.

    Implements ``AudioSink`` for ``GenerationService.start``. ``first_audio`` is set when the first samples
    are buffered and ``finished`` when the synthesis is over, so tests can tell "audio before the end" from
    events rather than wall time.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        normalize: bool,
        buffer_seconds: float,
        stall_seconds: float,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.gain = StreamGain(enabled=normalize)
        self.max_samples = max(1, int(buffer_seconds * sample_rate))
        self.stall_seconds = stall_seconds
        self.generation_id: str | None = None
        self.first_audio = threading.Event()
        self.finished = threading.Event()
        self.reader_gone = threading.Event()
        self.end_state: StreamEnd | None = None
        self.samples_pushed = 0
        self._on_end = on_end
        self._cond = threading.Condition()
        self._items: deque[np.ndarray] = deque()
        self._buffered = 0
        self._closed: str | None = None  # why the reader side closed
        self._last_read = time.monotonic()
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    # ------------------------------------------------------------------ synthesis side (AudioSink)
    def bind(self, generation_id: str) -> None:
        self.generation_id = generation_id

    def push(self, piece: AudioPiece) -> None:
        if piece.index == 0:
            self.gain.fix(piece.chunk)
        audio = self.gain.apply(piece.audio)
        with self._cond:
            while (
                self._closed is None
                and self._items
                and self._buffered + audio.size > self.max_samples
            ):
                waited = time.monotonic() - self._last_read
                if waited >= self.stall_seconds:
                    self._closed = (
                        f"the stream's reader took nothing for {self.stall_seconds:g} s "
                        "(VOICEBOX_STREAM_STALL_SECONDS); synthesis stopped"
                    )
                    self._items.clear()
                    self._buffered = 0
                    break
                self._cond.wait(self.stall_seconds - waited)
            if self._closed is not None:
                raise SinkClosed(self._closed)
            if audio.size:
                self._items.append(audio)
                self._buffered += audio.size
                self.samples_pushed += audio.size
            self._wake()
        if audio.size:
            self.first_audio.set()

    def final_audio(self, audio: np.ndarray) -> np.ndarray:
        return self.gain.apply(audio)

    def end(self, status: str, error: str | None) -> None:
        with self._cond:
            if self.end_state is None:
                self.end_state = StreamEnd(status, error)
            self._wake()
        self.finished.set()
        if self._on_end is not None:
            self._on_end()

    # ------------------------------------------------------------------ reader side
    def _take(self) -> StreamItem | None:
        """The next piece, the end, or ``None`` (nothing yet). Holds ``_cond``."""
        self._last_read = time.monotonic()
        if self._items:
            audio = self._items.popleft()
            self._buffered -= audio.size
            self._cond.notify_all()
            return audio
        if self.end_state is not None:
            return self.end_state
        return None

    def read(self, timeout: float | None = None) -> StreamItem | None:
        """Blocking read for threads: a piece, the ``StreamEnd``, or ``None`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                item = self._take()
                if item is not None:
                    return item
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)

    async def next(self, timeout: float) -> StreamItem | None:
        """Async read: a piece, the ``StreamEnd``, or ``None`` when nothing came within ``timeout``."""
        loop = asyncio.get_running_loop()
        with self._cond:
            item = self._take()
            if item is not None:
                return item
            event = asyncio.Event()
            self._waker = (loop, event)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        with self._cond:
            self._waker = None
            return self._take()

    def close(self, reason: str) -> None:
        """The reader is gone: the synthesis stops at its next chunk; buffered audio is dropped."""
        with self._cond:
            if self._closed is None:
                self._closed = reason
            self._items.clear()
            self._buffered = 0
            self._cond.notify_all()
        self.reader_gone.set()

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    def _wake(self) -> None:
        """Wake an async reader (holds ``_cond``)."""
        self._cond.notify_all()
        if self._waker is not None:
            loop, event = self._waker
            with contextlib.suppress(RuntimeError):  # the reader's loop is closed: nobody to wake
                loop.call_soon_threadsafe(event.set)


class StreamingService:
    """Opens streams: a slot (``VOICEBOX_MAX_STREAMS``), then a durable or an unpersisted synthesis."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        engines: Engines | None,
        generation: GenerationService,
    ) -> None:
        """``generation`` runs the durable streams (``persist=True``); the others are synthesised here."""
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.engines = engines
        self.generation = generation
        self._slots = threading.BoundedSemaphore(self.settings.max_streams)
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.max_streams, thread_name_prefix="stream"
        )
        self.active = 0
        self._mutex = threading.Lock()
        #: the streams not yet collected (observability for tests and the bench; never iterated for work)
        self.streams: weakref.WeakSet[AudioStream] = weakref.WeakSet()

    def open(self, request: GenerationInput, *, persist: bool = True) -> AudioStream:
        """Start a streamed generation; raises before any audio on every request error (4xx)."""
        require_engines(self.engines)
        if not request.text.strip():
            raise ValidationError("text is empty")
        if not self._slots.acquire(blocking=False):
            raise StreamsBusyError(
                f"this worker is already streaming {self.settings.max_streams} generations "
                f"(VOICEBOX_MAX_STREAMS); retry in {RETRY_AFTER_SECONDS} s"
            )
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                with self._mutex:
                    self.active -= 1
                self._slots.release()

        with self._mutex:
            self.active += 1
        stream = AudioStream(
            sample_rate=OUTPUT_SAMPLE_RATE,
            normalize=request.normalize,
            buffer_seconds=self.settings.stream_buffer_seconds,
            stall_seconds=self.settings.stream_stall_seconds,
            on_end=release,
        )
        self.streams.add(stream)
        try:
            if persist:
                row = self.generation.start(request, sink=stream)
                if (
                    stream.generation_id is None
                ):  # an X-Request-ID seen before: nothing new to stream
                    raise ConflictError(
                        f"request id {request.request_id!r} already made generation {row.id} "
                        f"({row.status}); fetch its audio with GET /audio/{row.id}"
                    )
            else:
                samples = profile_samples(self.db, self.blobs, request.profile_id)
                self._executor.submit(self._run_unpersisted, stream, request, samples)
        except BaseException:
            release()
            raise
        return stream

    def _run_unpersisted(
        self, stream: AudioStream, request: GenerationInput, samples: list[tuple[bytes, str]]
    ) -> None:
        outcome: tuple[GenerationStatus, str | None] = (
            GenerationStatus.FAILED,
            "the stream did not finish",
        )
        try:
            synthesize(require_engines(self.engines), samples, request, on_audio=stream.push)
            outcome = (GenerationStatus.COMPLETED, None)
        except SinkClosed as exc:
            outcome = (GenerationStatus.CANCELLED, str(exc))
        except Exception as exc:  # the reader must learn why the audio stopped
            log.exception("stream failed")
            outcome = (GenerationStatus.FAILED, str(exc) or type(exc).__name__)
        finally:
            stream.end(*outcome)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
