"""Library bundles (ours, v1.1): every profile and, optionally, every finished generation in one zip.

``manifest.json`` ``{version, kind: "library", profiles[...], generations[...]}`` with files under
``profiles/<pid>/`` and ``generations/``. Import is idempotent: ids already present are skipped and reported.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.interface import Database
from backend.db.models import Generation, Profile, ProfileSample, utcnow
from backend.services.bundles.generations import add_generation, generation_dict
from backend.services.bundles.manifest import (
    GENERATOR,
    VERSION_V11,
    plan_avatar,
    plan_generation,
    plan_samples_v11,
    profile_fields,
)
from backend.services.bundles.plans import GenerationPlan, ProfilePlan
from backend.services.bundles.profiles import profile_entry
from backend.services.bundles.results import ExportedFile, ImportResult, Progress
from backend.services.bundles.staging import Staging
from backend.services.bundles.writing import removed_on_failure, stored_file
from backend.services.common import is_uuid
from backend.services.errors import ValidationError
from backend.services.zipguard import SafeZip
from backend.statuses import ACTIVE
from backend.storage.blobs import BlobStore


# ---------------------------------------------------------------------------------------------- import
def plan_library(
    zf: SafeZip, manifest: dict[str, Any]
) -> tuple[list[ProfilePlan], list[GenerationPlan]]:
    """The profiles and generations of a library manifest; ids listed twice are refused by name."""
    return _plan_profiles(zf, manifest), _plan_generations(zf, manifest)


def _plan_profiles(zf: SafeZip, manifest: dict[str, Any]) -> list[ProfilePlan]:
    items = manifest.get("profiles")
    if not isinstance(items, list):
        raise ValidationError("manifest.json: 'profiles' must be a list")
    plans: list[ProfilePlan] = []
    seen_p: set[str] = set()
    seen_s: set[str] = set()
    for i, item in enumerate(items):
        where = f"manifest.json profiles[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be an object")
        plan = profile_fields(item.get("profile"), where)
        if not plan.id_hint:
            raise ValidationError(f"{where}: a library profile needs its uuid 'id'")
        if plan.id_hint in seen_p:
            raise ValidationError(f"{where}: profile id {plan.id_hint} is listed twice")
        seen_p.add(plan.id_hint)
        plan.samples = plan_samples_v11(zf, item.get("samples", []), where)
        for s in plan.samples:
            if s.id_hint and s.id_hint in seen_s:
                raise ValidationError(f"{where}: sample id {s.id_hint} appears in two profiles")
            if s.id_hint:
                seen_s.add(s.id_hint)
        plan_avatar(zf, item.get("avatar"), plan, where)
        plans.append(plan)
    return plans


def _plan_generations(zf: SafeZip, manifest: dict[str, Any]) -> list[GenerationPlan]:
    gens = manifest.get("generations") or []
    if not isinstance(gens, list):
        raise ValidationError("manifest.json: 'generations' must be a list")
    gen_plans = []
    seen_g: set[str] = set()
    for i, item in enumerate(gens):
        where = f"manifest.json generations[{i}]"
        plan_g = plan_generation(item, where)
        if plan_g.id_hint:
            if plan_g.id_hint in seen_g:
                raise ValidationError(f"{where}: generation id {plan_g.id_hint} is listed twice")
            seen_g.add(plan_g.id_hint)
        entry = item.get("file")
        if entry is not None:
            if not isinstance(entry, str) or not zf.has(entry):
                raise ValidationError(f"{where}: file {entry!r} is not in the bundle")
            plan_g.entry = entry
        pid = item.get("profile_id")
        plan_g.profile_id = pid if is_uuid(pid) else None
        name = item.get("profile_name")
        plan_g.profile_name = name[:100] if isinstance(name, str) else None
        gen_plans.append(plan_g)
    return gen_plans


def add_library_generations(
    session: Session, stage: Staging, gen_plans: list[GenerationPlan], result: ImportResult
) -> None:
    """The library's generations not here yet, counted in ``result`` (created or skipped)."""
    for gp in gen_plans:
        if gp.id_hint and session.get(Generation, gp.id_hint) is not None:
            result.generations_skipped += 1
            continue
        if gp.entry is not None and gp.staged is None:
            result.generations_skipped += 1  # present at planning time, gone since
            continue
        if gp.profile_id and session.get(Profile, gp.profile_id) is None:
            gp.profile_id = None
        add_generation(session, stage, gp, keep_id=True)
        result.generations_created += 1


# ---------------------------------------------------------------------------------------------- export
def export_library(
    db: Database,
    blobs: BlobStore,
    voice_prompt: Callable[[], dict[str, Any]],
    *,
    include_history: bool,
    progress: Progress | None,
) -> ExportedFile:
    """Every profile (and optionally every finished generation) in one v1.1 library bundle."""
    with db.read() as session:
        profiles = list(session.scalars(select(Profile).order_by(Profile.created_at, Profile.id)))
        samples: dict[str, list[ProfileSample]] = {p.id: [] for p in profiles}
        for s in session.scalars(
            select(ProfileSample).order_by(ProfileSample.created_at, ProfileSample.id)
        ):
            samples.setdefault(s.profile_id, []).append(s)
        gens = (
            list(
                session.scalars(
                    select(Generation)
                    .where(Generation.status.not_in(ACTIVE))
                    .order_by(Generation.created_at, Generation.id)
                )
            )
            if include_history
            else []
        )
    total = sum(len(v) for v in samples.values()) + len(gens)
    done = 0
    out = blobs.new_tmp_path(".zip")
    sample_count = 0
    with (
        removed_on_failure(out),
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
    ):
        entries_p = []
        for profile in profiles:
            base = f"profiles/{profile.id}"
            entries = []
            for s in samples.get(profile.id, []):
                path = stored_file(blobs, s.audio_path, f"the audio of sample {s.id}")
                arc = f"{base}/samples/{s.id}.wav"
                zf.write(path, arc, compress_type=zipfile.ZIP_STORED)
                entries.append((arc, path, s))
                done += 1
                sample_count += 1
                if progress:
                    progress("export", done, total)
            avatar = blobs.path(profile.avatar_path) if profile.avatar_path else None
            avatar_name = None
            if avatar is not None and avatar.is_file():
                avatar_name = f"{base}/avatar{avatar.suffix}"
                zf.write(avatar, avatar_name)
            else:
                avatar = None
            entries_p.append(profile_entry(profile, entries, avatar, avatar_name))
        gen_items = []
        for gen in gens:
            audio = None
            gen_arc: str | None = None
            if gen.audio_path and blobs.exists(gen.audio_path):
                audio = blobs.path(gen.audio_path)
                gen_arc = f"generations/{gen.id}{audio.suffix}"
                zf.write(audio, gen_arc, compress_type=zipfile.ZIP_STORED)
            gen_items.append(generation_dict(gen, audio, gen_arc))
            done += 1
            if progress:
                progress("export", done, total)
        manifest = {
            "version": VERSION_V11,
            "kind": "library",
            "include_history": include_history,
            "profiles": entries_p,
            "generations": gen_items,
            "voice_prompt": voice_prompt(),
            "generator": GENERATOR,
            "exported_at": utcnow().isoformat(),
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return ExportedFile(
        out, f"voicebox-library-{stamp}.zip", len(profiles), sample_count, len(gens)
    )
