"""Import plans: what a bundle's manifest says, checked, before anything is written.

A plan is built from the manifest (``manifest.py``), its files are staged and validated (``staging.py``), and only
then one write unit turns the plans into rows (``profiles.py``, ``generations.py``). The ``staged``/``prepared``
fields are filled in by staging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.services.audio_prep import PreparedAudio
from backend.statuses import GenerationStatus

#: more versions than this in one generation bundle is refused (upstream's UI makes a handful)
MAX_BUNDLE_VERSIONS = 100


@dataclass
class SamplePlan:
    entry: str
    reference_text: str
    id_hint: str | None = None
    sha256: str | None = None
    created_at: Any = None
    prepared: PreparedAudio | None = None


@dataclass
class ProfilePlan:
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
    samples: list[SamplePlan] = field(default_factory=list)
    effects_chain: list[dict[str, Any]] | None = None


@dataclass
class GenerationPlan:
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
    versions: list[VersionPlan] = field(default_factory=list)


@dataclass
class VersionPlan:
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
