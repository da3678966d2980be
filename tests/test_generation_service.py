"""Durable generation jobs with the fake engine: intent row → durable audio → complete; recovery by lease."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import soundfile
from sqlalchemy import select

from backend.db.models import Generation, utcnow
from backend.engines.manager import EngineManager
from backend.services.container import Services
from backend.services.errors import NotFoundError, ValidationError
from backend.services.generation import GenerationInput, GenerationService
from tests.support.generation import add_profile_with_sample
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.fsck import fsck_volume


@pytest.fixture
def services(make_settings):
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    svc = Services.create(settings, engines=EngineManager(settings))
    yield svc
    svc.close()


def own_generation_service(services: Services) -> GenerationService:
    """A generation service of its own (own queue and thread) on the fixture's volume and engines."""
    return GenerationService(services.settings, services.db, services.blobs, services.engines)


def test_generate_writes_durable_audio_and_completes_row(services) -> None:
    gens = own_generation_service(services)
    profile_id = add_profile_with_sample(services)
    row = gens.start(GenerationInput(profile_id=profile_id, text="Hello world. Second sentence."))
    assert row.status == "generating"
    assert row.owner_worker_id == services.settings.worker_id
    assert row.lease_expires_at is not None
    done = gens.wait(row.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.lease_expires_at is None
    data = services.blobs.read_bytes(done.audio_path)
    audio, rate = soundfile.read(io.BytesIO(data))
    assert rate == 24000 and audio.ndim == 1 and len(audio) / rate == pytest.approx(done.duration)
    assert done.size_bytes == len(data) and len(done.sha256) == 64
    assert done.synthesis_seconds is not None and done.rtf is not None
    assert not done.audio_path.startswith("/")


def test_same_seed_same_bytes(services) -> None:
    gens = own_generation_service(services)
    profile_id = add_profile_with_sample(services)
    req = GenerationInput(profile_id=profile_id, text="Deterministic please.", seed=42)
    a = gens.wait(gens.start(req).id, 60)
    b = gens.wait(gens.start(req).id, 60)
    assert a.sha256 == b.sha256
    c = gens.wait(gens.start(GenerationInput(profile_id, "Deterministic please.", seed=7)).id, 60)
    assert c.sha256 != a.sha256


def test_request_id_makes_retries_idempotent(services) -> None:
    gens = own_generation_service(services)
    profile_id = add_profile_with_sample(services)
    req = GenerationInput(profile_id=profile_id, text="Once only.", request_id="job-123")
    first = gens.wait(gens.start(req).id, 60)
    second = gens.start(req)
    assert second.id == first.id
    with services.db.read() as session:
        assert len(session.scalars(select(Generation)).all()) == 1


def test_bad_requests(services) -> None:
    gens = own_generation_service(services)
    with pytest.raises(NotFoundError):
        gens.start(GenerationInput(profile_id="nope", text="hi"))
    from backend.db.models import Profile

    with services.db.write() as session:
        session.add(Profile(id="empty", name="Empty"))
    with pytest.raises(ValidationError, match="no samples"):
        gens.start(GenerationInput(profile_id="empty", text="hi"))


def _orphan_intent(services, *, expired: bool, with_file: bool) -> str:
    """The row a worker killed mid-generation leaves behind."""
    profile_id = add_profile_with_sample(services, name=f"p-{expired}-{with_file}")
    now = utcnow()
    with services.db.write() as session:
        row = Generation(
            profile_id=profile_id,
            profile_name="x",
            text="t",
            status="generating",
            owner_worker_id="dead-worker",
            audio_path=f"generations/{now:%Y-%m}/orphan-{expired}-{with_file}.wav",
            lease_expires_at=now + timedelta(seconds=-5 if expired else 600),
        )
        session.add(row)
        session.flush()
        gen_id, rel = row.id, row.audio_path
    if with_file:
        from tests.support.audio import wav_bytes

        services.blobs.write_bytes(rel, wav_bytes(1.0))
    return gen_id


def test_fsck_recovers_only_expired_jobs(services) -> None:
    live = _orphan_intent(services, expired=False, with_file=False)
    dead_no_file = _orphan_intent(services, expired=True, with_file=False)
    dead_with_file = _orphan_intent(services, expired=True, with_file=True)
    report = fsck_volume(services.settings, services.db, repair=True)
    assert report.expired_failed == [dead_no_file]
    assert report.expired_completed == [dead_with_file]
    with services.db.read() as session:
        assert session.get(Generation, live).status == "generating"  # a live peer's job: untouched
        assert session.get(Generation, dead_no_file).status == "failed"
        done = session.get(Generation, dead_with_file)
        assert done.status == "completed" and done.sha256 and done.duration == pytest.approx(1.0)


def test_completion_survives_a_lost_fence(services, monkeypatch) -> None:
    """The audio is durable before the row completes: one failed publish must not leave it 'generating'."""
    from backend.db.errors import WriteConflictError

    gens = own_generation_service(services)
    profile_id = add_profile_with_sample(services)
    real_fence = services.db._fence
    calls = {"n": 0}

    def flaky_fence(held, base):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # 1: the intent row; 2: the first try at completing it
            raise WriteConflictError("simulated: a peer published meanwhile")
        return real_fence(held, base)

    monkeypatch.setattr(services.db, "_fence", flaky_fence)
    done = gens.wait(gens.start(GenerationInput(profile_id, "Complete me.")).id, 60)
    assert calls["n"] >= 3
    assert done.status == "completed" and services.blobs.exists(done.audio_path)


@pytest.mark.parametrize("rerun", ["retry", "regenerate"])
def test_a_rerun_claim_that_lost_a_race_runs_again(services, monkeypatch, rerun: str) -> None:
    """Retry and regenerate claim their row like a new generation: a lost race (a peer published, or a
    serialization failure on PostgreSQL) runs the claim again instead of answering 503."""
    from backend.db.errors import WriteConflictError

    gens = own_generation_service(services)
    profile_id = add_profile_with_sample(services)
    first = gens.wait(gens.start(GenerationInput(profile_id, "Once more.")).id, 60)
    assert first.status == "completed"
    if rerun == "retry":
        with services.db.write() as session:
            session.get(Generation, first.id).status = "failed"
    real_fence = services.db._fence
    calls = {"n": 0}

    def flaky_fence(held, base):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:  # the claim's first try
            raise WriteConflictError("simulated: a peer published meanwhile")
        return real_fence(held, base)

    monkeypatch.setattr(services.db, "_fence", flaky_fence)
    row = getattr(gens, rerun)(first.id)
    assert row.id == first.id and calls["n"] >= 2
    done = gens.wait(first.id, 60)
    assert done.status == "completed" and services.blobs.exists(done.audio_path)


def test_finished_events_are_bounded(services, monkeypatch) -> None:
    """One completion event per generation for the worker's life was unbounded growth: finished ones are
    pruned past the bound, and ``wait`` on a pruned one still answers from the row."""
    import backend.services.generation as generation

    monkeypatch.setattr(generation, "FINISHED_EVENTS_KEPT", 3)
    gens = own_generation_service(services)
    profile_id = add_profile_with_sample(services)
    ids = []
    for i in range(6):
        row = gens.start(GenerationInput(profile_id=profile_id, text=f"Number {i}.", seed=i))
        assert gens.wait(row.id, 60).status == "completed"
        ids.append(row.id)
    assert list(gens._done) == ids[-3:]
    assert gens.wait(ids[0], timeout=5).status == "completed"  # pruned: read from the row
    # a running generation's event is never pruned, however many finish meanwhile
    gens._ensure_event("running", done=False)
    for i in range(4):
        gens._ensure_event(f"finished-{i}", done=True)
    assert "running" in gens._done and len(gens._done) <= 4
