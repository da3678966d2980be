"""Bundle manifests: the version and kind, every field checked, and the import plans built from them.

Nothing here touches the volume or the database: a manifest is read from the vetted zip (``zipguard``) and turned
into plans (``plans.py``) whose files are then staged. Every refusal is a ``ValidationError`` that names the field.
"""

from __future__ import annotations

import re
from typing import Any

from backend import __version__
from backend.services.bundles.plans import (
    MAX_BUNDLE_VERSIONS,
    GenerationPlan,
    ProfilePlan,
    SamplePlan,
    VersionPlan,
)
from backend.services.common import LANGUAGES, is_uuid, parse_time
from backend.services.errors import ValidationError
from backend.services.zipguard import SafeZip
from backend.statuses import FINAL, GenerationStatus
from backend.storage import effects

VERSION_V10 = "1.0"
VERSION_V11 = "1.1"
GENERATOR = f"voicebox-worker {__version__}"
GENERATION_AUDIO_EXTS = ("wav", "flac", "mp3", "ogg", "opus")
MANIFEST_LIMIT = 16 * 1024 * 1024


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


def read_manifest(zf: SafeZip) -> tuple[dict[str, Any], int, str]:
    """The manifest of a vetted bundle, its minor version and its kind."""
    if not zf.has("manifest.json"):
        raise ValidationError("the bundle has no manifest.json; is it a Voicebox export?")
    manifest = zf.read_json("manifest.json", MANIFEST_LIMIT)
    _, minor = check_version(manifest)
    assert isinstance(manifest, dict)
    return manifest, minor, bundle_kind(manifest)


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


def _effects_chain(chain: object, where: str) -> list[dict[str, Any]] | None:
    """A profile's or version's effects chain, validated; None when there is none."""
    if isinstance(chain, str):  # upstream stores the chain as JSON text
        chain = effects.parse_stored(chain)
    try:
        checked = effects.validate_chain(chain, f"{where}: effects_chain") if chain else None
    except effects.EffectsError as exc:
        raise ValidationError(str(exc)) from None
    return checked or None


def profile_fields(data: object, where: str) -> ProfilePlan:
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: 'profile' must be an object")
    name = (_str_field(data, "name", where, max_len=100, required=True) or "").strip()
    if not name:
        raise ValidationError(f"{where}: the profile name is empty")
    chain = _effects_chain(data.get("effects_chain"), where)
    return ProfilePlan(
        name=name,
        description=_str_field(data, "description", where, max_len=500, required=False),
        language=_language(data, where),
        id_hint=data.get("id") if is_uuid(data.get("id")) else None,
        created_at=parse_time(data.get("created_at")),
        updated_at=parse_time(data.get("updated_at")),
        effects_chain=chain,
    )


def plan_versions(zf: SafeZip, manifest: dict[str, Any]) -> list[VersionPlan]:
    """``versions[]`` of a generation bundle: every entry's file must be in ``audio/``."""
    versions = manifest.get("versions")
    if not isinstance(versions, list) or not versions:
        return []
    if len(versions) > MAX_BUNDLE_VERSIONS:
        raise ValidationError(
            f"manifest.json versions: {len(versions)} entries; at most {MAX_BUNDLE_VERSIONS}"
        )
    plans: list[VersionPlan] = []
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
        label = item.get("label")
        plans.append(
            VersionPlan(
                entry=entry,
                label=(label if isinstance(label, str) and label.strip() else f"version-{i + 1}")[
                    :200
                ],
                is_default=bool(item.get("is_default")),
                id_hint=item.get("id") if is_uuid(item.get("id")) else None,
                effects_chain=_effects_chain(item.get("effects_chain"), where),
                source_version_id=(
                    item.get("source_version_id")
                    if is_uuid(item.get("source_version_id"))
                    else None
                ),
                sha256=sha_field(item.get("sha256")),
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


def sha_field(value: object) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value
    return None


def plan_samples_v10(zf: SafeZip, prefix: str = "") -> list[SamplePlan]:
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
            SamplePlan(
                entry=entry,
                reference_text=_reference_text(text, f"samples.json[{filename!r}]"),
                id_hint=stem if is_uuid(stem) else None,
            )
        )
    return plans


def plan_samples_v11(zf: SafeZip, items: object, where: str) -> list[SamplePlan]:
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
            SamplePlan(
                entry=entry,
                reference_text=_reference_text(item.get("reference_text"), at),
                id_hint=sid,
                sha256=sha_field(item.get("sha256")),
                created_at=parse_time(item.get("created_at")),
            )
        )
    return plans


def plan_avatar(zf: SafeZip, avatar: object, plan: ProfilePlan, where: str) -> None:
    """A v1.1 manifest's ``avatar`` (``{file, sha256}``): its file must be in the bundle."""
    if isinstance(avatar, dict) and avatar.get("file"):
        entry = avatar["file"]
        if not isinstance(entry, str) or not zf.has(entry):
            raise ValidationError(f"{where}: avatar file {entry!r} is not in the bundle")
        plan.avatar_entry = entry
        plan.avatar_sha256 = sha_field(avatar.get("sha256"))


def plan_profile(zf: SafeZip, manifest: dict[str, Any], minor: int) -> ProfilePlan:
    plan = profile_fields(manifest.get("profile"), "manifest.json")
    samples = manifest.get("samples") if minor >= 1 else None
    if isinstance(samples, list):
        plan.samples = plan_samples_v11(zf, samples, "manifest.json")
        plan_avatar(zf, manifest.get("avatar"), plan, "manifest.json")
    else:
        plan.samples = plan_samples_v10(zf)
    if plan.avatar_entry is None:
        avatars = [n for n in zf.files() if "/" not in n and n.startswith("avatar.")]
        if avatars:
            plan.avatar_entry = avatars[0]
    return plan


def plan_generation(data: object, where: str) -> GenerationPlan:
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
    return GenerationPlan(
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
        sha256=sha_field(data.get("sha256")),
    )


def audio_ext(entry: str) -> str:
    ext = entry.rsplit(".", 1)[-1].lower() if "." in entry.rsplit("/", 1)[-1] else ""
    if ext not in GENERATION_AUDIO_EXTS:
        raise ValidationError(
            f"{entry}: audio must be one of {', '.join(GENERATION_AUDIO_EXTS)} (by extension)"
        )
    return ext


def generation_entry(zf: SafeZip, manifest: dict[str, Any]) -> str:
    """The audio file of a generation bundle: its default version's, else the first in ``audio/``."""
    versions = manifest.get("versions")
    if isinstance(versions, list) and versions:
        chosen = next(
            (v for v in versions if isinstance(v, dict) and v.get("is_default")), versions[0]
        )
        filename = chosen.get("filename") if isinstance(chosen, dict) else None
        if not isinstance(filename, str) or "/" in filename:
            raise ValidationError("manifest.json versions: 'filename' must be a plain file name")
        entry = f"audio/{filename}"
        if not zf.has(entry):
            raise ValidationError(f"manifest.json names {filename!r} but the bundle has no {entry}")
        return entry
    audio = zf.files("audio/")
    if not audio:
        raise ValidationError("the bundle has no audio/ file")
    return audio[0]
