"""Durable generation jobs: intent row → audio written atomically → row complete.

Why this order: a serverless worker can be stopped the moment its job ends, or SIGKILLed mid-synthesis. The intent
row (``generating``, owner worker id, lease expiry) is published before any work, so a peer's ``fsck`` can tell a
dead worker's job (lease expired → completed if its file is durable, else failed) from a live one (never touched).
The audio is written atomically before the row says ``completed``, so a completed row always has its file.
Synthesis runs on one background thread per worker (the engine holds one device lock anyway); callers either
poll ``/generate/{id}/status`` (Voicebox's contract) or wait (``?wait=true``, used by the RunPod handler).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.errors import volume_fault
from backend.db.interface import Database, run_retrying
from backend.db.models import Generation, Profile, new_id, utcnow
from backend.engines.base import Engines
from backend.services import generation_rows
from backend.services.common import require_engines, write_retrying
from backend.services.errors import BusyError, ConflictError, NotFoundError, ValidationError
from backend.services.generation_output import Outcome, store_result
from backend.services.synthesis import (  # the routes import GenerationInput from here too
    AudioSink,
    GenerationInput,
    SinkClosed,
    profile_samples,
    synthesize,
)
from backend.statuses import ACTIVE, CANCELLED_ERROR, FINAL, GenerationStatus
from backend.storage import effects as fx
from backend.storage.audio import normalize_loudness
from backend.storage.blobs import BlobStore

if TYPE_CHECKING:
    from backend.engines.base import SynthesisResult

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

#: finished generations whose completion event is kept (``wait`` falls back to reading the row)
FINISHED_EVENTS_KEPT = 1000


class _Cancelled(Exception):
    pass


class GenerationService:
    #: seconds a retry waits for a cancelled run of the same row to leave the queue (it must not overlap)
    retry_queue_wait = 5.0

    def __init__(
        self, settings: Settings, db: Database, blobs: BlobStore, engines: Engines | None
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.engines = engines
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
        # Completion events by generation id, oldest first. Finished ones are only a shortcut for ``wait``
        # (without one it reads the row), so at most ``FINISHED_EVENTS_KEPT`` of them are kept: one entry per
        # generation for the life of a worker was unbounded growth.
        self._done: OrderedDict[str, threading.Event] = OrderedDict()
        self._cancel: set[str] = set()
        self._progress: dict[str, tuple[int, int]] = {}
        self._running: set[str] = set()
        self._mutex = threading.Lock()
        self._pending = 0  # queued or running on this worker; bounded by ``max_queued``

    # ------------------------------------------------------------------ start
    def start(self, request: GenerationInput, *, sink: AudioSink | None = None) -> Generation:
        """Publish the intent row and queue the synthesis; returns the row (status ``generating``).

        With a ``sink`` the audio is also handed to it chunk by chunk (streaming); a request id that already
        has a row returns that row and leaves the sink unbound.
        """
        require_engines(self.engines)
        if not request.text.strip():
            raise ValidationError("text is empty")
        if request.effects_chain is not None:
            fx.validate_chain(request.effects_chain)
        request_id = (request.request_id or "").strip()
        # a retried RunPod job answers its first attempt, even when the queue is full
        if request_id:
            with self.db.read() as session:
                existing = session.scalar(
                    select(Generation).where(Generation.request_id == request_id)
                )
            if existing is not None:
                self._ensure_event(existing.id, done=existing.status in FINAL)
                return existing
        self._reserve()
        try:
            row, queued = self._start_retrying(request, sink)
        except BaseException:
            self._release()
            raise
        if not queued:
            self._release()
        return row

    def _reserve(self) -> None:
        """Take a queue slot or refuse at once (429): a bounded queue keeps waits, memory and the
        executor's backlog bounded instead of accepting work no one will wait for."""
        with self._mutex:
            if self._pending >= self.settings.max_queued:
                raise BusyError(
                    f"this worker already has {self._pending} generation(s) queued or running "
                    f"(VOICEBOX_MAX_QUEUED={self.settings.max_queued}); retry shortly",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            self._pending += 1

    def _release(self) -> None:
        with self._mutex:
            self._pending -= 1

    @property
    def pending(self) -> int:
        return self._pending

    def _start_retrying(
        self, request: GenerationInput, sink: AudioSink | None = None
    ) -> tuple[Generation, bool]:
        """``_start`` run again when its unit lost a race (``WriteConflictError``): nothing is queued before
        its commit, so a re-run is safe."""
        return run_retrying(lambda: self._start(request, sink), self.db.conflict_retries)

    def _start(
        self, request: GenerationInput, sink: AudioSink | None = None
    ) -> tuple[Generation, bool]:
        """The intent row and the queued synthesis; ``False`` when a retried request answered instead."""
        gen_id = _checked_id(request.generation_id) if request.generation_id else new_id()
        request_id = (request.request_id or "").strip() or None  # an empty header is no id
        with self.db.write() as session:
            # the same request delivered twice, or a retried RunPod job: answer with the first
            existing = generation_rows.answered(session, request, gen_id, request_id)
            if existing is not None:
                self._ensure_event(existing.id, done=existing.status in FINAL)
                return existing, False
            row = generation_rows.intent_row(
                session,
                request,
                gen_id,
                request_id=request_id,
                engine=require_engines(self.engines).voicebox_engine,
                claim=generation_rows.Claim.of(self.settings, utcnow()),
                size=generation_rows.model_size(self.settings.tts_model),
            )
        self._ensure_event(gen_id, done=False)
        if sink is not None:
            sink.bind(gen_id)
        self._executor.submit(self._run, gen_id, request, time.monotonic(), sink)
        return row, True

    def _ensure_event(self, gen_id: str, *, done: bool) -> threading.Event:
        with self._mutex:
            event = self._done.setdefault(gen_id, threading.Event())
            if done:
                event.set()
                self._done.move_to_end(gen_id)
                self._prune_finished()
        return event

    def _prune_finished(self) -> None:
        """Drop the oldest finished events past the bound (running ones are never dropped). Holds ``_mutex``."""
        excess = len(self._done) - FINISHED_EVENTS_KEPT
        if excess <= 0:
            return
        for gen_id in [g for g, e in self._done.items() if e.is_set()][:excess]:
            del self._done[gen_id]

    # ------------------------------------------------------------------ run (background thread)
    def _run(
        self,
        gen_id: str,
        request: GenerationInput,
        queued_at: float,
        sink: AudioSink | None = None,
    ) -> None:
        started = time.monotonic()
        self._running.add(gen_id)
        outcome: Outcome = (GenerationStatus.FAILED, "the generation did not finish")
        try:
            audio, result = self._synthesize(gen_id, request, sink)
            outcome = store_result(
                self.db, self.blobs, gen_id, request, audio, result, queue_wait=started - queued_at
            )
        except _Cancelled:
            # the app knows only ``failed``: the row says "Generation cancelled"; a stream's end says why
            outcome = (GenerationStatus.CANCELLED, CANCELLED_ERROR)
            self._finish(gen_id, GenerationStatus.FAILED, CANCELLED_ERROR)
        except SinkClosed as exc:
            outcome = (GenerationStatus.CANCELLED, str(exc) or "the stream was closed")
            self._finish(gen_id, GenerationStatus.FAILED, f"{CANCELLED_ERROR}: {outcome[1]}")
        except Exception as exc:  # the row must say why, whatever failed
            log.exception("generation %s failed", gen_id)
            outcome = (GenerationStatus.FAILED, _describe(exc))
            self._finish(gen_id, *outcome)
        finally:
            self._cancel.discard(gen_id)
            self._running.discard(gen_id)
            self._progress.pop(gen_id, None)
            self._release()
            self._ensure_event(gen_id, done=True)
            if sink is not None:
                sink.end(*outcome)

    def _synthesize(
        self, gen_id: str, request: GenerationInput, sink: AudioSink | None
    ) -> tuple[np.ndarray, SynthesisResult]:
        """The audio to store (what a stream sent, or loudness-normalised) and the engine's result; raises
        ``_Cancelled`` when the generation was cancelled before or while it ran."""
        if gen_id in self._cancel:
            raise _Cancelled
        samples = profile_samples(self.db, self.blobs, request.profile_id, _existing_profile)
        result = synthesize(
            require_engines(self.engines),
            samples,
            request,
            on_progress=self._progress_hook(gen_id),
            on_audio=None if sink is None else sink.push,
        )
        if gen_id in self._cancel:
            raise _Cancelled
        if sink is not None:  # the stored file is what the stream sent (before any effects)
            return sink.final_audio(result.audio), result
        return (normalize_loudness(result.audio) if request.normalize else result.audio), result

    def _progress_hook(self, gen_id: str) -> Callable[[int, int], None]:
        """Per chunk: record progress, stop a cancelled generation, renew the lease a third of the way
        through its term (so a live job is never taken for a dead worker's)."""
        last_renewal = [time.monotonic()]

        def on_progress(done: int, total: int) -> None:
            self._progress[gen_id] = (done, total)
            if gen_id in self._cancel:
                raise _Cancelled
            if time.monotonic() - last_renewal[0] > self.settings.job_lease_seconds / 3:
                self._renew_lease(gen_id)
                last_renewal[0] = time.monotonic()

        return on_progress

    def _renew_lease(self, gen_id: str) -> None:
        try:
            with self.db.write() as session:
                claim = generation_rows.Claim.of(self.settings, utcnow())
                generation_rows.renew_lease(session, gen_id, claim)
        except Exception:  # renewal is best effort; the next chunk tries again
            log.warning("could not renew the lease of generation %s", gen_id, exc_info=True)

    def _finish(self, gen_id: str, status: str, error: str) -> None:
        try:
            self.blobs.delete(
                write_retrying(
                    self.db,
                    lambda session: generation_rows.record_end(session, gen_id, status, error),
                )
            )
        except Exception:
            log.exception("could not record the end of generation %s", gen_id)

    # ------------------------------------------------------------------ queries and control
    def get(self, gen_id: str) -> Generation:
        with self.db.read() as session:
            row = session.get(Generation, gen_id)
            if row is None:
                raise NotFoundError(f"generation {gen_id} not found")
            return row

    def progress(self, gen_id: str) -> tuple[int, int] | None:
        return self._progress.get(gen_id)

    def wait(self, gen_id: str, timeout: float) -> Generation:
        """Block until the row is final (durable audio or an error), or ``timeout`` passes."""
        event = self._done.get(gen_id)
        deadline = time.monotonic() + timeout
        if event is not None:
            event.wait(timeout)
        else:  # owned by another worker: poll the shared database
            while time.monotonic() < deadline:
                if self.get(gen_id).status in FINAL:
                    break
                time.sleep(0.5)
        return self.get(gen_id)

    async def wait_async(self, gen_id: str, timeout: float) -> Generation:
        """``wait`` without holding a thread: a request waiting for its audio must not take a slot of the
        pool that cheap requests (profiles, history) are answered on."""
        event = self._done.get(gen_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if event is not None:
                if event.is_set():
                    break
                await asyncio.sleep(0.05)
                continue
            if (await asyncio.to_thread(self.get, gen_id)).status in FINAL:
                break  # owned by another worker: poll the shared database
            await asyncio.sleep(0.5)
        return await asyncio.to_thread(self.get, gen_id)

    def cancel(self, gen_id: str) -> Generation:
        """Stop a generation of this worker: the row becomes ``failed`` with ``CANCELLED_ERROR`` (Voicebox's).

        A queued one is marked at once; a running one stops at its next chunk (waited for, bounded).
        """
        row = self.get(gen_id)
        if row.status in FINAL:
            raise ConflictError(
                f"generation {gen_id} is already {row.status}; only a generation in progress "
                "can be cancelled"
            )
        if row.owner_worker_id != self.settings.worker_id:
            raise ConflictError(
                f"generation {gen_id} runs on worker {row.owner_worker_id}; "
                "only that worker can cancel it"
            )
        self._cancel.add(gen_id)
        if gen_id not in self._running:  # still queued: the synthesis thread will skip it
            self._finish(gen_id, GenerationStatus.FAILED, CANCELLED_ERROR)
        event = self._done.get(gen_id)
        if event is not None and gen_id in self._running:
            event.wait(30)
        return self.get(gen_id)

    def active(self) -> list[Generation]:
        """This worker's generations that are queued or running (``/tasks/active``)."""
        with self._mutex:
            ids = [gen_id for gen_id, event in self._done.items() if not event.is_set()]
        rows = []
        with self.db.read() as session:
            for gen_id in ids:
                row = session.get(Generation, gen_id)
                if row is not None and row.status in ACTIVE:
                    rows.append(row)
        return sorted(rows, key=lambda r: r.created_at)

    def retry(self, gen_id: str) -> Generation:
        """Re-run a failed generation **in the same row** (Voicebox's retry): same id, text, language, seed."""
        require_engines(self.engines)
        previous = self._done.get(gen_id)
        if previous is not None and not previous.wait(self.retry_queue_wait):  # still queued here
            raise ConflictError(
                f"generation {gen_id} was cancelled but has not left this worker's queue yet; "
                "retry in a moment"
            )
        size = generation_rows.model_size(self.settings.tts_model)
        return self._rerun(
            gen_id,
            lambda session, claim: generation_rows.claim_retry(
                session, gen_id, claim=claim, size=size
            ),
        )

    def regenerate(self, gen_id: str) -> Generation:
        """A new take of a completed generation (upstream's regenerate): the same text, language and
        instruct, a fresh seed, synthesised into a new version that becomes the default. Until it completes
        the row is ``generating`` and keeps its current audio; if the take fails it is ``completed`` again."""
        require_engines(self.engines)
        return self._rerun(
            gen_id, lambda session, claim: generation_rows.claim_take(session, gen_id, claim=claim)
        )

    def _rerun(
        self,
        gen_id: str,
        claim_row: Callable[[Session, generation_rows.Claim], tuple[Generation, GenerationInput]],
    ) -> Generation:
        """Run an existing row again: a queue slot like a new generation (429 when full), the row claimed
        in one write unit (run again when it lost a race, as a new generation's is: the claim reads
        everything from its session), a new completion event (waiters wait for this run), the synthesis
        queued."""
        self._reserve()
        try:
            row, request = write_retrying(
                self.db,
                lambda session: claim_row(
                    session, generation_rows.Claim.of(self.settings, utcnow())
                ),
            )
            with self._mutex:
                self._done[gen_id] = threading.Event()
            self._executor.submit(self._run, gen_id, request, time.monotonic())
        except BaseException:
            self._release()
            raise
        return row

    def clear_failed(self) -> int:
        """Delete every failed (and legacy cancelled) row; returns how many (``DELETE /history/failed``)."""
        paths = write_retrying(self.db, generation_rows.delete_failed)
        for path in paths:
            self.blobs.delete(path)
        return len(paths)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _checked_id(value: str) -> str:
    """A caller-chosen generation id must be a UUID (it names files on the volume)."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValidationError(
            f"X-Generation-Id {value[:64]!r} is not a UUID; leave it out to let the server choose"
        ) from None


def _describe(exc: Exception) -> str:
    fault = volume_fault(exc)  # a full or read-only volume is said so, without the file's path
    message = str(fault or exc) or type(exc).__name__
    return message[:2000]


def _existing_profile(session: Session, profile_id: str) -> Profile:
    """The profile a queued generation clones (it had samples when the intent row was published)."""
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFoundError(f"profile {profile_id} was deleted")
    return profile
