"""Stories: upstream Voicebox's routes and shapes (``StoryResponse``, ``StoryDetailResponse``,
``StoryItemDetail``), and the mixdown as WAV."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from backend.api.deps import file_answer, get_services, temp_file_response
from backend.db.models import Story, StoryItem
from backend.schemas import GenerationVersionResponse, UtcDatetime
from backend.services.container import Services
from backend.services.stories import MAX_START_MS, MAX_TRACK, clip_audio_path

router = APIRouter(tags=["stories"])

ID = Field(min_length=1, max_length=64)
#: a clip starts within the first hour; lanes are small integers (negative ones too, as upstream's editor)


class StoryCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)


class StoryResponse(BaseModel):
    id: str
    name: str
    description: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    item_count: int = 0


class StoryItemDetail(BaseModel):
    id: str
    story_id: str
    generation_id: str
    version_id: str | None = None
    start_time_ms: int
    track: int = 0
    trim_start_ms: int = 0
    trim_end_ms: int = 0
    volume: float = 1.0
    fade_in_ms: int = 0
    fade_out_ms: int = 0
    speed: float = 1.0
    created_at: UtcDatetime
    profile_id: str | None = None
    profile_name: str | None = None
    text: str
    language: str
    audio_path: str | None = None
    duration: float | None = None
    seed: int | None = None
    instruct: str | None = None
    engine: str | None = None
    generation_created_at: UtcDatetime | None = None
    versions: list[GenerationVersionResponse] | None = None
    active_version_id: str | None = None


class StoryDetailResponse(StoryResponse):
    items: list[StoryItemDetail] = Field(default_factory=list)


class StoryItemCreate(BaseModel):
    generation_id: str = ID
    start_time_ms: int | None = Field(default=None, ge=0, le=MAX_START_MS)
    track: int | None = Field(default=None, ge=-MAX_TRACK, le=MAX_TRACK)


class StoryItemTime(BaseModel):
    generation_id: str = ID
    start_time_ms: int = Field(ge=0, le=MAX_START_MS)


class StoryItemBatchUpdate(BaseModel):
    updates: list[StoryItemTime] = Field(max_length=10000)


class StoryItemReorder(BaseModel):
    generation_ids: list[str] = Field(max_length=10000)


class StoryItemMove(BaseModel):
    start_time_ms: int = Field(ge=0, le=MAX_START_MS)
    track: int = Field(default=0, ge=-MAX_TRACK, le=MAX_TRACK)


class StoryItemTrim(BaseModel):
    trim_start_ms: int = Field(ge=0, le=MAX_START_MS)
    trim_end_ms: int = Field(ge=0, le=MAX_START_MS)


class StoryItemSplit(BaseModel):
    split_time_ms: int = Field(gt=0, le=MAX_START_MS)


class StoryItemVolumeUpdate(BaseModel):
    volume: float = Field(ge=0.0, le=2.0)


class StoryItemVersionUpdate(BaseModel):
    version_id: str | None = Field(default=None, max_length=64)


def _story(story: Story) -> StoryResponse:
    return StoryResponse(
        id=story.id,
        name=story.name,
        description=story.description,
        created_at=story.created_at,
        updated_at=story.updated_at,
        item_count=len(story.items),
    )


def _item(item: StoryItem) -> StoryItemDetail:
    generation = item.generation
    versions = [GenerationVersionResponse.from_row(v) for v in generation.versions]
    return StoryItemDetail(
        id=item.id,
        story_id=item.story_id,
        generation_id=item.generation_id,
        version_id=item.version_id,
        start_time_ms=item.start_time_ms,
        track=item.track,
        trim_start_ms=item.trim_start_ms,
        trim_end_ms=item.trim_end_ms,
        volume=item.volume,
        created_at=item.created_at,
        profile_id=generation.profile_id,
        profile_name=generation.profile_name,
        text=generation.text,
        language=generation.language,
        audio_path=clip_audio_path(item),
        duration=generation.duration,
        seed=generation.seed,
        instruct=generation.instruct,
        engine=generation.engine,
        generation_created_at=generation.created_at,
        versions=versions,
        active_version_id=next((v.id for v in versions if v.is_default), None),
    )


def _detail(story: Story) -> StoryDetailResponse:
    return StoryDetailResponse(**_story(story).model_dump(), items=[_item(i) for i in story.items])


@router.get("/stories", response_model=list[StoryResponse])
def list_stories(services: Services = Depends(get_services)) -> list[StoryResponse]:
    return [_story(s) for s in services.stories.list()]


@router.post("/stories", response_model=StoryResponse)
def create_story(data: StoryCreate, services: Services = Depends(get_services)) -> StoryResponse:
    return _story(services.stories.create(data.name, data.description))


@router.get("/stories/{story_id}", response_model=StoryDetailResponse)
def get_story(story_id: str, services: Services = Depends(get_services)) -> StoryDetailResponse:
    return _detail(services.stories.get(story_id))


@router.put("/stories/{story_id}", response_model=StoryResponse)
def update_story(
    story_id: str, data: StoryCreate, services: Services = Depends(get_services)
) -> StoryResponse:
    return _story(services.stories.update(story_id, data.name, data.description))


@router.delete("/stories/{story_id}")
def delete_story(story_id: str, services: Services = Depends(get_services)) -> dict[str, str]:
    services.stories.delete(story_id)
    return {"message": "Story deleted successfully"}


@router.post("/stories/{story_id}/items", response_model=StoryItemDetail)
def add_story_item(
    story_id: str, data: StoryItemCreate, services: Services = Depends(get_services)
) -> StoryItemDetail:
    return _item(
        services.stories.add_item(story_id, data.generation_id, data.start_time_ms, data.track)
    )


@router.delete("/stories/{story_id}/items/{item_id}")
def remove_story_item(
    story_id: str, item_id: str, services: Services = Depends(get_services)
) -> dict[str, str]:
    services.stories.remove_item(story_id, item_id)
    return {"message": "Item removed successfully"}


@router.put("/stories/{story_id}/items/times")
def update_story_item_times(
    story_id: str, data: StoryItemBatchUpdate, services: Services = Depends(get_services)
) -> dict[str, str]:
    services.stories.set_times(story_id, [(u.generation_id, u.start_time_ms) for u in data.updates])
    return {"message": "Item timecodes updated successfully"}


@router.put("/stories/{story_id}/items/reorder", response_model=list[StoryItemDetail])
def reorder_story_items(
    story_id: str, data: StoryItemReorder, services: Services = Depends(get_services)
) -> list[StoryItemDetail]:
    return [_item(i) for i in services.stories.reorder(story_id, data.generation_ids)]


@router.put("/stories/{story_id}/items/{item_id}/move", response_model=StoryItemDetail)
def move_story_item(
    story_id: str, item_id: str, data: StoryItemMove, services: Services = Depends(get_services)
) -> StoryItemDetail:
    return _item(services.stories.move(story_id, item_id, data.start_time_ms, data.track))


@router.put("/stories/{story_id}/items/{item_id}/trim", response_model=StoryItemDetail)
def trim_story_item(
    story_id: str, item_id: str, data: StoryItemTrim, services: Services = Depends(get_services)
) -> StoryItemDetail:
    return _item(services.stories.trim(story_id, item_id, data.trim_start_ms, data.trim_end_ms))


@router.put("/stories/{story_id}/items/{item_id}/volume", response_model=StoryItemDetail)
def set_story_item_volume(
    story_id: str,
    item_id: str,
    data: StoryItemVolumeUpdate,
    services: Services = Depends(get_services),
) -> StoryItemDetail:
    return _item(services.stories.set_volume(story_id, item_id, data.volume))


@router.post("/stories/{story_id}/items/{item_id}/split", response_model=list[StoryItemDetail])
def split_story_item(
    story_id: str, item_id: str, data: StoryItemSplit, services: Services = Depends(get_services)
) -> list[StoryItemDetail]:
    return [_item(i) for i in services.stories.split(story_id, item_id, data.split_time_ms)]


@router.post("/stories/{story_id}/items/{item_id}/duplicate", response_model=StoryItemDetail)
def duplicate_story_item(
    story_id: str, item_id: str, services: Services = Depends(get_services)
) -> StoryItemDetail:
    return _item(services.stories.duplicate(story_id, item_id))


@router.put("/stories/{story_id}/items/{item_id}/version", response_model=StoryItemDetail)
def set_story_item_version(
    story_id: str,
    item_id: str,
    data: StoryItemVersionUpdate,
    services: Services = Depends(get_services),
) -> StoryItemDetail:
    return _item(services.stories.set_version(story_id, item_id, data.version_id))


@router.get(
    "/stories/{story_id}/export-audio",
    response_class=FileResponse,
    responses=file_answer("audio/wav", description="the story's mixdown"),
)
def export_story_audio(
    story_id: str,
    format: str = Query("wav", pattern="^wav$", description="only wav here"),
    services: Services = Depends(get_services),
) -> FileResponse:
    exported = services.stories.export_audio(story_id)
    return temp_file_response(exported.path, exported.filename, "audio/wav")
