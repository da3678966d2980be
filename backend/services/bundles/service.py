"""``BundleService``: what routes and the CLI call to import and export bundles.

Imports are atomic: the bundle is vetted (``zipguard``), every entry is staged in ``voicebox/.tmp`` and validated
(audio decoded and checked like an upload), and only then one write unit adds the rows and moves the staged files
into place. Any failure removes the moved and staged files; nothing is left behind. Nothing is ever held whole in
memory: uploads and exports are files, entries are streamed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.interface import Database
from backend.db.models import Generation, Profile, ProfileSample
from backend.engines.base import Engines
from backend.services.bundles import generations, library, profiles
from backend.services.bundles.manifest import (
    VERSION_V11,
    generation_entry,
    plan_generation,
    plan_profile,
    plan_versions,
    read_manifest,
)
from backend.services.bundles.plans import GenerationPlan, ProfilePlan
from backend.services.bundles.results import (
    ExportedFile,
    GenerationImport,
    ImportResult,
    Progress,
    VolumeExport,
)
from backend.services.bundles.staging import (
    Staging,
    commit,
    stage_avatar,
    stage_generation,
    stage_sample,
)
from backend.services.common import volume_file
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.services.profiles import ProfileInfo
from backend.services.zipguard import SafeZip, ZipLimits
from backend.storage.blobs import BlobStore


class BundleService:
    """Profile, generation and library bundles on this volume's database and blob store.

    ``engines`` only names the engine the voice prompts were made for (a manifest's ``voice_prompt``); a
    process without engines (the CLI, an API-only worker) names it from ``VOICEBOX_TTS_MODEL``.
    """

    def __init__(
        self, settings: Settings, db: Database, blobs: BlobStore, engines: Engines | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.engines = engines

    @property
    def limits(self) -> ZipLimits:
        cap = self.settings.max_bundle_bytes
        return ZipLimits(
            max_total_uncompressed=max(10 * cap, 1024**3),
            max_entry_uncompressed=max(cap, self.settings.max_upload_bytes),
        )

    def open_bundle(self, path: Path) -> SafeZip:
        return SafeZip(path, self.limits)

    def detect_kind(self, bundle: Path) -> str:
        """``profile``, ``generation`` or ``library``: what a bundle file holds (vetted first)."""
        with self.open_bundle(bundle) as zf:
            return read_manifest(zf)[2]

    def imports_file(self, name: str) -> Path:
        """A bundle a user placed in ``voicebox/imports/`` (names only; links refused)."""
        path = volume_file(self.settings.imports_dir, name, what="import name")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise NotFoundError(
                f"no file {name!r} in voicebox/imports/ on the volume; upload it there first "
                "(for example with RunPod's S3-compatible API)"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(f"voicebox/imports/{name} is not a regular file")
        return path

    def _prompt_info(self) -> dict[str, Any]:
        model = self.settings.tts_model
        engines = self.engines
        engine = (
            engines.tts_engine_name if engines else ("fake" if model == "fake" else "qwen3-tts")
        )
        return {"engine": engine, "tts_model": model, "sample_rate": 24000}

    def _add_profile(
        self, session: Session, stage: Staging, plan: ProfilePlan, *, keep_id: bool
    ) -> tuple[Profile, str]:
        """Every import adds its profiles here (``profiles.add_profile``): one place to observe or fail it."""
        return profiles.add_profile(session, stage, plan, keep_id=keep_id)

    # ------------------------------------------------------------------------------------------ profile
    def import_profile(self, bundle: Path) -> ProfileInfo:
        """A profile bundle (v1.0 or v1.1) → a new profile named uniquely, as Voicebox does."""
        stage = Staging(self.blobs)
        try:
            with self.open_bundle(bundle) as zf:
                manifest, minor, kind = read_manifest(zf)
                if kind == "library":
                    raise ValidationError(
                        "this is a library bundle; import it with POST /library/import"
                    )
                if kind == "generation":
                    raise ValidationError(
                        "this is a generation bundle; import it with POST /history/import"
                    )
                plan = plan_profile(zf, manifest, minor)
                for sp in plan.samples:
                    stage_sample(zf, stage, sp, self.settings.max_upload_bytes)
                stage_avatar(zf, stage, plan)

            def unit(session: Session) -> ProfileInfo:
                profile, _ = self._add_profile(session, stage, plan, keep_id=True)
                return ProfileInfo(profile, len(plan.samples), 0)

            return commit(self.db, stage, unit)
        finally:
            stage.cleanup()

    def export_profile(self, profile_id: str, fmt: str = VERSION_V11) -> ExportedFile:
        """A profile bundle in ``voicebox/.tmp``: v1.1 (default) or Voicebox's exact v1.0."""
        return profiles.export_profile(self.db, self.blobs, profile_id, fmt, self._prompt_info)

    # ------------------------------------------------------------------------------------------ generation
    def import_generation(self, bundle: Path) -> GenerationImport:
        """A generation bundle → a history row, attached to the profile with the same id or name if any.

        Never to an arbitrary profile (Voicebox picked the first one): with no match the row keeps the
        profile's name and has no profile id, as history of a deleted profile does.
        """
        stage = Staging(self.blobs)
        try:
            with self.open_bundle(bundle) as zf:
                manifest, _, kind = read_manifest(zf)
                if kind != "generation":
                    raise ValidationError(
                        "this is not a generation bundle (no 'generation' in manifest.json); import "
                        "profiles with POST /profiles/import and libraries with POST /library/import"
                    )
                plan = plan_generation(manifest.get("generation"), "manifest.json generation")
                found_profile = manifest.get("profile")
                profile_data = found_profile if isinstance(found_profile, dict) else {}
                plan.entry = generation_entry(zf, manifest)
                plan.versions = plan_versions(zf, manifest)
                stage_generation(zf, stage, plan, self.settings.max_bundle_bytes)

            def unit(session: Session) -> GenerationImport:
                pid = profile_data.get("id")
                name = (
                    profile_data.get("name") if isinstance(profile_data.get("name"), str) else None
                )
                profile = session.get(Profile, pid) if isinstance(pid, str) else None
                if profile is None and name:
                    profile = session.scalar(select(Profile).where(Profile.name == name))
                plan.profile_id = profile.id if profile else None
                plan.profile_name = profile.name if profile else (name[:100] if name else None)
                row = generations.add_generation(session, stage, plan, keep_id=True)
                return GenerationImport(row, profile is not None)

            return commit(self.db, stage, unit)
        finally:
            stage.cleanup()

    def export_generation(self, generation_id: str) -> ExportedFile:
        """Voicebox's generation zip (v1.0 layout) with our extra fields, marked v1.1."""
        return generations.export_generation(self.db, self.blobs, generation_id)

    # ------------------------------------------------------------------------------------------ library
    def export_library(
        self, *, include_history: bool = False, progress: Progress | None = None
    ) -> ExportedFile:
        """Every profile (and optionally every finished generation) in one v1.1 library bundle."""
        return library.export_library(
            self.db,
            self.blobs,
            self._prompt_info,
            include_history=include_history,
            progress=progress,
        )

    def export_library_to_volume(
        self, name: str, *, include_history: bool = False, progress: Progress | None = None
    ) -> VolumeExport:
        """The library bundle written to ``voicebox/exports/<name>`` (a new name; never overwritten)."""
        target = volume_file(self.settings.exports_dir, name, what="export name")
        if target.exists():
            raise ConflictError(f"voicebox/exports/{name} already exists; choose another name")
        exported = self.export_library(include_history=include_history, progress=progress)
        try:
            blob = self.blobs.write_file(f"exports/{name}", exported.path, move=True)
        finally:
            exported.path.unlink(missing_ok=True)
        return VolumeExport(
            name, blob.size, blob.sha256, exported.profiles, exported.samples, exported.generations
        )

    def import_library(self, bundle: Path, *, progress: Progress | None = None) -> ImportResult:
        """Import a library bundle idempotently: ids already on the volume are skipped and reported."""
        stage = Staging(self.blobs)
        result = ImportResult()
        try:
            with self.open_bundle(bundle) as zf:
                manifest, _, kind = read_manifest(zf)
                if kind != "library":
                    raise ValidationError(
                        f"this is a {kind} bundle, not a library; use POST /profiles/import or "
                        "POST /history/import"
                    )
                plans, gen_plans = library.plan_library(zf, manifest)
                self._stage_library(zf, stage, plans, gen_plans, progress)

            def unit(session: Session) -> ImportResult:
                self._add_library_profiles(session, stage, plans, result)
                library.add_library_generations(session, stage, gen_plans, result)
                return result

            return commit(self.db, stage, unit)
        finally:
            stage.cleanup()

    def _stage_library(
        self,
        zf: SafeZip,
        stage: Staging,
        plans: list[ProfilePlan],
        gen_plans: list[GenerationPlan],
        progress: Progress | None,
    ) -> None:
        """Stage what is not here yet (samples and generations by id) and every avatar."""
        with self.db.read() as session:
            have_samples = set(session.scalars(select(ProfileSample.id)))
            have_gens = set(session.scalars(select(Generation.id)))
        todo = [
            (p, s)
            for p in plans
            for s in p.samples
            if not (s.id_hint and s.id_hint in have_samples)
        ]
        todo_g = [g for g in gen_plans if not (g.id_hint and g.id_hint in have_gens)]
        total, done = len(todo) + len(todo_g), 0
        for _, sp in todo:
            stage_sample(zf, stage, sp, self.settings.max_upload_bytes)
            done += 1
            if progress:
                progress("validate", done, total)
        for p in plans:
            stage_avatar(zf, stage, p)
        for gp in todo_g:
            stage_generation(zf, stage, gp, self.settings.max_bundle_bytes)
            done += 1
            if progress:
                progress("validate", done, total)

    def _add_library_profiles(
        self, session: Session, stage: Staging, plans: list[ProfilePlan], result: ImportResult
    ) -> None:
        """New profiles are added; a profile already here only gains the samples it lacks."""
        for plan in plans:
            existing = session.get(Profile, plan.id_hint) if plan.id_hint else None
            if existing is not None:
                result.profiles_skipped.append(existing.name)
                ready = [s for s in plan.samples if s.prepared is not None]
                ready = [s for s in ready if session.get(ProfileSample, s.id_hint or "") is None]
                result.samples_skipped += len(plan.samples) - len(ready)
                result.samples_created += profiles.add_samples(session, stage, existing.id, ready)
                continue
            profile, name = self._add_profile(session, stage, plan, keep_id=True)
            result.profiles_created.append(name)
            if name != plan.name:
                result.profiles_renamed[plan.name] = name
            result.samples_created += sum(1 for s in plan.samples if s.prepared is not None)
            result.samples_skipped += sum(1 for s in plan.samples if s.prepared is None)
