"""Stories (upstream Voicebox's): generations arranged on a timeline, and their mixdown.

Rules (upstream's, stated where this server checks more): a clip's start is 0 ms to one hour; trims are ≥ 0 and
leave some audio; a split point is strictly inside the trimmed clip; volume is 0–2 (linear gain); a pin names a
version of the clip's own generation (anything else is a 400 naming ``version_id``). A pinned version that is
deleted later leaves the pin NULL (the foreign key's ``ON DELETE SET NULL``) and the clip plays the generation's
default version — upstream resolves a pin it cannot find to the generation's ``audio_path``, which is the
default version's file. Every check runs before the write unit changes anything.
"""

from __future__ import annotations

import builtins  # the class's own ``list`` method shadows the builtin in its annotations
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Generation, Story, StoryItem, new_id, utcnow
from backend.services.common import download_name, write_retrying
from backend.services.errors import NotFoundError, ValidationError
from backend.statuses import GenerationStatus
from backend.storage.mixdown import Clip, mixdown

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.storage.blobs import BlobStore

T = TypeVar("T")

MAX_START_MS = 3_600_000  # one hour
MAX_TRACK = 1000
GAP_MS = 200  # upstream's gap between appended clips


@dataclass(frozen=True)
class StoryExport:
    path: Path
    filename: str


def clip_audio_path(item: StoryItem) -> str | None:
    """The pinned version's file, else the generation's default (upstream's rule)."""
    generation = item.generation
    if item.version_id:
        for version in generation.versions:
            if version.id == item.version_id:
                return version.audio_path
    return generation.audio_path


def clip_duration_ms(item: StoryItem) -> int:
    generation = item.generation
    if item.version_id:
        for version in generation.versions:
            if version.id == item.version_id and version.duration is not None:
                return int(version.duration * 1000)
    return int((generation.duration or 0) * 1000)


def _start(value: int, field: str = "start_time_ms") -> int:
    if not 0 <= value <= MAX_START_MS:
        raise ValidationError(f"{field} {value} must be between 0 and {MAX_START_MS} (one hour)")
    return value


def _track(value: int) -> int:
    if not -MAX_TRACK <= value <= MAX_TRACK:
        raise ValidationError(f"track {value} must be between {-MAX_TRACK} and {MAX_TRACK}")
    return value


class StoryService:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    # ------------------------------------------------------------------ stories
    def list(self) -> list[Story]:
        with self.db.read() as session:
            return list(session.scalars(select(Story).order_by(Story.updated_at.desc())))

    def get(self, story_id: str) -> Story:
        with self.db.read() as session:
            return _story(session, story_id)

    def create(self, name: str, description: str | None) -> Story:
        name = _name(name)

        def unit(session: Session) -> Story:
            now = utcnow()
            story = Story(
                id=new_id(), name=name, description=description, created_at=now, updated_at=now
            )
            session.add(story)
            session.flush()
            session.refresh(story)
            return story

        return write_retrying(self.db, unit)

    def update(self, story_id: str, name: str, description: str | None) -> Story:
        name = _name(name)

        def unit(session: Session) -> Story:
            story = _story(session, story_id)
            story.name, story.description, story.updated_at = name, description, utcnow()
            return story

        return write_retrying(self.db, unit)

    def delete(self, story_id: str) -> None:
        write_retrying(self.db, lambda session: session.delete(_story(session, story_id)))

    # ------------------------------------------------------------------ items
    def _edit(self, story_id: str, fn: Callable[[Session, Story], T]) -> T:
        def unit(session: Session) -> T:
            story = _story(session, story_id)
            result = fn(session, story)
            story.updated_at = utcnow()
            return result

        return write_retrying(self.db, unit)

    def add_item(
        self, story_id: str, generation_id: str, start_time_ms: int | None, track: int | None
    ) -> StoryItem:
        if start_time_ms is not None:
            _start(start_time_ms)
        if track is not None:
            _track(track)

        def fn(session: Session, story: Story) -> StoryItem:
            generation = session.get(Generation, generation_id)
            if generation is None:
                raise NotFoundError(f"generation {generation_id!r} not found")
            if generation.status != GenerationStatus.COMPLETED or not generation.audio_path:
                raise ValidationError(
                    f"generation_id {generation_id!r} is {generation.status}; only completed "
                    "generations can be put in a story"
                )
            lane = track or 0
            start = start_time_ms
            if start is None:  # appended after the lane's last clip (upstream's rule)
                ends = [
                    i.start_time_ms + clip_duration_ms(i) - i.trim_start_ms - i.trim_end_ms
                    for i in story.items
                    if i.track == lane
                ]
                start = _start(max(ends) + GAP_MS if ends else 0)
            item = StoryItem(
                id=new_id(),
                story_id=story.id,
                generation_id=generation.id,
                start_time_ms=start,
                track=lane,
                trim_start_ms=0,
                trim_end_ms=0,
                volume=1.0,
                created_at=utcnow(),
            )
            item.generation = generation
            story.items.append(item)
            return item

        return self._edit(story_id, fn)

    def remove_item(self, story_id: str, item_id: str) -> None:
        def fn(session: Session, story: Story) -> None:
            item = _item(story, item_id)
            story.items.remove(item)
            session.delete(item)

        self._edit(story_id, fn)

    def move(self, story_id: str, item_id: str, start_time_ms: int, track: int) -> StoryItem:
        _start(start_time_ms)
        _track(track)

        def fn(session: Session, story: Story) -> StoryItem:
            item = _item(story, item_id)
            item.start_time_ms, item.track = start_time_ms, track
            return item

        return self._edit(story_id, fn)

    def set_times(self, story_id: str, updates: Sequence[tuple[str, int]]) -> None:
        for _gen, start in updates:
            _start(start)

        def fn(session: Session, story: Story) -> None:
            by_generation = {i.generation_id: i for i in story.items}
            for gen_id, _start_ms in updates:
                if gen_id not in by_generation:
                    raise ValidationError(f"generation_id {gen_id!r} is not in this story")
            for gen_id, start in updates:
                by_generation[gen_id].start_time_ms = start

        self._edit(story_id, fn)

    def reorder(self, story_id: str, generation_ids: Sequence[str]) -> builtins.list[StoryItem]:
        def fn(session: Session, story: Story) -> builtins.list[StoryItem]:
            by_generation = {i.generation_id: i for i in story.items}
            if set(generation_ids) != set(by_generation) or len(generation_ids) != len(
                by_generation
            ):
                raise ValidationError(
                    "generation_ids must name every generation of this story exactly once"
                )
            cursor, ordered = 0, []
            for gen_id in generation_ids:
                item = by_generation[gen_id]
                item.start_time_ms = _start(cursor)
                cursor += clip_duration_ms(item) + GAP_MS
                ordered.append(item)
            return ordered

        return self._edit(story_id, fn)

    def trim(self, story_id: str, item_id: str, trim_start_ms: int, trim_end_ms: int) -> StoryItem:
        if trim_start_ms < 0 or trim_end_ms < 0:
            raise ValidationError("trim_start_ms and trim_end_ms must be 0 or more")

        def fn(session: Session, story: Story) -> StoryItem:
            item = _item(story, item_id)
            if trim_start_ms + trim_end_ms >= clip_duration_ms(item):
                raise ValidationError(
                    f"trim_start_ms + trim_end_ms ({trim_start_ms + trim_end_ms}) must be less than "
                    f"the clip's {clip_duration_ms(item)} ms"
                )
            item.trim_start_ms, item.trim_end_ms = trim_start_ms, trim_end_ms
            return item

        return self._edit(story_id, fn)

    def split(self, story_id: str, item_id: str, split_time_ms: int) -> builtins.list[StoryItem]:
        def fn(session: Session, story: Story) -> builtins.list[StoryItem]:
            item = _item(story, item_id)
            full = clip_duration_ms(item)
            effective = full - item.trim_start_ms - item.trim_end_ms
            if not 0 < split_time_ms < effective:
                raise ValidationError(
                    f"split_time_ms {split_time_ms} must be inside the clip (between 0 and "
                    f"{effective} ms, exclusive)"
                )
            absolute = item.trim_start_ms + split_time_ms
            tail = StoryItem(
                id=new_id(),
                story_id=story.id,
                generation_id=item.generation_id,
                version_id=item.version_id,
                start_time_ms=_start(item.start_time_ms + split_time_ms),
                track=item.track,
                trim_start_ms=absolute,
                trim_end_ms=item.trim_end_ms,
                volume=item.volume,
                created_at=utcnow(),
            )
            tail.generation = item.generation
            item.trim_end_ms = full - absolute
            story.items.append(tail)
            return [item, tail]

        return self._edit(story_id, fn)

    def duplicate(self, story_id: str, item_id: str) -> StoryItem:
        def fn(session: Session, story: Story) -> StoryItem:
            item = _item(story, item_id)
            effective = clip_duration_ms(item) - item.trim_start_ms - item.trim_end_ms
            copy = StoryItem(
                id=new_id(),
                story_id=story.id,
                generation_id=item.generation_id,
                version_id=item.version_id,
                start_time_ms=_start(item.start_time_ms + effective + GAP_MS),
                track=item.track,
                trim_start_ms=item.trim_start_ms,
                trim_end_ms=item.trim_end_ms,
                volume=item.volume,
                created_at=utcnow(),
            )
            copy.generation = item.generation
            story.items.append(copy)
            return copy

        return self._edit(story_id, fn)

    def set_volume(self, story_id: str, item_id: str, volume: float) -> StoryItem:
        if not 0.0 <= volume <= 2.0:
            raise ValidationError(f"volume {volume} must be between 0.0 and 2.0")

        def fn(session: Session, story: Story) -> StoryItem:
            item = _item(story, item_id)
            item.volume = volume
            return item

        return self._edit(story_id, fn)

    def set_version(self, story_id: str, item_id: str, version_id: str | None) -> StoryItem:
        def fn(session: Session, story: Story) -> StoryItem:
            item = _item(story, item_id)
            if version_id is not None and version_id not in {
                v.id for v in item.generation.versions
            }:
                raise ValidationError(
                    f"version_id {version_id!r} is not a version of generation "
                    f"{item.generation_id!r}"
                )
            item.version_id = version_id
            return item

        return self._edit(story_id, fn)

    # ------------------------------------------------------------------ export
    def export_audio(self, story_id: str) -> StoryExport:
        """The mixdown as a WAV temp file (bounded memory, ``backend.storage.mixdown``)."""
        with self.db.read() as session:
            story = _story(session, story_id)
            name = story.name
            clips = []
            for item in story.items:
                rel = clip_audio_path(item)
                if not rel or not self.blobs.exists(rel):
                    raise NotFoundError(
                        f"the audio of story item {item.id!r} (generation {item.generation_id!r}) is "
                        "missing on the volume"
                    )
                clips.append(
                    Clip(
                        self.blobs.path(rel),
                        item.start_time_ms,
                        item.trim_start_ms,
                        item.trim_end_ms,
                        item.volume,
                    )
                )
        if not clips:
            raise ValidationError("Story has no audio items")
        tmp = self.blobs.new_tmp_path(".wav")
        try:
            mixdown(clips, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoryExport(tmp, download_name(name, "story", ".wav"))


def _story(session: Session, story_id: str) -> Story:
    story = session.get(Story, story_id)
    if story is None:
        raise NotFoundError(f"story {story_id!r} not found")
    return story


def _item(story: Story, item_id: str) -> StoryItem:
    for item in story.items:
        if item.id == item_id:
            return item
    raise NotFoundError(f"story item {item_id!r} not found in story {story.id!r}")


def _name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise ValidationError("name must be 1 to 200 characters")
    return name
