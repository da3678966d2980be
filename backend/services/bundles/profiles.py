"""Profile bundles: a staged plan becomes profile and sample rows; a profile becomes a v1.0 or v1.1 zip.

Profile v1.0 is Voicebox's: ``manifest.json`` ``{version, profile{name, description, language}, has_avatar}``,
``samples.json`` ``{"<file>": reference_text}``, ``samples/<file>``, optional ``avatar.<ext>``. v1.1 (ours) has the
same files (so Voicebox, which only checks that ``version`` exists, still imports it) plus, in the manifest, every
profile field, per-sample id/sha256/duration/created time, the avatar's sha256, and the engine/model the voice
prompts were made for.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.interface import Database
from backend.db.models import Profile, ProfileSample, utcnow
from backend.services.bundles.manifest import GENERATOR, VERSION_V10, VERSION_V11
from backend.services.bundles.plans import ProfilePlan, SamplePlan
from backend.services.bundles.results import ExportedFile
from backend.services.bundles.staging import Staging
from backend.services.bundles.writing import removed_on_failure, stored_file
from backend.services.common import download_name, unique_profile_name
from backend.services.errors import NotFoundError, ValidationError
from backend.storage import effects
from backend.storage.blobs import BlobStore, sha256_file


def add_profile(
    session: Session, stage: Staging, plan: ProfilePlan, *, keep_id: bool
) -> tuple[Profile, str]:
    """Insert a profile from a staged plan (unique name, ids kept when free); returns (row, name)."""
    pid = (
        plan.id_hint
        if (keep_id and plan.id_hint and session.get(Profile, plan.id_hint) is None)
        else None
    )
    pid = pid or str(uuid.uuid4())
    name = unique_profile_name(session, plan.name)
    now = utcnow()
    profile = Profile(id=pid, name=name, description=plan.description)
    profile.language = plan.language
    profile.effects_chain = effects.dump(plan.effects_chain)
    profile.created_at = plan.created_at or now
    profile.updated_at = plan.updated_at or now
    session.add(profile)
    session.flush()
    add_samples(session, stage, profile.id, plan.samples)
    if plan.avatar_staged is not None:
        rel = f"profiles/{pid}/avatar-{uuid.uuid4().hex[:12]}.{plan.avatar_kind}"
        stage.move(rel, plan.avatar_staged)
        profile.avatar_path = rel
    return profile, name


def add_samples(
    session: Session, stage: Staging, profile_id: str, samples: list[SamplePlan]
) -> int:
    """Sample rows for the staged samples (ids kept when free); returns how many were added."""
    base = utcnow()
    added = 0
    for i, sp in enumerate(samples):
        if sp.prepared is None:
            continue
        sid = sp.id_hint if sp.id_hint and session.get(ProfileSample, sp.id_hint) is None else None
        sid = sid or str(uuid.uuid4())
        rel = f"profiles/{profile_id}/{sid}.wav"
        blob = stage.move(rel, sp.prepared.path)
        session.add(
            ProfileSample(
                id=sid,
                profile_id=profile_id,
                audio_path=rel,
                reference_text=sp.reference_text,
                sha256=blob.sha256,
                size_bytes=blob.size,
                duration=sp.prepared.duration,
                created_at=sp.created_at or base + timedelta(microseconds=i),
            )
        )
        session.flush()
        added += 1
    return added


def export_profile(
    db: Database,
    blobs: BlobStore,
    profile_id: str,
    fmt: str,
    voice_prompt: Callable[[], dict[str, Any]],
) -> ExportedFile:
    """A profile bundle in ``voicebox/.tmp``: v1.1 (default) or Voicebox's exact v1.0."""
    if fmt not in (VERSION_V10, VERSION_V11):
        raise ValidationError(f"format {fmt!r} is not supported; use 1.0 (Voicebox) or 1.1")
    profile, samples = _load_profile(db, profile_id)
    sample_files = [
        (s, stored_file(blobs, s.audio_path, f"the audio of sample {s.id}")) for s in samples
    ]
    avatar = blobs.path(profile.avatar_path) if profile.avatar_path else None
    if avatar is not None and not avatar.is_file():
        avatar = None
    out = blobs.new_tmp_path(".zip")
    with removed_on_failure(out), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        avatar_name = None
        if avatar is not None:
            avatar_name = f"avatar{avatar.suffix}"
            zf.write(avatar, avatar_name)
        manifest: dict[str, Any] = {
            "version": fmt,
            "profile": {
                "name": profile.name,
                "description": profile.description,
                "language": profile.language,
            },
            "has_avatar": avatar is not None,
        }
        samples_json: dict[str, str] = {}
        entries = []
        for sample, path in sample_files:
            name = path.name
            samples_json[name] = sample.reference_text
            entries.append((f"samples/{name}", path, sample))
        if fmt == VERSION_V11:
            manifest = {
                "version": VERSION_V11,
                "kind": "profile",
                **profile_entry(profile, entries, avatar, avatar_name),
                "voice_prompt": voice_prompt(),
                "generator": GENERATOR,
                "exported_at": utcnow().isoformat(),
            }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        for arcname, path, _ in entries:
            zf.write(path, arcname)
        zf.writestr("samples.json", json.dumps(samples_json, indent=2))
    filename = f"profile-{download_name(profile.name, 'profile', '')}.voicebox.zip"
    return ExportedFile(out, filename, profiles=1, samples=len(samples))


def _load_profile(db: Database, profile_id: str) -> tuple[Profile, list[ProfileSample]]:
    with db.read() as session:
        profile = session.get(Profile, profile_id)
        if profile is None:
            raise NotFoundError(f"profile {profile_id!r} not found")
        samples = list(
            session.scalars(
                select(ProfileSample)
                .where(ProfileSample.profile_id == profile_id)
                .order_by(ProfileSample.created_at, ProfileSample.id)
            )
        )
        return profile, samples


def profile_entry(
    profile: Profile,
    entries: list[tuple[str, Path, ProfileSample]],
    avatar: Path | None,
    avatar_name: str | None,
) -> dict[str, Any]:
    """A profile's v1.1 manifest fields (a profile bundle's, or one item of a library's ``profiles``)."""
    return {
        "profile": _profile_dict(profile),
        "has_avatar": avatar is not None,
        "avatar": (
            {
                "file": avatar_name,
                "sha256": sha256_file(avatar),
                "size_bytes": avatar.stat().st_size,
            }
            if avatar is not None
            else None
        ),
        "samples": [_sample_dict(s, arcname, path) for arcname, path, s in entries],
    }


def _profile_dict(profile: Profile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "description": profile.description,
        "language": profile.language,
        "id": profile.id,
        "created_at": profile.created_at.isoformat() if profile.created_at else None,
        "updated_at": profile.updated_at.isoformat() if profile.updated_at else None,
        "effects_chain": effects.parse_stored(profile.effects_chain),
    }


def _sample_dict(sample: ProfileSample, arcname: str, path: Path) -> dict[str, Any]:
    digest = sample.sha256 or sha256_file(path)
    return {
        "id": sample.id,
        "file": arcname,
        "reference_text": sample.reference_text,
        "sha256": digest,
        "size_bytes": sample.size_bytes or path.stat().st_size,
        "duration": sample.duration,
        "created_at": sample.created_at.isoformat() if sample.created_at else None,
    }
