"""Generation bundles: a staged plan becomes a history row and its versions; a generation becomes a zip.

Generation v1.0 (Voicebox) and v1.1: ``manifest.json`` ``{version, generation{...}, profile{...}, versions[...]}``
and ``audio/<file>``. Every version's audio travels, byte-identical; a bundle without ``versions[]`` becomes one
``original`` version.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.db.interface import Database
from backend.db.models import Generation, GenerationVersion, Profile, utcnow
from backend.services.bundles.manifest import GENERATOR, VERSION_V11, audio_ext
from backend.services.bundles.plans import GenerationPlan, VersionPlan
from backend.services.bundles.results import ExportedFile
from backend.services.bundles.staging import Staging
from backend.services.bundles.writing import removed_on_failure, stored_file
from backend.services.common import download_name
from backend.services.errors import NotFoundError
from backend.statuses import GenerationStatus
from backend.storage import effects
from backend.storage.blobs import BlobStore, StoredBlob, sha256_file


def add_generation(
    session: Session, stage: Staging, plan: GenerationPlan, *, keep_id: bool
) -> Generation:
    """A history row from a staged plan (its id kept when free), with its versions when it is completed."""
    gid = (
        plan.id_hint
        if (keep_id and plan.id_hint and session.get(Generation, plan.id_hint) is None)
        else None
    )
    gid = gid or str(uuid.uuid4())
    rel = None
    blob = None
    if plan.staged is not None:
        rel = f"generations/{gid}.{audio_ext(plan.entry or '.wav')}"
        blob = stage.move(rel, plan.staged)
    created = plan.created_at or utcnow()
    # a completed generation whose audio the bundle lacks is history of a failure, not a playable take
    audio_missing = rel is None and plan.status == GenerationStatus.COMPLETED
    row = Generation(
        id=gid,
        profile_id=plan.profile_id,
        profile_name=plan.profile_name,
        text=plan.text,
        language=plan.language,
        audio_path=rel,
        duration=plan.duration,
        seed=plan.seed,
        instruct=plan.instruct,
        engine=plan.engine or "qwen",
        model_size=plan.model_size,
        status=GenerationStatus.FAILED if audio_missing else plan.status,
        error="imported without audio" if audio_missing else plan.error,
        is_favorited=plan.is_favorited,
        source=plan.source or "import",
        sha256=blob.sha256 if blob else None,
        size_bytes=blob.size if blob else None,
        created_at=created,
        completed_at=plan.completed_at or created,
    )
    session.add(row)
    session.flush()
    if blob is not None and row.status == GenerationStatus.COMPLETED:
        _add_versions(session, stage, row, plan, blob)
    return row


def _add_versions(
    session: Session, stage: Staging, row: Generation, plan: GenerationPlan, blob: StoredBlob
) -> None:
    """The bundle's versions (ids kept when free, sources remapped); none listed: one ``original``."""
    metas = plan.versions or [
        VersionPlan(entry=plan.entry or "", label="original", is_default=True)
    ]
    ids: dict[str, str] = {}  # the bundle's version id -> the id here
    chosen: list[str] = []
    for meta in metas:
        hint = meta.id_hint
        free = hint and hint not in ids and session.get(GenerationVersion, hint) is None
        version_id = hint if hint and free else str(uuid.uuid4())
        if hint and hint not in ids:
            ids[hint] = version_id
        chosen.append(version_id)
    for meta, version_id in zip(metas, chosen, strict=True):
        if meta.entry == plan.entry or meta.staged is None:
            stored, duration = blob, plan.duration
        else:
            rel = f"generations/{row.id}-{version_id[:8]}.{audio_ext(meta.entry)}"
            stored, duration = stage.move(rel, meta.staged), meta.duration
        session.add(
            GenerationVersion(
                id=version_id,
                generation_id=row.id,
                label=meta.label,
                audio_path=stored.rel_path,
                effects_chain=effects.dump(meta.effects_chain),
                source_version_id=ids.get(meta.source_version_id or ""),
                is_default=meta.is_default,
                duration=duration,
                sha256=stored.sha256,
                size_bytes=stored.size,
                created_at=row.created_at,
            )
        )
    session.flush()


def export_generation(db: Database, blobs: BlobStore, generation_id: str) -> ExportedFile:
    """Voicebox's generation zip (v1.0 layout) with our extra fields, marked v1.1."""
    with db.read() as session:
        gen = session.get(Generation, generation_id)
        if gen is None:
            raise NotFoundError(f"generation {generation_id!r} not found")
        profile = session.get(Profile, gen.profile_id) if gen.profile_id else None
    audio = (
        stored_file(blobs, gen.audio_path, f"the audio of generation {generation_id}")
        if gen.audio_path
        else None
    )
    out = blobs.new_tmp_path(".zip")
    others = [
        (v, stored_file(blobs, v.audio_path, f"the audio of version {v.id}"))
        for v in gen.versions
        if v.audio_path != gen.audio_path
    ]
    with removed_on_failure(out), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        versions = []
        written = {audio.name} if audio is not None else set()
        default = next((v for v in gen.versions if v.audio_path == gen.audio_path), None)
        if audio is not None:
            versions.append(
                {
                    "id": default.id if default else gen.id,
                    "label": default.label if default else "original",
                    "is_default": True,
                    "effects_chain": effects.parse_stored(default.effects_chain)
                    if default
                    else None,
                    "source_version_id": default.source_version_id if default else None,
                    "filename": audio.name,
                    "sha256": gen.sha256 or sha256_file(audio),
                }
            )
        for version, path in others:
            name = path.name if path.name not in written else f"{version.id}{path.suffix}"
            written.add(name)
            versions.append(
                {
                    "id": version.id,
                    "label": version.label,
                    "is_default": False,
                    "effects_chain": effects.parse_stored(version.effects_chain),
                    "source_version_id": version.source_version_id,
                    "filename": name,
                    "sha256": version.sha256 or sha256_file(path),
                }
            )
            zf.write(path, f"audio/{name}", compress_type=zipfile.ZIP_STORED)
        manifest = {
            "version": VERSION_V11,
            "kind": "generation",
            "generation": generation_dict(gen, audio),
            "profile": {
                "id": gen.profile_id,
                "name": profile.name if profile else gen.profile_name,
                "description": profile.description if profile else None,
                "language": profile.language if profile else gen.language,
            },
            "versions": versions,
            "generator": GENERATOR,
            "exported_at": utcnow().isoformat(),
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        if audio is not None:
            zf.write(audio, f"audio/{audio.name}", compress_type=zipfile.ZIP_STORED)
    filename = f"generation-{download_name(gen.text, 'generation', '')}.voicebox.zip"
    return ExportedFile(out, filename, generations=1)


def generation_dict(
    gen: Generation, audio: Path | None, arcname: str | None = None
) -> dict[str, Any]:
    """A generation's manifest fields (a generation bundle's ``generation``, an item of a library's)."""
    data: dict[str, Any] = {
        "id": gen.id,
        "text": gen.text,
        "language": gen.language,
        "duration": gen.duration,
        "seed": gen.seed,
        "instruct": gen.instruct,
        "created_at": gen.created_at.isoformat() if gen.created_at else None,
        "engine": gen.engine,
        "model_size": gen.model_size,
        "status": gen.status,
        "error": gen.error,
        "is_favorited": bool(gen.is_favorited),
        "source": gen.source,
        "completed_at": gen.completed_at.isoformat() if gen.completed_at else None,
        "profile_id": gen.profile_id,
        "profile_name": gen.profile_name,
        "sha256": (gen.sha256 or sha256_file(audio)) if audio is not None else None,
    }
    if arcname is not None:
        data["file"] = arcname
    return data
