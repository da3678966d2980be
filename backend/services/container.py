"""The one object routes, the CLI and the RunPod handler get their services from.

Why a container instead of module globals: every test builds its own (temp volume, own database copy), two
workers in one test process can each have one, and nothing is created at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from backend.config import Settings
from backend.db.factory import open_database
from backend.db.interface import Database
from backend.engines.base import Engines
from backend.services.common import require_engines
from backend.storage.blobs import BlobStore

if TYPE_CHECKING:
    from backend.services.app_settings import AppSettingsService
    from backend.services.bundles import BundleService
    from backend.services.channels import ChannelService
    from backend.services.effects import EffectsService
    from backend.services.generation import GenerationService
    from backend.services.history import HistoryService
    from backend.services.model_management import ModelManagementService
    from backend.services.profiles import ProfileService
    from backend.services.stories import StoryService
    from backend.services.streaming import StreamingService
    from backend.services.transcription import TranscriptionService
    from backend.services.versions import VersionService


@dataclass
class Services:
    """Settings, the volume database and blob store, the engines (set by the worker that runs models), and the services.

    Each service is built on first use from what it takes (settings, database, blobs, engines, the services
    it calls), never from the container: a service's constructor says what it depends on.
    """

    settings: Settings
    db: Database
    blobs: BlobStore
    engines: Engines | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, *, engines: Engines | None = None) -> Services:
        """Services on an already bootstrapped volume (the caller runs ``bootstrap`` first)."""
        from migrations.runner import head_revision

        db = open_database(settings, expected_revision=head_revision())
        return cls(settings=settings, db=db, blobs=BlobStore(settings), engines=engines)

    def require_engines(self, what: str = "TTS engine") -> Engines:
        """The engines, or a 409 saying this worker has none (an API-only or maintenance process)."""
        return require_engines(self.engines, what)

    @cached_property
    def profiles(self) -> ProfileService:
        from backend.services.profiles import ProfileService

        return ProfileService(self.db, self.blobs, self.engines)

    @cached_property
    def history(self) -> HistoryService:
        from backend.services.history import HistoryService

        return HistoryService(self.db, self.blobs)

    @cached_property
    def versions(self) -> VersionService:
        from backend.services.versions import VersionService

        return VersionService(self.db, self.blobs)

    @cached_property
    def effects(self) -> EffectsService:
        from backend.services.effects import EffectsService

        return EffectsService(self.db)

    @cached_property
    def stories(self) -> StoryService:
        from backend.services.stories import StoryService

        return StoryService(self.db, self.blobs)

    @cached_property
    def bundles(self) -> BundleService:
        from backend.services.bundles import BundleService

        return BundleService(self.settings, self.db, self.blobs, self.engines)

    @classmethod
    def for_worker(cls, settings: Settings) -> Services:
        """Services with this worker's engines (loaded lazily; the launcher loads them eagerly)."""
        from backend.engines.manager import EngineManager

        return cls.create(settings, engines=EngineManager(settings))

    @cached_property
    def transcription(self) -> TranscriptionService:
        from backend.services.transcription import TranscriptionService

        return TranscriptionService(self.engines)

    @cached_property
    def generation(self) -> GenerationService:
        """The generation service (one per worker: it owns the synthesis thread)."""
        from backend.services.generation import GenerationService

        return GenerationService(self.settings, self.db, self.blobs, self.engines)

    @cached_property
    def app_settings(self) -> AppSettingsService:
        from backend.services.app_settings import AppSettingsService

        return AppSettingsService(self.db)

    @cached_property
    def channels(self) -> ChannelService:
        from backend.services.channels import ChannelService

        return ChannelService(self.db)

    @cached_property
    def model_management(self) -> ModelManagementService:
        """The app's Models page: catalogue, cache status, downloads (one per worker: it owns the threads)."""
        from backend.services.model_management import ModelManagementService

        return ModelManagementService(self.settings, self.engines)

    @cached_property
    def streaming(self) -> StreamingService:
        """Streamed generations (bounded by ``VOICEBOX_MAX_STREAMS``)."""
        from backend.services.streaming import StreamingService

        return StreamingService(
            self.settings, self.db, self.blobs, self.engines, generation=self.generation
        )

    def close(self) -> None:
        """Stop what the services started (only those that were used) and close the database."""
        started = self.__dict__  # cached_property stores a service here once it is used
        if "streaming" in started:
            self.streaming.close()
        if "generation" in started:
            self.generation.close()
        self.db.close()
