"""Voicebox's task, cache and filesystem routes: ``/tasks/active``, ``/tasks/clear``, ``/cache/clear``,
``/health/filesystem``. All cheap: the app polls ``/tasks/active`` every 5 to 30 s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from backend.api.admin import ADMIN
from backend.api.deps import get_services
from backend.services.container import Services
from backend.services.filesystem import filesystem_health

router = APIRouter(tags=["tasks"])

TEXT_PREVIEW = 50


@router.get("/tasks/active")
def active_tasks(services: Services = Depends(get_services)) -> dict[str, list[dict[str, Any]]]:
    """Voicebox's ``ActiveTasksResponse``: this worker's downloads and queued or running generations."""
    generations = []
    if "generation" in services.__dict__:  # never start the synthesis thread just to say it is idle
        for row in services.generation.active():
            generations.append(
                {
                    "task_id": row.id,
                    "profile_id": row.profile_id,
                    "text_preview": row.text[:TEXT_PREVIEW],
                    "started_at": row.created_at.isoformat(),
                }
            )
    return {"downloads": services.model_management.active_downloads(), "generations": generations}


@router.post("/tasks/clear", openapi_extra=ADMIN)
def clear_tasks(services: Services = Depends(get_services)) -> dict[str, Any]:
    """Forget finished and failed downloads (running ones go on); Voicebox's ``{message}``."""
    cleared = services.model_management.clear_tasks()
    return {"message": "All task state cleared", "cleared": cleared}


@router.post("/cache/clear", openapi_extra=ADMIN)
def clear_cache(services: Services = Depends(get_services)) -> dict[str, Any]:
    """Remove every cached voice prompt (memory and volume); they are rebuilt on the next generation."""
    deleted = services.engines.clear_prompts() if services.engines is not None else 0
    return {"message": "Voice prompt cache cleared successfully", "files_deleted": deleted}


@router.get("/health/filesystem")
def health_filesystem(services: Services = Depends(get_services)) -> dict[str, Any]:
    """Voicebox's ``FilesystemHealthResponse`` for the volume's folders (relative names, nothing written)."""
    return filesystem_health(services.settings)
