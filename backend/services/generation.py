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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.errors import WriteConflictError, volume_fault
from backend.db.interface import conflict_pause
from backend.db.models import Generation, Profile, new_id, utcnow
from backend.services.common import write_retrying
from backend.services.errors import BusyError, ConflictError, NotFoundError, ValidationError
from backend.services.versions import add_version, next_label
from backend.statuses import ACTIVE, CANCELLED_ERROR, FINAL, RETRYABLE, GenerationStatus
from backend.storage import effects as fx
from backend.storage.audio import encode_audio, normalize_loudness

if TYPE_CHECKING:
    from backend.engines.manager import AudioPiece
    from backend.services.container import Services

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class GenerationInput:
    profile_id: str
    text: str
    language: str = "en"
    seed: int | None = None
    instruct: str | None = None
    model_size: str | None = None
    max_chunk_chars: int = 800
    crossfade_ms: int = 50
    normalize: bool = True
    request_id: str | None = None
    #: the new row's id when the caller picks it (the bridge does, to answer before the job runs)
    generation_id: str | None = None
    source: str = (
        "manual"  # Voicebox's field: where the request came from (``openai`` for /v1/audio/speech)
    )
    #: the effects for this generation (checked); None: the profile's chain, if it has one
    effects_chain: list[dict[str, Any]] | None = None
    #: a new take of a completed generation (``/generate/{id}/regenerate``): its file's path
    take_path: str | None = None


#: finished generations whose completion event is kept (``wait`` falls back to reading the row)
FINISHED_EVENTS_KEPT = 1000


class _Cancelled(Exception):
    pass


class SinkClosed(Exception):
    """Raised by an ``AudioSink`` whose reader is gone (disconnected, or stopped reading): the generation
    stops after the chunk in progress and is recorded as cancelled with this message."""


class AudioSink(Protocol):
    """Where a streamed generation's audio goes as it is made (``backend/services/streaming.py``)."""

    def bind(self, generation_id: str) -> None:
        """The generation this sink now belongs to (before synthesis starts)."""
        ...

    def push(self, piece: AudioPiece) -> None:
        """Audio that is final now; may block while the reader catches up, or raise ``SinkClosed``."""
        ...

    def final_audio(self, audio: np.ndarray) -> np.ndarray:
        """What is stored for the whole generation: the samples the sink sent, in one array."""
        ...

    def end(self, status: str, error: str | None) -> None:
        """The generation is over (``completed`` once its audio and row are durable, else ``failed`` or
        ``cancelled``)."""
        ...


class GenerationService:
    #: seconds a retry waits for a cancelled run of the same row to leave the queue (it must not overlap)
    retry_queue_wait = 5.0

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
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
        if self.services.engines is None:
            raise ConflictError("no TTS engine is configured on this worker")
        if not request.text.strip():
            raise ValidationError("text is empty")
        if request.effects_chain is not None:
            fx.validate_chain(request.effects_chain)
        request_id = (request.request_id or "").strip()
        # a retried RunPod job answers its first attempt, even when the queue is full
        if request_id:
            with self.services.db.read() as session:
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
        retries = self.services.db.conflict_retries
        for attempt in range(retries + 1):
            try:
                return self._start(request, sink)
            except WriteConflictError:
                if attempt >= retries:
                    raise
                conflict_pause(attempt)
        raise AssertionError("unreachable")

    def _start(
        self, request: GenerationInput, sink: AudioSink | None = None
    ) -> tuple[Generation, bool]:
        """The intent row and the queued synthesis; ``False`` when a retried request answered instead."""
        now = utcnow()
        gen_id = _checked_id(request.generation_id) if request.generation_id else new_id()
        request_id = (request.request_id or "").strip() or None  # an empty header is no id
        with self.services.db.write() as session:
            if request.generation_id:
                chosen = session.get(Generation, gen_id)
                if chosen is not None:  # the same request delivered twice: answer with the first
                    self._ensure_event(chosen.id, done=chosen.status in FINAL)
                    return chosen, False
            if request_id:
                existing = session.scalar(
                    select(Generation).where(Generation.request_id == request_id)
                )
                if existing is not None:  # a retried RunPod job: answer with the first attempt
                    self._ensure_event(existing.id, done=existing.status in FINAL)
                    return existing, False
            profile = session.get(Profile, request.profile_id)
            if profile is None:
                raise NotFoundError(f"profile {request.profile_id} not found")
            if not profile.samples:
                raise ValidationError(
                    f"profile {profile.name!r} has no samples; add one with POST "
                    f"/profiles/{profile.id}/samples before generating"
                )
            row = Generation(
                id=gen_id,
                profile_id=profile.id,
                profile_name=profile.name,
                text=request.text,
                language=request.language,
                seed=request.seed,
                instruct=request.instruct,
                engine=self.services.require_engines().voicebox_engine,
                model_size=self._model_size(),
                status=GenerationStatus.GENERATING,
                source=request.source,
                audio_path=f"generations/{now:%Y-%m}/{gen_id}.wav",
                owner_worker_id=self.settings.worker_id,
                lease_expires_at=now + timedelta(seconds=self.settings.job_lease_seconds),
                request_id=request_id,
                created_at=now,
            )
            session.add(row)
        self._ensure_event(gen_id, done=False)
        if sink is not None:
            sink.bind(gen_id)
        self._executor.submit(self._run, gen_id, request, time.monotonic(), sink)
        return row, True

    def _model_size(self) -> str | None:
        repo = self.settings.tts_model
        for size in ("1.7B", "0.6B"):
            if size in repo:
                return size
        return None

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
        outcome: tuple[str, str | None] = (GenerationStatus.FAILED, "the generation did not finish")
        try:
            if gen_id in self._cancel:
                raise _Cancelled
            samples = self._profile_samples(request.profile_id)
            last_renewal = [time.monotonic()]

            def on_progress(done: int, total: int) -> None:
                self._progress[gen_id] = (done, total)
                if gen_id in self._cancel:
                    raise _Cancelled
                if time.monotonic() - last_renewal[0] > self.settings.job_lease_seconds / 3:
                    self._renew_lease(gen_id)
                    last_renewal[0] = time.monotonic()

            result = self.services.require_engines().synthesize_detailed(
                samples,
                request.text,
                language=request.language,
                seed=request.seed,
                instruct=request.instruct,
                max_chunk_chars=request.max_chunk_chars,
                crossfade_ms=request.crossfade_ms,
                on_progress=on_progress,
                on_audio=None if sink is None else sink.push,
            )
            if gen_id in self._cancel:
                raise _Cancelled
            if sink is not None:  # the stored file is what the stream sent (before any effects)
                audio = sink.final_audio(result.audio)
            else:
                audio = normalize_loudness(result.audio) if request.normalize else result.audio
            with self.services.db.read() as session:
                row = session.get(Generation, gen_id)
                rel = row.audio_path if row else None
                chain = request.effects_chain
                if chain is None and row is not None and row.profile_id and not request.take_path:
                    profile = session.get(Profile, row.profile_id)
                    chain = fx.parse_stored(profile.effects_chain) if profile else None
            if rel is None:
                outcome = (GenerationStatus.CANCELLED, "deleted while generating")
                return  # deleted while generating
            if request.take_path:
                rel = request.take_path
            # with effects, the clean original is kept as its own version (upstream does the same)
            chain = fx.validate_chain(chain) if fx.is_active(chain) else None
            clean = None
            if chain:
                clean = self.services.blobs.write_bytes(
                    rel.removesuffix(".wav") + "-clean.wav",
                    encode_audio(audio, result.sample_rate, "wav"),
                )
                audio = fx.apply_to_array(audio, result.sample_rate, chain)
            stored = self.services.blobs.write_bytes(
                rel, encode_audio(audio, result.sample_rate, "wav")
            )
            written = [b.rel_path for b in (clean, stored) if b is not None]

            def complete(session: Session) -> bool:
                row = session.get(Generation, gen_id)
                if row is None or row.status != GenerationStatus.GENERATING:
                    return False  # deleted or cancelled meanwhile
                label = next_label(row, "take") if request.take_path else "original"
                source = None
                if clean is not None:
                    source = add_version(
                        session, row, clean, label=label, duration=result.duration, default=False
                    ).id
                    label = next_label(row, "take") if request.take_path else "effects"
                add_version(
                    session,
                    row,
                    stored,
                    label=label,
                    duration=result.duration,
                    default=True,
                    effects_chain=chain,
                    source_version_id=source,
                    seed=request.seed if request.take_path else None,
                )
                row.status = GenerationStatus.COMPLETED
                row.error = None
                row.duration = result.duration
                row.sha256 = stored.sha256
                row.size_bytes = stored.size
                row.queue_wait_seconds = started - queued_at
                row.model_load_seconds = result.load_seconds
                row.synthesis_seconds = result.synthesis_seconds
                row.rtf = result.rtf
                row.completed_at = utcnow()
                row.lease_expires_at = None
                return True

            # the audio is durable now: a lost fence must not lose the row's completion
            if not write_retrying(self.services.db, complete):
                for path in written:
                    self.services.blobs.delete(path)
                outcome = (GenerationStatus.CANCELLED, "deleted or cancelled while generating")
            else:
                outcome = (GenerationStatus.COMPLETED, None)
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

    def _profile_samples(self, profile_id: str) -> list[tuple[bytes, str]]:
        with self.services.db.read() as session:
            profile = session.get(Profile, profile_id)
            if profile is None:
                raise NotFoundError(f"profile {profile_id} was deleted")
            pairs = [(s.audio_path, s.reference_text) for s in profile.samples]
        return [(self.services.blobs.read_bytes(path), text) for path, text in pairs]

    def _renew_lease(self, gen_id: str) -> None:
        try:
            with self.services.db.write() as session:
                row = session.get(Generation, gen_id)
                if row is not None and row.status == GenerationStatus.GENERATING:
                    row.lease_expires_at = utcnow() + timedelta(
                        seconds=self.settings.job_lease_seconds
                    )
        except Exception:  # renewal is best effort; the next chunk tries again
            log.warning("could not renew the lease of generation %s", gen_id, exc_info=True)

    def _finish(self, gen_id: str, status: str, error: str) -> None:
        def mark(session: Session) -> str | None:
            row = session.get(Generation, gen_id)
            if row is None or row.status != GenerationStatus.GENERATING:
                return None
            row.lease_expires_at = None
            if row.versions:  # a failed new take: the generation keeps its versions and audio
                row.status = GenerationStatus.COMPLETED
                row.error = f"the new take failed: {error}"
                return None
            row.status = status
            row.error = error
            rel, row.audio_path = row.audio_path, None
            return rel

        try:
            self.services.blobs.delete(write_retrying(self.services.db, mark))
        except Exception:
            log.exception("could not record the end of generation %s", gen_id)

    # ------------------------------------------------------------------ queries and control
    def get(self, gen_id: str) -> Generation:
        with self.services.db.read() as session:
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
        with self.services.db.read() as session:
            for gen_id in ids:
                row = session.get(Generation, gen_id)
                if row is not None and row.status in ACTIVE:
                    rows.append(row)
        return sorted(rows, key=lambda r: r.created_at)

    def retry(self, gen_id: str) -> Generation:
        """Re-run a failed generation **in the same row** (Voicebox's retry): same id, text, language, seed."""
        now = utcnow()

        def reset(session: Session) -> Generation:
            row = session.get(Generation, gen_id)
            if row is None:
                raise NotFoundError(f"generation {gen_id} not found")
            if row.status not in RETRYABLE:
                raise ConflictError(
                    f"generation {gen_id} is {row.status}; only failed generations can be retried"
                )
            if row.profile_id is None:
                raise ConflictError(
                    "the profile of this generation was deleted; it cannot be retried"
                )
            profile = session.get(Profile, row.profile_id)
            if profile is None or not profile.samples:
                raise ValidationError(
                    f"profile {row.profile_name!r} has no samples; add one before retrying"
                )
            row.status = GenerationStatus.GENERATING
            row.error = None
            row.duration = None
            row.sha256 = None
            row.size_bytes = None
            row.completed_at = None
            row.audio_path = f"generations/{now:%Y-%m}/{gen_id}-{new_id()[:8]}.wav"
            row.owner_worker_id = self.settings.worker_id
            row.lease_expires_at = now + timedelta(seconds=self.settings.job_lease_seconds)
            row.model_size = self._model_size()
            return row

        if self.services.engines is None:
            raise ConflictError("no TTS engine is configured on this worker")
        previous = self._done.get(gen_id)
        if previous is not None and not previous.wait(self.retry_queue_wait):  # still queued here
            raise ConflictError(
                f"generation {gen_id} was cancelled but has not left this worker's queue yet; "
                "retry in a moment"
            )
        self._reserve()  # a re-run takes a queue slot like a new generation (429 when full)
        try:
            with self.services.db.write() as session:
                row = reset(session)
                request = GenerationInput(
                    profile_id=row.profile_id or "",
                    text=row.text,
                    language=row.language,
                    seed=row.seed,
                    instruct=row.instruct,
                    source=row.source,
                )
            with self._mutex:
                self._done[gen_id] = threading.Event()  # a new run: waiters wait for this one
            self._executor.submit(self._run, gen_id, request, time.monotonic())
        except BaseException:
            self._release()
            raise
        return row

    def regenerate(self, gen_id: str) -> Generation:
        """A new take of a completed generation (upstream's regenerate): the same text, language and
        instruct, a fresh seed, synthesised into a new version that becomes the default. Until it completes
        the row is ``generating`` and keeps its current audio; if the take fails it is ``completed`` again."""
        if self.services.engines is None:
            raise ConflictError("no TTS engine is configured on this worker")
        now = utcnow()
        take_path = f"generations/{now:%Y-%m}/{gen_id}-take-{new_id()[:8]}.wav"
        self._reserve()
        try:
            with self.services.db.write() as session:
                row = session.get(Generation, gen_id)
                if row is None:
                    raise NotFoundError(f"generation {gen_id} not found")
                if row.status != GenerationStatus.COMPLETED or not row.versions:
                    raise ValidationError(
                        f"generation {gen_id} is {row.status}; only a completed generation can be "
                        "regenerated (a failed one is retried: POST /generate/{id}/retry)"
                    )
                if row.profile_id is None:
                    raise ConflictError(
                        "the profile of this generation was deleted; it cannot be regenerated"
                    )
                row.status = GenerationStatus.GENERATING
                row.error = None
                row.owner_worker_id = self.settings.worker_id
                row.lease_expires_at = now + timedelta(seconds=self.settings.job_lease_seconds)
                request = GenerationInput(
                    profile_id=row.profile_id,
                    text=row.text,
                    language=row.language,
                    seed=int.from_bytes(uuid.uuid4().bytes[:4], "big") % (2**31 - 1),
                    instruct=row.instruct,
                    source=row.source,
                    effects_chain=[],
                    take_path=take_path,
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

        def unit(session: Session) -> list[str | None]:
            rows = session.scalars(
                select(Generation).where(Generation.status.in_(sorted(RETRYABLE)))
            ).all()
            paths = [row.audio_path for row in rows]
            for row in rows:
                session.delete(row)
            return paths

        paths = write_retrying(self.services.db, unit)
        for path in paths:
            self.services.blobs.delete(path)
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
