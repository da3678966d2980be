"""What ``GET /health`` reports: cheap on purpose (no cache scans, no network, no model load).

Voicebox scanned the Hugging Face cache on every health call and reset the model idle timer from it; UI
polling made both costly. Here the database revision comes from the local copy (a ``stat`` at most), and model
facts come from the engines object only if it offers a cheap ``health()``.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from backend import __version__
from backend.services.volume_health import volume_reasons

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.db.interface import Database
    from backend.engines.base import Engines

log = logging.getLogger(__name__)
VERSION = __version__
ENGINE_KEYS = (
    "model_loaded",
    "model_downloaded",
    "model_size",
    "gpu_available",
    "gpu_type",
    "vram_used_mb",
    "backend_type",
    "backend_variant",
    "model_hint",
)


def _gpu_from_torch() -> dict[str, Any]:
    """GPU facts only if torch is already imported (importing it here would cost seconds)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if torch.cuda.is_available():
            return {"gpu_available": True, "gpu_type": "CUDA"}
    except Exception:  # noqa: BLE001 - a broken driver must not break health
        log.debug("torch.cuda probe failed", exc_info=True)
    return {"gpu_available": False}


def health_info(settings: Settings, db: Database, engines: Engines | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "status": "healthy",
        "model_loaded": False,
        "gpu_available": False,
        "worker_id": settings.worker_id,
        "tts_model": settings.tts_model,
        "stt_model": settings.stt_model,
        "serverless": settings.serverless,
        "version": VERSION,
    }
    reasons = volume_reasons(db)
    try:
        info["database_revision"] = db.current_revision()
        info["database"] = db.kind.value
    except Exception as exc:  # noqa: BLE001 - health reports problems, it does not raise them
        info["database_error"] = str(exc)
        if not any(r.startswith("database") for r in reasons):
            reasons.append("database unreadable")
    if reasons:
        info["status"] = "degraded"
        info["reasons"] = reasons
    info.update(_gpu_from_torch())
    if engines is not None:
        try:
            extra = engines.health() or {}
            info.update({k: v for k, v in extra.items() if k in ENGINE_KEYS})
        except Exception:  # noqa: BLE001
            log.warning("engines.health() failed", exc_info=True)
    return info
