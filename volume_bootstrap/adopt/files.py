"""The files adopted rows reference: copying them onto the volume (atomic, identical ones reused), undoing the
copies, and filling hashes, sizes and durations into the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.storage.blobs import BlobStore, StoredBlob, safe_relative, sha256_file
from volume_bootstrap.adopt.errors import AdoptionError
from volume_bootstrap.adopt.plan import Plan
from volume_bootstrap.adopt.values import ANCHORS, audio_duration

log = logging.getLogger(__name__)


def attach_files(
    plan: Plan, files_root: Path, stored: Mapping[str, StoredBlob] | None = None
) -> list[dict[str, str]]:
    """Fill sha256/size/duration from the stored files and list the rows whose file is absent.

    ``stored`` holds what ``adopt_data_dir`` just copied (hash known); a file only found on the volume gets its
    size and duration (hashing every legacy file at boot, under the lease, would stall peers' cold starts).
    """
    missing: list[dict[str, str]] = []
    stored = stored or {}
    for row in plan.profiles:
        rel = row["avatar_path"]
        if rel and rel not in stored and not (files_root / rel).is_file():
            missing.append({"table": "profiles", "id": row["id"], "path": rel})
    for table, rows in (
        ("profile_samples", plan.samples),
        ("generations", plan.generations),
        ("generation_versions", plan.extras.versions),
    ):
        for row in rows:
            rel = row["audio_path"]
            if not rel:
                continue
            full = files_root / rel
            blob = stored.get(rel)
            if blob is not None:
                row["sha256"], row["size_bytes"] = blob.sha256, blob.size
            elif full.is_file():
                row["size_bytes"] = full.stat().st_size
            else:
                missing.append({"table": table, "id": row["id"], "path": rel})
                continue
            if row["duration"] is None:
                row["duration"] = audio_duration(full)
    plan.missing_files = missing
    return missing


def source_files(root: Path) -> set[str]:
    """Every file under the legacy ``profiles/`` and ``generations/`` (relative paths), adopted or
    not."""
    found: set[str] = set()
    for top in ANCHORS:
        base = root / top
        if base.is_dir():
            found.update(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
    return found


@dataclass
class CopiedFiles:
    """What ``copy_files`` did: ``created`` grows file by file, so a failure half-way can undo exactly those."""

    stored: dict[str, StoredBlob] = field(
        default_factory=dict
    )  # every adopted file, copied or reused
    created: list[str] = field(default_factory=list)  # the files this run wrote
    absent: list[dict[str, str]] = field(default_factory=list)  # rows whose file the source lacks
    reused: int = 0  # identical files already on the volume

    @property
    def bytes_copied(self) -> int:
        return sum(self.stored[rel].size for rel in self.created)


def copy_files(plan: Plan, source_root: Path, blobs: BlobStore, copied: CopiedFiles) -> None:
    """Copy every referenced file that exists; identical files already on the volume are reused."""
    for rel, refs in sorted(plan.referenced_files().items()):
        source = source_root.joinpath(*safe_relative(rel).parts)
        if not source.is_file():
            for ref in refs:
                table, row_id = ref.split(":", 1)
                copied.absent.append({"table": table, "id": row_id, "path": rel})
            continue
        target = blobs.path(rel)
        if target.exists():
            digest = sha256_file(source)
            if target.is_file() and sha256_file(target) == digest:
                copied.stored[rel] = StoredBlob(rel, target.stat().st_size, digest)
                copied.reused += 1
                continue
            raise AdoptionError(
                f"the volume already has a different file at voicebox/{rel}; move it away (or remove it) "
                "and retry — adoption never overwrites a file"
            )
        copied.stored[rel] = blobs.write_file(rel, source)
        copied.created.append(rel)


def remove_created(blobs: BlobStore, created: Sequence[str]) -> None:
    """Undo the copies; empty per-profile folders go too, the layout's top folders stay."""
    for rel in created:
        blobs.delete(rel)
        parent = blobs.path(rel).parent
        while parent.parent != blobs.root and parent.is_dir():
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def remove_moved(stored: Mapping[str, StoredBlob], source_root: Path) -> int:
    """``--move``, after the publish (or commit): the adopted source files go; how many did."""
    moved = 0
    for rel in stored:
        try:
            (source_root / rel).unlink()
            moved += 1
        except OSError as exc:  # published already: a leftover source file loses nothing
            log.warning("could not remove %s after adoption: %s", source_root / rel, exc)
    return moved
