"""Request and response models, with Voicebox's field names so its clients work unchanged.

Why mirror Voicebox (upstream ``backend/models.py``) field by field: the desktop app and scripts written for
Voicebox parse these answers. Fields we add (``sha256``, ``duration`` on samples, ``worker_id`` on health) are
extra keys, which Voicebox clients ignore. Paths in answers are relative to the volume's ``voicebox/`` folder —
never server paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from backend.services.common import LANGUAGES, VOLUME_NAME_MAX, VOLUME_NAME_PATTERN
from backend.storage.effects import parse_stored

if TYPE_CHECKING:
    from backend.db.models import Generation, GenerationVersion, Profile, ProfileSample

LANGUAGE_PATTERN = "^(" + "|".join(LANGUAGES) + ")$"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A time in an answer: the database keeps naive UTC; answers say so (``2024-05-01T12:00:00Z``), as the spec's
#: ``format: date-time`` requires. The Voicebox app appends ``Z`` only to a time that has no zone, so it parses
#: both forms.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
AUDIO_FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "opus")


# ---------------------------------------------------------------------------------------------- profiles
class VoiceProfileCreate(BaseModel):
    """``POST /profiles`` and ``PUT /profiles/{id}`` (PUT replaces every field, as in Voicebox)."""

    name: str = Field(..., min_length=1, max_length=100)
    description: str | None = Field(None, max_length=500)
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    # Upstream-only fields: accepted so its client can send them; only cloned voices exist here.
    voice_type: Literal["cloned"] | None = Field(
        default="cloned", description="only cloned voices exist here (from samples)"
    )
    preset_engine: str | None = Field(None, max_length=50)
    preset_voice_id: str | None = Field(None, max_length=100)
    design_prompt: str | None = Field(None, max_length=2000)
    default_engine: str | None = Field(None, max_length=50)
    personality: str | None = Field(None, max_length=2000)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name must not be blank")
        return value

    @field_validator("voice_type", mode="before")
    @classmethod
    def _cloned_only(cls, value: object) -> object:
        if value not in (None, "cloned"):
            raise ValueError(
                f"voice_type {value!r} is not supported: this server clones voices from samples only "
                "(use 'cloned')"
            )
        return value


class VoiceProfileResponse(BaseModel):
    id: str
    name: str
    description: str | None = None
    language: str
    avatar_path: str | None = None
    effects_chain: list[Any] | None = None
    voice_type: str = "cloned"
    preset_engine: str | None = None
    preset_voice_id: str | None = None
    design_prompt: str | None = None
    default_engine: str | None = None
    personality: str | None = None
    generation_count: int = 0
    sample_count: int = 0
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def from_row(
        cls, row: Profile, *, sample_count: int = 0, generation_count: int = 0
    ) -> VoiceProfileResponse:
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            language=row.language,
            avatar_path=row.avatar_path,
            effects_chain=parse_stored(row.effects_chain),
            sample_count=sample_count,
            generation_count=generation_count,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ProfileDeleteResponse(BaseModel):
    message: str
    samples_deleted: int = 0
    generations_kept: int = Field(
        0, description="history rows kept: profile_id becomes null, profile_name stays"
    )


# ---------------------------------------------------------------------------------------------- samples
class ProfileSampleUpdate(BaseModel):
    reference_text: str = Field(..., min_length=1, max_length=1000)


class ProfileSampleResponse(BaseModel):
    id: str
    profile_id: str
    audio_path: str
    reference_text: str
    duration: float | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    created_at: UtcDatetime | None = None

    @classmethod
    def from_row(cls, row: ProfileSample) -> ProfileSampleResponse:
        return cls(
            id=row.id,
            profile_id=row.profile_id,
            audio_path=row.audio_path,
            reference_text=row.reference_text,
            duration=row.duration,
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            created_at=row.created_at,
        )


# ---------------------------------------------------------------------------------------------- history
class GenerationVersionResponse(BaseModel):
    """Upstream's ``GenerationVersionResponse``: one audio version of a generation."""

    id: str
    generation_id: str
    label: str
    audio_path: str
    effects_chain: list[Any] | None = None
    source_version_id: str | None = None
    is_default: bool = False
    text: str | None = None
    language: str | None = None
    instruct: str | None = None
    seed: int | None = None
    duration: float | None = None
    created_at: UtcDatetime

    @classmethod
    def from_row(cls, row: GenerationVersion) -> GenerationVersionResponse:
        return cls(
            id=row.id,
            generation_id=row.generation_id,
            label=row.label,
            audio_path=row.audio_path,
            effects_chain=parse_stored(row.effects_chain),
            source_version_id=row.source_version_id,
            is_default=bool(row.is_default),
            text=row.text,
            language=row.language,
            instruct=row.instruct,
            seed=row.seed,
            duration=row.duration,
            created_at=row.created_at,
        )


class GenerationResponse(BaseModel):
    """Voicebox upstream's ``GenerationResponse`` plus timings; ``audio_path`` is volume-relative."""

    id: str
    profile_id: str | None = None
    text: str
    language: str
    audio_path: str | None = None
    duration: float | None = None
    seed: int | None = None
    instruct: str | None = None
    engine: str | None = "qwen"
    model_size: str | None = None
    status: str = "completed"
    error: str | None = None
    is_favorited: bool = False
    source: str = "manual"
    created_at: UtcDatetime
    completed_at: UtcDatetime | None = None
    generation_time_seconds: float | None = None
    versions: list[GenerationVersionResponse] | None = None
    active_version_id: str | None = None

    @classmethod
    def fields_from_row(cls, row: Generation) -> dict[str, Any]:
        # the versions when they were loaded with the row (a row just created has none loaded)
        loaded = row.__dict__.get("versions")
        versions = [GenerationVersionResponse.from_row(v) for v in loaded or []]
        active = next((v.id for v in versions if v.is_default), None)
        return {
            "versions": versions or None,
            "active_version_id": active,
            "id": row.id,
            "profile_id": row.profile_id,
            "text": row.text,
            "language": row.language,
            "audio_path": row.audio_path,
            "duration": row.duration,
            "seed": row.seed,
            "instruct": row.instruct,
            "engine": row.engine,
            "model_size": row.model_size,
            "status": row.status,
            "error": row.error,
            "is_favorited": bool(row.is_favorited),
            "source": row.source,
            "created_at": row.created_at,
            "completed_at": row.completed_at,
            "generation_time_seconds": row.synthesis_seconds,
        }

    @classmethod
    def from_row(cls, row: Generation) -> GenerationResponse:
        return cls(**cls.fields_from_row(row))


class HistoryResponse(GenerationResponse):
    """A history entry: the generation plus the profile's name, kept after the profile is deleted."""

    profile_name: str | None = None

    @classmethod
    def from_row(cls, row: Generation) -> HistoryResponse:
        return cls(**cls.fields_from_row(row), profile_name=row.profile_name)


class HistoryListResponse(BaseModel):
    items: list[HistoryResponse]
    total: int
    next_cursor: str | None = Field(
        None,
        description="pass as `after` for the next page (keyset paging: as fast at row 1,000,000 as at row 50); "
        "null on the last page",
    )


class HistoryStatsResponse(BaseModel):
    total_generations: int
    total_duration_seconds: float
    generations_by_profile: dict[str, int]
    favorites: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)


class FavoriteResponse(BaseModel):
    is_favorited: bool


class GenerationImportResponse(BaseModel):
    id: str
    profile_id: str | None
    profile_name: str | None
    text: str
    duration: float | None = None
    message: str


# ---------------------------------------------------------------------------------------------- misc
class ErrorResponse(BaseModel):
    """Every error answer, whatever the status: ``detail`` is a message for a person, or (422) FastAPI's list of
    ``{loc, msg, type, input}``; ``/v1`` routes add OpenAI's ``error`` object beside it."""

    detail: str | list[dict[str, Any]]
    error: dict[str, Any] | None = None


#: The statuses any operation may answer by design besides its success (``docs/api.md``, Conventions), all with
#: ``ErrorResponse``: declared on every operation so clients (and schemathesis) know them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "malformed or unusable input"),
        (401, "an API key is required or wrong (VOICEBOX_API_KEYS)"),
        (403, "an admin key is required, or a browser origin / Host this server does not serve"),
        (404, "an unknown id, or its file is gone"),
        (409, "a conflict: a taken name, work in progress"),
        (413, "an upload over its size limit"),
        (422, "a field out of range"),
        (429, "too much queued work; retry later"),
        (500, "a bug: the answer carries only a reference id"),
        (503, "the database is busy or unusable"),
        (504, "the work did not finish in time"),
        (507, "the volume is full"),
    )
}


class MessageResponse(BaseModel):
    message: str


class HealthResponse(BaseModel):
    """Voicebox's ``HealthResponse`` plus what an operator of a shared volume needs."""

    model_config = ConfigDict(protected_namespaces=())

    status: str
    model_loaded: bool = False
    model_downloaded: bool | None = None
    model_size: str | None = None
    gpu_available: bool = False
    gpu_type: str | None = None
    vram_used_mb: float | None = None
    backend_type: str | None = "pytorch"
    backend_variant: str | None = None
    worker_id: str
    database_revision: str | None = None
    database: str | None = Field(
        None, description="sqlite-volume (the default) or postgresql (VOICEBOX_DATABASE_URL)"
    )
    database_error: str | None = None
    reasons: list[str] = Field(
        default_factory=list,
        description="why status is degraded: volume full/read-only, database missing/empty/unreadable, "
        "lease unreachable",
    )
    tts_model: str | None = None
    stt_model: str | None = None
    serverless: bool = False
    version: str
    #: set when the TTS model is not in the cache: "<repo> not downloaded — run `...`" (before a generate fails)
    model_hint: str | None = None


class RootResponse(BaseModel):
    message: str
    version: str


# ---------------------------------------------------------------------------------------------- bundles
class LibraryExportRequest(BaseModel):
    """``POST /library/export``: write the whole library to ``voicebox/exports/<volume_name>``."""

    volume_name: str = Field(
        ..., min_length=1, max_length=VOLUME_NAME_MAX, pattern=VOLUME_NAME_PATTERN
    )
    include_history: bool = False


class VolumeExportResponse(BaseModel):
    volume_name: str
    size_bytes: int
    sha256: str
    profiles: int
    samples: int
    generations: int
    message: str


class ImportReport(BaseModel):
    """What a bulk import did; importing the same bundle again creates nothing and says so."""

    profiles_created: list[str] = Field(default_factory=list)
    profiles_skipped: list[str] = Field(default_factory=list)
    profiles_renamed: dict[str, str] = Field(default_factory=dict)
    samples_created: int = 0
    samples_skipped: int = 0
    generations_created: int = 0
    generations_skipped: int = 0
    message: str = ""
