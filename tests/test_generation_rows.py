"""A generation row's transitions (``backend/services/generation_rows.py``) and the lease a running generation
renews as it goes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from backend.config import Settings
from backend.db.models import Generation, utcnow
from backend.engines.manager import EngineManager
from backend.services import generation_rows
from backend.services.container import Services
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.services.synthesis import GenerationInput
from tests.support.generation import add_profile_with_sample
from volume_bootstrap.bootstrap import bootstrap


@pytest.fixture
def services(make_settings: Callable[..., Settings]) -> Iterator[Services]:
    settings = make_settings(VOICEBOX_JOB_LEASE_SECONDS="30")
    bootstrap(settings, run_fsck=False)
    svc = Services.create(settings, engines=EngineManager(settings))
    yield svc
    svc.close()


def _intent(services: Services, seed: int | None = None) -> str:
    profile_id = add_profile_with_sample(services)
    claim = generation_rows.Claim.of(services.settings, utcnow())
    with services.db.write() as session:
        row = generation_rows.intent_row(
            session,
            GenerationInput(profile_id=profile_id, text="Words.", seed=seed),
            "00000000-0000-4000-8000-000000000001",
            request_id="job-1",
            engine="qwen",
            claim=claim,
            size=generation_rows.model_size(services.settings.tts_model),
        )
        return row.id


def test_the_intent_row_is_claimed_by_this_worker(services: Services) -> None:
    before = utcnow()
    gen_id = _intent(services, seed=5)
    with services.db.read() as session:
        row = session.get(Generation, gen_id)
        assert row is not None and row.status == "generating" and row.seed == 5
        assert row.owner_worker_id == services.settings.worker_id
        assert row.lease_expires_at is not None
        assert row.lease_expires_at >= before + timedelta(seconds=29)
        assert row.audio_path == f"generations/{row.created_at:%Y-%m}/{gen_id}.wav"
        request = GenerationInput(profile_id=row.profile_id or "", text="Words.")
        assert generation_rows.answered(session, request, "other-id", "job-1") is row
        assert generation_rows.answered(session, request, "other-id", None) is None


def test_model_size_is_read_from_the_repo_id() -> None:
    assert generation_rows.model_size("Qwen/Qwen3-TTS-12Hz-1.7B-Base") == "1.7B"
    assert generation_rows.model_size("Qwen/Qwen3-TTS-12Hz-0.6B-Base") == "0.6B"
    assert generation_rows.model_size("fake") is None


def test_a_lease_is_renewed_only_while_the_row_runs(services: Services) -> None:
    gen_id = _intent(services)
    later = generation_rows.Claim.of(services.settings, utcnow() + timedelta(minutes=5))
    with services.db.write() as session:
        generation_rows.renew_lease(session, gen_id, later)
    with services.db.read() as session:
        assert session.get(Generation, gen_id).lease_expires_at == later.expires
    with services.db.write() as session:
        assert generation_rows.record_end(session, gen_id, "failed", "broke") is not None
    with services.db.write() as session:
        generation_rows.renew_lease(
            session, gen_id, generation_rows.Claim.of(services.settings, utcnow())
        )
    with services.db.read() as session:
        row = session.get(Generation, gen_id)
        assert row.status == "failed" and row.error == "broke" and row.lease_expires_at is None
        assert row.audio_path is None  # the caller deletes the file record_end handed back


def test_retry_and_take_refuse_rows_they_cannot_run(services: Services) -> None:
    gen_id = _intent(services)
    claim = generation_rows.Claim.of(services.settings, utcnow())
    with services.db.write() as session, pytest.raises(ConflictError, match="only failed"):
        generation_rows.claim_retry(session, gen_id, claim=claim, size=None)
    with services.db.write() as session, pytest.raises(ValidationError, match="only a completed"):
        generation_rows.claim_take(session, gen_id, claim=claim)
    with services.db.write() as session, pytest.raises(NotFoundError):
        generation_rows.claim_retry(session, "missing", claim=claim, size=None)


def test_a_running_generation_renews_its_lease_between_chunks(services: Services) -> None:
    """The per-chunk hook moves the lease on once a third of its term has passed, so a live job is never
    taken for a dead worker's by a peer's fsck."""
    gen_id = _intent(services)
    gens = services.generation
    gens.settings = dataclasses.replace(gens.settings, job_lease_seconds=0.3)
    with services.db.write() as session:  # a lease that has run out
        session.get(Generation, gen_id).lease_expires_at = utcnow() - timedelta(minutes=1)
    hook = gens._progress_hook(gen_id)
    hook(1, 3)  # too soon after the start: nothing written
    with services.db.read() as session:
        assert session.get(Generation, gen_id).lease_expires_at < utcnow()
    time.sleep(0.15)
    hook(2, 3)
    assert gens.progress(gen_id) == (2, 3)
    with services.db.read() as session:
        assert session.get(Generation, gen_id).lease_expires_at > utcnow()
