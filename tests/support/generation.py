"""Helpers for generation tests: a profile with one real sample written straight to the volume."""

from __future__ import annotations

from backend.db.models import Profile, ProfileSample
from backend.services.container import Services
from tests.support.audio import wav_bytes


def add_profile_with_sample(
    services: Services, name: str = "Narrator", *, freq: float = 220.0
) -> str:
    with services.db.write() as session:
        profile = Profile(name=name, language="en")
        session.add(profile)
        session.flush()
        rel = f"profiles/{profile.id}/sample-1.wav"
        stored = services.blobs.write_bytes(rel, wav_bytes(freq=freq))
        session.add(
            ProfileSample(
                profile_id=profile.id,
                audio_path=rel,
                reference_text="hello there",
                sha256=stored.sha256,
                size_bytes=stored.size,
            )
        )
        return profile.id
