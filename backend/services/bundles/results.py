"""What a bundle import or export hands back to its caller (routes, the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.db.models import Generation

#: ``progress(stage, done, total)``: the CLI draws a bar from it; the API passes None.
Progress = Callable[[str, int, int], None]


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
