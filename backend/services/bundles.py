"""Profile, generation and library bundles: Voicebox's zip v1.0 read and written, our v1.1 by default.

Formats (``docs/api.md`` has the full description):

* **Profile v1.0 (Voicebox)**: ``manifest.json`` ``{version, profile{name, description, language}, has_avatar}``,
  ``samples.json`` ``{"<file>": reference_text}``, ``samples/<file>``, optional ``avatar.<ext>``.
* **Profile v1.1 (ours)**: the same files (so Voicebox, which only checks that ``version`` exists, still imports
  it) plus, in the manifest, every profile field, per-sample id/sha256/duration/created time, the avatar's
  sha256, and the engine/model the voice prompts were made for.
* **Generation v1.0/v1.1**: ``manifest.json`` ``{version, generation{...}, profile{...}, versions[...]}`` and
  ``audio/<file>``.
* **Library v1.1 (ours)**: ``manifest.json`` ``{version, kind: "library", profiles[...], generations[...]}`` with
  files under ``profiles/<pid>/`` and ``generations/``. Import is idempotent: ids already present are skipped
  and reported.

Imports are atomic: the bundle is vetted (``zipguard``), every entry is staged in ``voicebox/.tmp`` and
validated (audio decoded and checked like an upload), and only then one write unit adds the rows and moves the
staged files into place. Any failure removes the moved and staged files; nothing is left behind. Nothing is
ever held whole in memory: uploads and exports are files, entries are streamed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import __version__
from backend.db.errors import WriteConflictError
from backend.db.interface import conflict_pause
from backend.db.models import Generation, GenerationVersion, Profile, ProfileSample, utcnow
from backend.services.audio_prep import PreparedAudio, prepare_reference, probe_audio
from backend.services.common import (
    LANGUAGES,
    download_name,
    is_uuid,
    parse_time,
    unique_profile_name,
    volume_file,
)
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.services.profiles import MAX_AVATAR_BYTES, ProfileInfo, sniff_image
from backend.services.zipguard import SafeZip, ZipLimits
from backend.statuses import ACTIVE, FINAL, GenerationStatus
from backend.storage import effects
from backend.storage.blobs import BlobStore, StoredBlob, sha256_file

if TYPE_CHECKING:
    from backend.services.container import Services

log = logging.getLogger(__name__)

VERSION_V10 = "1.0"
VERSION_V11 = "1.1"
GENERATOR = f"voicebox-worker {__version__}"
GENERATION_AUDIO_EXTS = ("wav", "flac", "mp3", "ogg", "opus")
MANIFEST_LIMIT = 16 * 1024 * 1024

#: ``progress(stage, done, total)``: the CLI draws a bar from it; the API passes None.
Progress = Callable[[str, int, int], None]


# ---------------------------------------------------------------------------------------------- results
@contextmanager
def _removed_on_failure(out: Path) -> Iterator[None]:
    """Never leave a half-written bundle; a sample deleted during the export is a retryable conflict."""
    try:
        yield
    except FileNotFoundError as exc:
        out.unlink(missing_ok=True)
        raise ConflictError(
            f"a file was removed while the bundle was written ({Path(exc.filename or '').name}); "
            "retry the export"
        ) from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ExportedFile:
    """A finished bundle in ``voicebox/.tmp``; the caller streams it and then deletes it."""

    path: Path
    filename: str
    profiles: int = 0
    samples: int = 0
    generations: int = 0


@dataclass(frozen=True)
class VolumeExport:
    volume_name: str
    size_bytes: int
    sha256: str
    profiles: int
    samples: int
    generations: int


@dataclass(frozen=True)
class GenerationImport:
    generation: Generation
    profile_matched: bool


@dataclass
class ImportResult:
    profiles_created: list[str] = field(default_factory=list)
    profiles_skipped: list[str] = field(default_factory=list)
    profiles_renamed: dict[str, str] = field(default_factory=dict)
    samples_created: int = 0
    samples_skipped: int = 0
    generations_created: int = 0
    generations_skipped: int = 0

    @property
    def nothing_new(self) -> bool:
        return not (self.profiles_created or self.samples_created or self.generations_created)

    def summary(self) -> str:
        if self.nothing_new:
            return "nothing new: every profile, sample and generation in the bundle is already here"
        return (
            f"imported {len(self.profiles_created)} profiles, {self.samples_created} samples, "
            f"{self.generations_created} generations; skipped {len(self.profiles_skipped)} profiles, "
            f"{self.samples_skipped} samples, {self.generations_skipped} generations already present"
        )


# ---------------------------------------------------------------------------------------------- plans
@dataclass
class _SamplePlan:
    entry: str
    reference_text: str
    id_hint: str | None = None
    sha256: str | None = None
    created_at: Any = None
    prepared: PreparedAudio | None = None


@dataclass
class _ProfilePlan:
    name: str
    description: str | None
    language: str
    id_hint: str | None = None
    created_at: Any = None
    updated_at: Any = None
    avatar_entry: str | None = None
    avatar_sha256: str | None = None
    avatar_kind: str | None = None
    avatar_staged: Path | None = None
    samples: list[_SamplePlan] = field(default_factory=list)
    effects_chain: list[dict[str, Any]] | None = None


@dataclass
class _GenerationPlan:
    text: str
    language: str
    entry: str | None
    id_hint: str | None = None
    profile_id: str | None = None
    profile_name: str | None = None
    seed: int | None = None
    instruct: str | None = None
    engine: str | None = None
    model_size: str | None = None
    is_favorited: bool = False
    source: str | None = None
    status: str = GenerationStatus.COMPLETED
    error: str | None = None
    created_at: Any = None
    completed_at: Any = None
    sha256: str | None = None
    staged: Path | None = None
    duration: float | None = None
    versions: list[_VersionPlan] = field(default_factory=list)


@dataclass
class _VersionPlan:
    """One entry of a generation bundle's ``versions[]`` (upstream's manifest field)."""

    entry: str
    label: str
    is_default: bool
    id_hint: str | None = None
    effects_chain: list[dict[str, Any]] | None = None
    source_version_id: str | None = None
    sha256: str | None = None
    staged: Path | None = None
    duration: float | None = None


#: more versions than this in one generation bundle is refused (upstream's UI makes a handful)
MAX_BUNDLE_VERSIONS = 100


class _Staging:
    """Staged temp files and the files already moved into place, so a failure can undo both."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.paths: list[Path] = []
        self.moved: list[str] = []
        self.sources: dict[str, Path] = {}

    def new(self, suffix: str = "") -> Path:
        path = self.blobs.new_tmp_path(suffix)
        self.paths.append(path)
        return path

    def adopt(self, path: Path) -> None:
        self.paths.append(path)

    def move(self, rel: str, path: Path) -> StoredBlob:
        self.moved.append(rel)
        self.sources[rel] = path
        return self.blobs.write_file(rel, path, move=True)

    def put_back(self) -> bool:
        """Undo the moves so the unit can run again (a write conflict): each file back to its staged path
        (or removed when it was copied: the source is still there). False if one could not be put back."""
        try:
            for rel in list(self.moved):
                source = self.sources.get(rel)
                if source is not None and not source.exists():
                    os.replace(self.blobs.path(rel), source)
                else:
                    self.blobs.delete(rel)
                self.moved.remove(rel)
        except OSError:
            log.warning("could not put staged files back for a retry", exc_info=True)
            return False
        return True

    def rollback(self) -> None:
        for rel in self.moved:
            try:
                self.blobs.delete(rel)
            except OSError:
                log.warning("could not remove %s after a failed import", rel, exc_info=True)
        self.moved.clear()

    def cleanup(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()


# ---------------------------------------------------------------------------------------------- parsing
def check_version(manifest: object) -> tuple[int, int]:
    """(major, minor) of a bundle manifest; unknown majors are refused by name."""
    if not isinstance(manifest, dict):
        raise ValidationError("manifest.json must be a JSON object")
    version = manifest.get("version")
    if version is None:
        raise ValidationError("manifest.json has no 'version'; this is not a Voicebox bundle")
    match = (
        re.fullmatch(r"(\d+)\.(\d+)", str(version))
        if isinstance(version, str | int | float)
        else None
    )
    if match is None:
        raise ValidationError(f"manifest.json version {version!r} is not of the form MAJOR.MINOR")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != 1:
        raise ValidationError(
            f"bundle version {version} is not supported: this server reads version 1.x bundles "
            "(1.0 from Voicebox, 1.1 from voicebox-worker); upgrade the server to import it"
        )
    return major, minor


def bundle_kind(manifest: dict[str, Any]) -> str:
    kind = manifest.get("kind")
    if kind in ("profile", "library", "generation"):
        return str(kind)
    if kind is not None:
        raise ValidationError(
            f"manifest.json kind {kind!r} is unknown (profile, generation, library)"
        )
    if "generation" in manifest:
        return "generation"
    if "profiles" in manifest:
        return "library"
    return "profile"


def _str_field(
    obj: dict[str, Any], key: str, where: str, *, max_len: int, required: bool
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ValidationError(f"{where}: '{key}' is missing")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{where}: '{key}' must be a string")
    if len(value) > max_len:
        raise ValidationError(f"{where}: '{key}' is {len(value)} characters; at most {max_len}")
    return value


def _language(obj: dict[str, Any], where: str) -> str:
    lang = obj.get("language", "en") or "en"
    if lang not in LANGUAGES:
        raise ValidationError(f"{where}: language {lang!r} is not one of {', '.join(LANGUAGES)}")
    return str(lang)


def _profile_fields(data: object, where: str) -> _ProfilePlan:
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: 'profile' must be an object")
    name = (_str_field(data, "name", where, max_len=100, required=True) or "").strip()
    if not name:
        raise ValidationError(f"{where}: the profile name is empty")
    chain = data.get("effects_chain")
    if isinstance(chain, str):  # upstream stores the chain as JSON text
        chain = effects.parse_stored(chain)
    try:
        checked = effects.validate_chain(chain, f"{where}: effects_chain") if chain else None
    except effects.EffectsError as exc:
        raise ValidationError(str(exc)) from None
    return _ProfilePlan(
        name=name,
        description=_str_field(data, "description", where, max_len=500, required=False),
        language=_language(data, where),
        id_hint=data.get("id") if is_uuid(data.get("id")) else None,
        created_at=parse_time(data.get("created_at")),
        updated_at=parse_time(data.get("updated_at")),
        effects_chain=checked or None,
    )


def _plan_versions(zf: SafeZip, manifest: dict[str, Any]) -> list[_VersionPlan]:
    """``versions[]`` of a generation bundle: every entry's file must be in ``audio/``."""
    versions = manifest.get("versions")
    if not isinstance(versions, list) or not versions:
        return []
    if len(versions) > MAX_BUNDLE_VERSIONS:
        raise ValidationError(
            f"manifest.json versions: {len(versions)} entries; at most {MAX_BUNDLE_VERSIONS}"
        )
    plans: list[_VersionPlan] = []
    for i, item in enumerate(versions):
        where = f"manifest.json versions[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be an object")
        filename = item.get("filename")
        if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename:
            raise ValidationError(f"{where}: 'filename' must be a plain file name")
        entry = f"audio/{filename}"
        if not zf.has(entry):
            raise ValidationError(f"{where} names {filename!r} but the bundle has no {entry}")
        chain = item.get("effects_chain")
        if isinstance(chain, str):
            chain = effects.parse_stored(chain)
        try:
            checked = effects.validate_chain(chain, f"{where}: effects_chain") if chain else None
        except effects.EffectsError as exc:
            raise ValidationError(str(exc)) from None
        label = item.get("label")
        plans.append(
            _VersionPlan(
                entry=entry,
                label=(label if isinstance(label, str) and label.strip() else f"version-{i + 1}")[
                    :200
                ],
                is_default=bool(item.get("is_default")),
                id_hint=item.get("id") if is_uuid(item.get("id")) else None,
                effects_chain=checked or None,
                source_version_id=(
                    item.get("source_version_id")
                    if is_uuid(item.get("source_version_id"))
                    else None
                ),
                sha256=_sha(item.get("sha256")),
            )
        )
    if not any(p.is_default for p in plans):
        plans[0].is_default = True
    for p in plans[[i for i, p in enumerate(plans) if p.is_default][0] + 1 :]:
        p.is_default = False  # one default: the first one flagged
    return plans


def _reference_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}: the reference text is missing or empty")
    if len(value) > 1000:
        raise ValidationError(
            f"{where}: the reference text is {len(value)} characters; at most 1000"
        )
    return value


def _sha(value: object) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value
    return None


def _plan_samples_v10(zf: SafeZip, prefix: str = "") -> list[_SamplePlan]:
    if not zf.has(f"{prefix}samples.json"):
        raise ValidationError("the bundle has no samples.json")
    mapping = zf.read_json(f"{prefix}samples.json", MANIFEST_LIMIT)
    if not isinstance(mapping, dict):
        raise ValidationError("samples.json must map sample file names to reference texts")
    plans = []
    for filename, text in mapping.items():
        if not isinstance(filename, str) or "/" in filename or filename in ("", ".", ".."):
            raise ValidationError(f"samples.json: {filename!r} is not a plain file name")
        entry = f"{prefix}samples/{filename}"
        if not zf.has(entry):
            raise ValidationError(f"samples.json names {filename!r} but the bundle has no {entry}")
        stem = filename.rsplit(".", 1)[0]
        plans.append(
            _SamplePlan(
                entry=entry,
                reference_text=_reference_text(text, f"samples.json[{filename!r}]"),
                id_hint=stem if is_uuid(stem) else None,
            )
        )
    return plans


def _plan_samples_v11(zf: SafeZip, items: object, where: str) -> list[_SamplePlan]:
    if not isinstance(items, list):
        raise ValidationError(f"{where}: 'samples' must be a list")
    plans, seen_ids, seen_entries = [], set(), set()
    for i, item in enumerate(items):
        at = f"{where}.samples[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{at} must be an object")
        entry = item.get("file")
        if not isinstance(entry, str) or not zf.has(entry):
            raise ValidationError(f"{at}: file {entry!r} is not in the bundle")
        if entry in seen_entries:
            raise ValidationError(f"{at}: file {entry!r} is listed twice")
        seen_entries.add(entry)
        sid = item.get("id") if is_uuid(item.get("id")) else None
        if sid and sid in seen_ids:
            raise ValidationError(f"{at}: sample id {sid} is listed twice")
        if sid:
            seen_ids.add(sid)
        plans.append(
            _SamplePlan(
                entry=entry,
                reference_text=_reference_text(item.get("reference_text"), at),
                id_hint=sid,
                sha256=_sha(item.get("sha256")),
                created_at=parse_time(item.get("created_at")),
            )
        )
    return plans


def _plan_profile(zf: SafeZip, manifest: dict[str, Any], minor: int) -> _ProfilePlan:
    plan = _profile_fields(manifest.get("profile"), "manifest.json")
    samples = manifest.get("samples") if minor >= 1 else None
    if isinstance(samples, list):
        plan.samples = _plan_samples_v11(zf, samples, "manifest.json")
        avatar = manifest.get("avatar")
        if isinstance(avatar, dict) and avatar.get("file"):
            entry = avatar["file"]
            if not isinstance(entry, str) or not zf.has(entry):
                raise ValidationError(f"manifest.json: avatar file {entry!r} is not in the bundle")
            plan.avatar_entry = entry
            plan.avatar_sha256 = _sha(avatar.get("sha256"))
    else:
        plan.samples = _plan_samples_v10(zf)
    if plan.avatar_entry is None:
        avatars = [n for n in zf.files() if "/" not in n and n.startswith("avatar.")]
        if avatars:
            plan.avatar_entry = avatars[0]
    return plan


def _plan_generation(data: object, where: str) -> _GenerationPlan:
    if not isinstance(data, dict):
        raise ValidationError(f"{where} must be an object")
    text = _str_field(data, "text", where, max_len=100_000, required=True) or ""
    if not text.strip():
        raise ValidationError(f"{where}: 'text' is empty")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValidationError(f"{where}: 'seed' must be a non-negative integer")
    status = data.get("status") or GenerationStatus.COMPLETED
    if status not in FINAL:
        raise ValidationError(f"{where}: status {status!r} cannot be imported")
    return _GenerationPlan(
        text=text,
        language=_language(data, where),
        entry=None,
        id_hint=data.get("id") if is_uuid(data.get("id")) else None,
        seed=seed,
        instruct=_str_field(data, "instruct", where, max_len=2000, required=False),
        engine=_str_field(data, "engine", where, max_len=50, required=False),
        model_size=_str_field(data, "model_size", where, max_len=20, required=False),
        is_favorited=bool(data.get("is_favorited", False)),
        source=_str_field(data, "source", where, max_len=50, required=False),
        status=str(status),
        error=_str_field(data, "error", where, max_len=10_000, required=False),
        created_at=parse_time(data.get("created_at")),
        completed_at=parse_time(data.get("completed_at")),
        sha256=_sha(data.get("sha256")),
    )


def _audio_ext(entry: str) -> str:
    ext = entry.rsplit(".", 1)[-1].lower() if "." in entry.rsplit("/", 1)[-1] else ""
    if ext not in GENERATION_AUDIO_EXTS:
        raise ValidationError(
            f"{entry}: audio must be one of {', '.join(GENERATION_AUDIO_EXTS)} (by extension)"
        )
    return ext


# ---------------------------------------------------------------------------------------------- service
class BundleService:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.blobs = services.blobs

    @property
    def limits(self) -> ZipLimits:
        cap = self.settings.max_bundle_bytes
        return ZipLimits(
            max_total_uncompressed=max(10 * cap, 1024**3),
            max_entry_uncompressed=max(cap, self.settings.max_upload_bytes),
        )

    def open_bundle(self, path: Path) -> SafeZip:
        return SafeZip(path, self.limits)

    def _read_manifest(self, zf: SafeZip) -> tuple[dict[str, Any], int, str]:
        if not zf.has("manifest.json"):
            raise ValidationError("the bundle has no manifest.json; is it a Voicebox export?")
        manifest = zf.read_json("manifest.json", MANIFEST_LIMIT)
        _, minor = check_version(manifest)
        assert isinstance(manifest, dict)
        return manifest, minor, bundle_kind(manifest)

    def detect_kind(self, bundle: Path) -> str:
        """``profile``, ``generation`` or ``library``: what a bundle file holds (vetted first)."""
        with self.open_bundle(bundle) as zf:
            return self._read_manifest(zf)[2]

    # ------------------------------------------------------------------------------------------ volume
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

    # ------------------------------------------------------------------------------------------ staging
    def _stage_sample(self, zf: SafeZip, stage: _Staging, plan: _SamplePlan) -> None:
        raw = stage.new(".in")
        zf.extract(plan.entry, raw, self.settings.max_upload_bytes)
        if plan.sha256 and sha256_file(raw) != plan.sha256:
            raise ValidationError(
                f"{plan.entry}: sha256 does not match the manifest; the bundle is damaged"
            )
        prepared = prepare_reference(self.blobs, raw, what=plan.entry)
        if prepared.path != raw:
            stage.adopt(prepared.path)
        plan.prepared = prepared

    def _stage_avatar(self, zf: SafeZip, stage: _Staging, plan: _ProfilePlan) -> None:
        if not plan.avatar_entry:
            return
        raw = stage.new(".img")
        zf.extract(plan.avatar_entry, raw, MAX_AVATAR_BYTES)
        if plan.avatar_sha256 and sha256_file(raw) != plan.avatar_sha256:
            raise ValidationError(f"{plan.avatar_entry}: sha256 does not match the manifest")
        with open(raw, "rb") as handle:
            kind = sniff_image(handle.read(16))
        if kind is None:
            raise ValidationError(
                f"{plan.avatar_entry}: the avatar is not a PNG, JPEG or WEBP image"
            )
        plan.avatar_kind, plan.avatar_staged = kind, raw

    def _stage_generation(self, zf: SafeZip, stage: _Staging, plan: _GenerationPlan) -> None:
        if plan.entry is None:
            return
        ext = _audio_ext(plan.entry)
        raw = stage.new(f".{ext}")
        zf.extract(plan.entry, raw, self.settings.max_bundle_bytes)
        if plan.sha256 and sha256_file(raw) != plan.sha256:
            raise ValidationError(f"{plan.entry}: sha256 does not match the manifest")
        plan.duration = probe_audio(raw, what=plan.entry)
        plan.staged = raw
        for version in plan.versions:
            if version.entry == plan.entry:
                version.staged, version.duration = raw, plan.duration
                continue
            staged = stage.new(f".{_audio_ext(version.entry)}")
            zf.extract(version.entry, staged, self.settings.max_bundle_bytes)
            if version.sha256 and sha256_file(staged) != version.sha256:
                raise ValidationError(f"{version.entry}: sha256 does not match the manifest")
            version.duration = probe_audio(staged, what=version.entry)
            version.staged = staged

    def _add_profile(
        self, session: Session, stage: _Staging, plan: _ProfilePlan, *, keep_id: bool
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
        self._add_samples(session, stage, profile.id, plan.samples)
        if plan.avatar_staged is not None:
            rel = f"profiles/{pid}/avatar-{uuid.uuid4().hex[:12]}.{plan.avatar_kind}"
            stage.move(rel, plan.avatar_staged)
            profile.avatar_path = rel
        return profile, name

    def _add_samples(
        self, session: Session, stage: _Staging, profile_id: str, samples: list[_SamplePlan]
    ) -> int:
        base = utcnow()
        added = 0
        for i, sp in enumerate(samples):
            if sp.prepared is None:
                continue
            sid = (
                sp.id_hint
                if sp.id_hint and session.get(ProfileSample, sp.id_hint) is None
                else None
            )
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

    def _add_generation(
        self, session: Session, stage: _Staging, plan: _GenerationPlan, *, keep_id: bool
    ) -> Generation:
        gid = (
            plan.id_hint
            if (keep_id and plan.id_hint and session.get(Generation, plan.id_hint) is None)
            else None
        )
        gid = gid or str(uuid.uuid4())
        rel = None
        blob = None
        if plan.staged is not None:
            rel = f"generations/{gid}.{_audio_ext(plan.entry or '.wav')}"
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
            self._add_versions(session, stage, row, plan, blob)
        return row

    @staticmethod
    def _add_versions(
        session: Session, stage: _Staging, row: Generation, plan: _GenerationPlan, blob: StoredBlob
    ) -> None:
        """The bundle's versions (ids kept when free, sources remapped); none listed: one ``original``."""
        metas = plan.versions or [
            _VersionPlan(entry=plan.entry or "", label="original", is_default=True)
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
                rel = f"generations/{row.id}-{version_id[:8]}.{_audio_ext(meta.entry)}"
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

    def _commit(self, stage: _Staging, unit: Callable[[Session], Any]) -> Any:
        """One write unit that moves staged files; on any failure the moved files are removed again.

        A unit that lost a race (``WriteConflictError``: a PostgreSQL serialization failure, or a fence failure
        on the volume) puts its files back where they were staged and runs again, like ``write_retrying``.
        """
        retries = self.db.conflict_retries
        for attempt in range(retries + 1):
            try:
                with self.db.write() as session:
                    return unit(session)
            except WriteConflictError:
                if attempt < retries and stage.put_back():
                    conflict_pause(attempt)
                    continue
                stage.rollback()
                raise
            except BaseException:
                stage.rollback()
                raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------------ profile
    def import_profile(self, bundle: Path) -> ProfileInfo:
        """A profile bundle (v1.0 or v1.1) → a new profile named uniquely, as Voicebox does."""
        stage = _Staging(self.blobs)
        try:
            with self.open_bundle(bundle) as zf:
                manifest, minor, kind = self._read_manifest(zf)
                if kind == "library":
                    raise ValidationError(
                        "this is a library bundle; import it with POST /library/import"
                    )
                if kind == "generation":
                    raise ValidationError(
                        "this is a generation bundle; import it with POST /history/import"
                    )
                plan = _plan_profile(zf, manifest, minor)
                for sp in plan.samples:
                    self._stage_sample(zf, stage, sp)
                self._stage_avatar(zf, stage, plan)

            def unit(session: Session) -> ProfileInfo:
                profile, _ = self._add_profile(session, stage, plan, keep_id=True)
                return ProfileInfo(profile, len(plan.samples), 0)

            return self._commit(stage, unit)
        finally:
            stage.cleanup()

    def _load_profile(self, profile_id: str) -> tuple[Profile, list[ProfileSample]]:
        with self.db.read() as session:
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

    def _file(self, rel: str | None, what: str) -> Path:
        if not rel or not self.blobs.exists(rel):
            raise ConflictError(
                f"{what} is missing on the volume ({rel or 'no path'}); run `voicebox-worker volume fsck`"
            )
        return self.blobs.path(rel)

    def _prompt_info(self) -> dict[str, Any]:
        model = self.settings.tts_model
        engines = self.services.engines
        engine = (
            engines.tts_engine_name if engines else ("fake" if model == "fake" else "qwen3-tts")
        )
        return {"engine": engine, "tts_model": model, "sample_rate": 24000}

    def export_profile(self, profile_id: str, fmt: str = VERSION_V11) -> ExportedFile:
        """A profile bundle in ``voicebox/.tmp``: v1.1 (default) or Voicebox's exact v1.0."""
        if fmt not in (VERSION_V10, VERSION_V11):
            raise ValidationError(f"format {fmt!r} is not supported; use 1.0 (Voicebox) or 1.1")
        profile, samples = self._load_profile(profile_id)
        sample_files = [
            (s, self._file(s.audio_path, f"the audio of sample {s.id}")) for s in samples
        ]
        avatar = self.blobs.path(profile.avatar_path) if profile.avatar_path else None
        if avatar is not None and not avatar.is_file():
            avatar = None
        out = self.blobs.new_tmp_path(".zip")
        with _removed_on_failure(out), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
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
                manifest = self._v11_profile_manifest(profile, entries, avatar, avatar_name)
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
            for arcname, path, _ in entries:
                zf.write(path, arcname)
            zf.writestr("samples.json", json.dumps(samples_json, indent=2))
        filename = f"profile-{download_name(profile.name, 'profile', '')}.voicebox.zip"
        return ExportedFile(out, filename, profiles=1, samples=len(samples))

    def _v11_profile_manifest(
        self,
        profile: Profile,
        entries: list[tuple[str, Path, ProfileSample]],
        avatar: Path | None,
        avatar_name: str | None,
        *,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        manifest: dict[str, Any] = dict(base or {"version": VERSION_V11, "kind": "profile"})
        manifest["profile"] = self._profile_dict(profile)
        manifest["has_avatar"] = avatar is not None
        manifest["avatar"] = (
            {
                "file": avatar_name,
                "sha256": sha256_file(avatar),
                "size_bytes": avatar.stat().st_size,
            }
            if avatar is not None
            else None
        )
        manifest["samples"] = [self._sample_dict(s, arcname, path) for arcname, path, s in entries]
        if base is None:
            manifest["voice_prompt"] = self._prompt_info()
            manifest["generator"] = GENERATOR
            manifest["exported_at"] = utcnow().isoformat()
        return manifest

    @staticmethod
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

    @staticmethod
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

    # ------------------------------------------------------------------------------------------ generation
    def export_generation(self, generation_id: str) -> ExportedFile:
        """Voicebox's generation zip (v1.0 layout) with our extra fields, marked v1.1."""
        with self.db.read() as session:
            gen = session.get(Generation, generation_id)
            if gen is None:
                raise NotFoundError(f"generation {generation_id!r} not found")
            profile = session.get(Profile, gen.profile_id) if gen.profile_id else None
        audio = (
            self._file(gen.audio_path, f"the audio of generation {generation_id}")
            if gen.audio_path
            else None
        )
        out = self.blobs.new_tmp_path(".zip")
        others = [
            (v, self._file(v.audio_path, f"the audio of version {v.id}"))
            for v in gen.versions
            if v.audio_path != gen.audio_path
        ]
        with _removed_on_failure(out), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
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
                "generation": self._generation_dict(gen, audio),
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

    @staticmethod
    def _generation_dict(
        gen: Generation, audio: Path | None, arcname: str | None = None
    ) -> dict[str, Any]:
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

    def import_generation(self, bundle: Path) -> GenerationImport:
        """A generation bundle → a history row, attached to the profile with the same id or name if any.

        Never to an arbitrary profile (Voicebox picked the first one): with no match the row keeps the
        profile's name and has no profile id, as history of a deleted profile does.
        """
        stage = _Staging(self.blobs)
        try:
            with self.open_bundle(bundle) as zf:
                manifest, _, kind = self._read_manifest(zf)
                if kind != "generation":
                    raise ValidationError(
                        "this is not a generation bundle (no 'generation' in manifest.json); import "
                        "profiles with POST /profiles/import and libraries with POST /library/import"
                    )
                plan = _plan_generation(manifest.get("generation"), "manifest.json generation")
                found_profile = manifest.get("profile")
                profile_data = found_profile if isinstance(found_profile, dict) else {}
                plan.entry = self._generation_entry(zf, manifest)
                plan.versions = _plan_versions(zf, manifest)
                self._stage_generation(zf, stage, plan)

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
                row = self._add_generation(session, stage, plan, keep_id=True)
                return GenerationImport(row, profile is not None)

            return self._commit(stage, unit)
        finally:
            stage.cleanup()

    @staticmethod
    def _generation_entry(zf: SafeZip, manifest: dict[str, Any]) -> str:
        versions = manifest.get("versions")
        if isinstance(versions, list) and versions:
            chosen = next(
                (v for v in versions if isinstance(v, dict) and v.get("is_default")), versions[0]
            )
            filename = chosen.get("filename") if isinstance(chosen, dict) else None
            if not isinstance(filename, str) or "/" in filename:
                raise ValidationError(
                    "manifest.json versions: 'filename' must be a plain file name"
                )
            entry = f"audio/{filename}"
            if not zf.has(entry):
                raise ValidationError(
                    f"manifest.json names {filename!r} but the bundle has no {entry}"
                )
            return entry
        audio = zf.files("audio/")
        if not audio:
            raise ValidationError("the bundle has no audio/ file")
        return audio[0]

    # ------------------------------------------------------------------------------------------ library
    def export_library(
        self, *, include_history: bool = False, progress: Progress | None = None
    ) -> ExportedFile:
        """Every profile (and optionally every finished generation) in one v1.1 library bundle."""
        with self.db.read() as session:
            profiles = list(
                session.scalars(select(Profile).order_by(Profile.created_at, Profile.id))
            )
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
        out = self.blobs.new_tmp_path(".zip")
        sample_count = 0
        with (
            _removed_on_failure(out),
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
        ):
            entries_p = []
            for profile in profiles:
                base = f"profiles/{profile.id}"
                entries = []
                for s in samples.get(profile.id, []):
                    path = self._file(s.audio_path, f"the audio of sample {s.id}")
                    arc = f"{base}/samples/{s.id}.wav"
                    zf.write(path, arc, compress_type=zipfile.ZIP_STORED)
                    entries.append((arc, path, s))
                    done += 1
                    sample_count += 1
                    if progress:
                        progress("export", done, total)
                avatar = self.blobs.path(profile.avatar_path) if profile.avatar_path else None
                avatar_name = None
                if avatar is not None and avatar.is_file():
                    avatar_name = f"{base}/avatar{avatar.suffix}"
                    zf.write(avatar, avatar_name)
                else:
                    avatar = None
                entries_p.append(
                    self._v11_profile_manifest(profile, entries, avatar, avatar_name, base={})
                )
            gen_items = []
            for gen in gens:
                audio = None
                gen_arc: str | None = None
                if gen.audio_path and self.blobs.exists(gen.audio_path):
                    audio = self.blobs.path(gen.audio_path)
                    gen_arc = f"generations/{gen.id}{audio.suffix}"
                    zf.write(audio, gen_arc, compress_type=zipfile.ZIP_STORED)
                gen_items.append(self._generation_dict(gen, audio, gen_arc))
                done += 1
                if progress:
                    progress("export", done, total)
            manifest = {
                "version": VERSION_V11,
                "kind": "library",
                "include_history": include_history,
                "profiles": entries_p,
                "generations": gen_items,
                "voice_prompt": self._prompt_info(),
                "generator": GENERATOR,
                "exported_at": utcnow().isoformat(),
            }
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        stamp = utcnow().strftime("%Y%m%d-%H%M%S")
        return ExportedFile(
            out, f"voicebox-library-{stamp}.zip", len(profiles), sample_count, len(gens)
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
        stage = _Staging(self.blobs)
        result = ImportResult()
        try:
            with self.open_bundle(bundle) as zf:
                manifest, _, kind = self._read_manifest(zf)
                if kind != "library":
                    raise ValidationError(
                        f"this is a {kind} bundle, not a library; use POST /profiles/import or "
                        "POST /history/import"
                    )
                plans, gen_plans = self._plan_library(zf, manifest)
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
                    self._stage_sample(zf, stage, sp)
                    done += 1
                    if progress:
                        progress("validate", done, total)
                for p in plans:
                    self._stage_avatar(zf, stage, p)
                for gp in todo_g:
                    self._stage_generation(zf, stage, gp)
                    done += 1
                    if progress:
                        progress("validate", done, total)

            def unit(session: Session) -> ImportResult:
                for plan in plans:
                    existing = session.get(Profile, plan.id_hint) if plan.id_hint else None
                    if existing is not None:
                        result.profiles_skipped.append(existing.name)
                        ready = [s for s in plan.samples if s.prepared is not None]
                        ready = [
                            s for s in ready if session.get(ProfileSample, s.id_hint or "") is None
                        ]
                        result.samples_skipped += len(plan.samples) - len(ready)
                        result.samples_created += self._add_samples(
                            session, stage, existing.id, ready
                        )
                        continue
                    profile, name = self._add_profile(session, stage, plan, keep_id=True)
                    result.profiles_created.append(name)
                    if name != plan.name:
                        result.profiles_renamed[plan.name] = name
                    result.samples_created += sum(1 for s in plan.samples if s.prepared is not None)
                    result.samples_skipped += sum(1 for s in plan.samples if s.prepared is None)
                for gp in gen_plans:
                    if gp.id_hint and session.get(Generation, gp.id_hint) is not None:
                        result.generations_skipped += 1
                        continue
                    if gp.entry is not None and gp.staged is None:
                        result.generations_skipped += 1  # present at planning time, gone since
                        continue
                    if gp.profile_id and session.get(Profile, gp.profile_id) is None:
                        gp.profile_id = None
                    self._add_generation(session, stage, gp, keep_id=True)
                    result.generations_created += 1
                return result

            return self._commit(stage, unit)
        finally:
            stage.cleanup()

    def _plan_library(
        self, zf: SafeZip, manifest: dict[str, Any]
    ) -> tuple[list[_ProfilePlan], list[_GenerationPlan]]:
        items = manifest.get("profiles")
        if not isinstance(items, list):
            raise ValidationError("manifest.json: 'profiles' must be a list")
        plans: list[_ProfilePlan] = []
        seen_p: set[str] = set()
        seen_s: set[str] = set()
        for i, item in enumerate(items):
            where = f"manifest.json profiles[{i}]"
            if not isinstance(item, dict):
                raise ValidationError(f"{where} must be an object")
            plan = _profile_fields(item.get("profile"), where)
            if not plan.id_hint:
                raise ValidationError(f"{where}: a library profile needs its uuid 'id'")
            if plan.id_hint in seen_p:
                raise ValidationError(f"{where}: profile id {plan.id_hint} is listed twice")
            seen_p.add(plan.id_hint)
            plan.samples = _plan_samples_v11(zf, item.get("samples", []), where)
            for s in plan.samples:
                if s.id_hint and s.id_hint in seen_s:
                    raise ValidationError(f"{where}: sample id {s.id_hint} appears in two profiles")
                if s.id_hint:
                    seen_s.add(s.id_hint)
            avatar = item.get("avatar")
            if isinstance(avatar, dict) and avatar.get("file"):
                if not isinstance(avatar["file"], str) or not zf.has(avatar["file"]):
                    raise ValidationError(
                        f"{where}: avatar file {avatar['file']!r} is not in the bundle"
                    )
                plan.avatar_entry = avatar["file"]
                plan.avatar_sha256 = _sha(avatar.get("sha256"))
            plans.append(plan)
        gens = manifest.get("generations") or []
        if not isinstance(gens, list):
            raise ValidationError("manifest.json: 'generations' must be a list")
        gen_plans = []
        seen_g: set[str] = set()
        for i, item in enumerate(gens):
            where = f"manifest.json generations[{i}]"
            plan_g = _plan_generation(item, where)
            if plan_g.id_hint:
                if plan_g.id_hint in seen_g:
                    raise ValidationError(
                        f"{where}: generation id {plan_g.id_hint} is listed twice"
                    )
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
        return plans, gen_plans
