"""The desktop app's model management on the volume's Hugging Face cache (Voicebox's ``/models/*`` routes).

Why here and not in the engines: the engines load one configured model each; this is the catalogue the app's
Models page shows (the Qwen3-TTS Base sizes and the Whisper sizes, under Voicebox's model names), what the cache
on the volume holds of each, and downloads the app can start, follow and cancel. Downloads run on a thread under
the repo's download lease (``hfcache.download_snapshot``), so two workers never fill one cache path at once; a
download that fails or is cancelled removes what it wrote when the repo was not in the cache before.

Nothing here imports ``huggingface_hub`` at import time, and nothing in a status answer touches the network.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.engines.hfcache import (
    check_snapshot,
    hub_cache_dir,
    offline_requested,
    repo_cache_dir,
    repo_lease,
)
from backend.services.common import require_engines
from backend.services.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.engines.base import Engines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    """One entry of the catalogue: Voicebox's ``model_name`` and the Hugging Face repo it is."""

    model_name: str
    display_name: str
    hf_repo_id: str | None
    kind: str  # "tts" or "stt"
    size_mb: int | None = None


CATALOGUE: tuple[KnownModel, ...] = (
    KnownModel("qwen-tts-1.7B", "Qwen TTS 1.7B", "Qwen/Qwen3-TTS-12Hz-1.7B-Base", "tts", 3500),
    KnownModel("qwen-tts-0.6B", "Qwen TTS 0.6B", "Qwen/Qwen3-TTS-12Hz-0.6B-Base", "tts", 1200),
    KnownModel("whisper-base", "Whisper Base", "openai/whisper-base", "stt", 290),
    KnownModel("whisper-small", "Whisper Small", "openai/whisper-small", "stt", 970),
    KnownModel("whisper-medium", "Whisper Medium", "openai/whisper-medium", "stt", 3100),
    KnownModel("whisper-large", "Whisper Large", "openai/whisper-large-v3", "stt", 6200),
    KnownModel("whisper-turbo", "Whisper Turbo", "openai/whisper-large-v3-turbo", "stt", 3200),
)


def _now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


class DownloadCancelled(Exception):
    """Raised inside the download thread when ``/models/download/cancel`` asked it to stop."""


@dataclass
class DownloadTask:
    """One download this worker runs (or ran): what ``/tasks/active`` and the progress stream report."""

    model_name: str
    repo_id: str
    started_at: str = field(default_factory=_now_iso)
    status: str = "downloading"  # downloading | complete | error | cancelled
    current: int = 0
    total: int = 0
    filename: str | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def progress_event(self) -> dict[str, Any]:
        """Voicebox's ``ModelProgress`` event (the app's download toast and progress bar)."""
        percent = 100.0 if self.status == "complete" else 0.0
        if self.status != "complete" and self.total > 0:
            percent = min(99.9, 100.0 * self.current / self.total)
        return {
            "model_name": self.model_name,
            "current": self.current,
            "total": self.total,
            "progress": round(percent, 1),
            "filename": self.filename,
            "status": self.status if self.status != "cancelled" else "error",
            "timestamp": _now_iso(),
            "error": self.error,
        }

    def active_task(self) -> dict[str, Any]:
        """Voicebox's ``ActiveDownloadTask``."""
        event = self.progress_event()
        return {
            "model_name": self.model_name,
            "status": self.status,
            "started_at": self.started_at,
            "error": self.error,
            "progress": event["progress"],
            "current": self.current,
            "total": self.total,
            "filename": self.filename,
        }


#: ``downloader(hf_home, repo_id, task)`` fills the cache (raising on failure); tests inject their own
Downloader = Callable[[Path, str, DownloadTask], None]


def _blob_bytes(repo_dir: Path) -> int:
    total = 0
    for path in (repo_dir / "blobs").glob("*"):
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


def hub_downloader(lease_seconds: float) -> Downloader:
    """The real download: ``hfcache.download_snapshot`` with byte progress read from the blobs folder."""

    def download(hf_home: Path, repo_id: str, task: DownloadTask) -> None:
        from huggingface_hub import HfApi
        from tqdm.auto import tqdm

        from backend.engines.hfcache import download_snapshot

        try:
            info = HfApi().model_info(repo_id, files_metadata=True)
            task.total = sum(int(s.size or 0) for s in info.siblings or [])
        except Exception as exc:  # noqa: BLE001 - the download itself says what is wrong
            log.info("no size for %s: %s", repo_id, exc)

        class Files(tqdm):
            """The hub's bar of files: stop between files when cancelled."""

            def update(self, n: float | None = 1) -> bool | None:
                if task.cancel.is_set():
                    raise DownloadCancelled
                return super().update(n)

        stop = threading.Event()

        def watch() -> None:
            repo_dir = repo_cache_dir(hf_home, repo_id)
            while not stop.wait(0.5):
                task.current = _blob_bytes(repo_dir)

        watcher = threading.Thread(target=watch, name=f"download-watch-{repo_id}", daemon=True)
        watcher.start()
        try:
            status = download_snapshot(
                hf_home, repo_id, lease_seconds=lease_seconds, tqdm_class=Files
            )
        finally:
            stop.set()
            watcher.join(timeout=2)
        if task.cancel.is_set():
            raise DownloadCancelled
        if not status.complete:
            raise RuntimeError("download finished but " + "; ".join(status.problems))

    return download


class ModelManagementService:
    """Status, download, delete and unload of the catalogue's models, on this worker's volume."""

    def __init__(
        self, settings: Settings, engines: Engines | None, downloader: Downloader | None = None
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.downloader = downloader or hub_downloader(max(30.0, self.settings.lease_seconds))
        self._tasks: dict[str, DownloadTask] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ catalogue
    def catalogue(self) -> list[KnownModel]:
        """The known models plus the configured ones when they are not among them (a custom repo, fakes)."""
        models = list(CATALOGUE)
        repos = {m.hf_repo_id for m in models}
        for kind, repo in (("tts", self.settings.tts_model), ("stt", self.settings.stt_model)):
            if repo not in repos:
                fake = repo.strip().lower() == "fake"
                name = f"{kind}-fake" if fake else repo.rsplit("/", 1)[-1]
                label = f"Fake {kind.upper()} (tests)" if fake else repo
                models.append(KnownModel(name, label, None if fake else repo, kind))
        return models

    def known(self, model_name: str) -> KnownModel:
        for model in self.catalogue():
            if model.model_name.lower() == model_name.lower():
                return model
        names = ", ".join(m.model_name for m in self.catalogue())
        raise ValidationError(f"unknown model {model_name!r}; this server knows: {names}")

    def _active_kind(self, model: KnownModel) -> str | None:
        """``"tts"``/``"stt"`` when this worker runs ``model``, else None."""
        configured = self.settings.tts_model if model.kind == "tts" else self.settings.stt_model
        if model.hf_repo_id is None:
            return model.kind if configured.strip().lower() == "fake" else None
        return model.kind if configured == model.hf_repo_id else None

    def _loaded(self, kind: str | None) -> bool:
        engines = self.engines
        return bool(kind and engines is not None and engines.is_loaded(kind))

    # ------------------------------------------------------------------ status
    def status(self) -> list[dict[str, Any]]:
        """Voicebox's ``ModelStatus`` for every model (plus ``kind``, ``active``, ``problems``)."""
        hf_home = self.settings.hf_home
        answer = []
        for model in self.catalogue():
            task = self._tasks.get(model.model_name)
            downloading = task is not None and task.status == "downloading"
            active = self._active_kind(model)
            entry: dict[str, Any] = {
                "model_name": model.model_name,
                "display_name": model.display_name,
                "hf_repo_id": model.hf_repo_id,
                "downloaded": False,
                "downloading": downloading,
                "size_mb": None,
                "loaded": self._loaded(active),
                "kind": model.kind,
                "active": active is not None,
            }
            if model.hf_repo_id is None:
                entry["downloaded"] = True
            elif not downloading:
                snap = check_snapshot(hf_home, model.hf_repo_id)
                entry["downloaded"] = snap.complete
                if snap.complete:
                    entry["size_mb"] = round(snap.size_bytes / 2**20, 1)
                elif snap.problems != ["not in the cache"]:
                    entry["problems"] = snap.problems
            answer.append(entry)
        return answer

    def cache_dir(self) -> str:
        """The hub cache, relative to the volume root (answers never carry server paths)."""
        hub = hub_cache_dir(self.settings.hf_home)
        try:
            return hub.relative_to(self.settings.volume).as_posix()
        except ValueError:
            return "huggingface/hub"

    # ------------------------------------------------------------------ downloads
    def download(self, model_name: str) -> str:
        """Start a download on a thread; the message says what happened. Refused offline (409)."""
        model = self.known(model_name)
        if model.hf_repo_id is None:
            return f"Model {model.model_name} needs no download"
        with self._lock:
            task = self._tasks.get(model.model_name)
            if task is not None and task.status == "downloading":
                return f"Model {model.model_name} is already downloading"
            if check_snapshot(self.settings.hf_home, model.hf_repo_id).complete:
                self._tasks.pop(model.model_name, None)
                return f"Model {model.model_name} is already downloaded"
            if offline_requested():
                raise ConflictError(
                    f"cannot download {model.model_name}: this server is offline (HF_HUB_OFFLINE is "
                    f"set); fill the volume's cache from a machine with network access: "
                    f"`voicebox-worker models prefetch {model.hf_repo_id}`"
                )
            task = DownloadTask(model.model_name, model.hf_repo_id, filename="Connecting...")
            self._tasks[model.model_name] = task
        thread = threading.Thread(
            target=self._run_download,
            args=(task,),
            name=f"download-{model.model_name}",
            daemon=True,
        )
        thread.start()
        return f"Model {model.model_name} download started"

    def _run_download(self, task: DownloadTask) -> None:
        hf_home = self.settings.hf_home
        repo_dir = repo_cache_dir(hf_home, task.repo_id)
        existed = repo_dir.exists()
        try:
            self.downloader(hf_home, task.repo_id, task)
            if task.cancel.is_set():
                raise DownloadCancelled
            snap = check_snapshot(hf_home, task.repo_id)
            if not snap.complete:
                raise RuntimeError("download finished but " + "; ".join(snap.problems))
            task.current = task.total = max(task.total, snap.size_bytes)
            task.filename = None
            task.status = "complete"
        except DownloadCancelled:
            task.status, task.error = "cancelled", "Download cancelled"
        except Exception as exc:  # noqa: BLE001 - the task must say why, whatever failed
            log.warning("download of %s failed", task.repo_id, exc_info=True)
            task.status, task.error = "error", f"{type(exc).__name__}: {exc}"[:2000]
        if task.status != "complete" and not existed:
            shutil.rmtree(repo_dir, ignore_errors=True)  # nothing half-written stays behind

    def cancel_download(self, model_name: str) -> str:
        """Stop a running download (between files) or dismiss a finished/failed one (Voicebox's cancel)."""
        model = self.known(model_name)
        with self._lock:
            task = self._tasks.get(model.model_name)
            if task is None:
                return f"No active task found for {model.model_name}"
            task.cancel.set()
            if task.status != "downloading":
                self._tasks.pop(model.model_name, None)
        return f"Download task for {model.model_name} cancelled"

    def progress(self, model_name: str) -> dict[str, Any]:
        """The latest progress event of ``model_name`` (a finished state when nothing runs)."""
        model = self.known(model_name)
        task = self._tasks.get(model.model_name)
        if task is not None:
            return task.progress_event()
        done = (
            model.hf_repo_id is None
            or check_snapshot(self.settings.hf_home, model.hf_repo_id).complete
        )
        idle = DownloadTask(model.model_name, model.hf_repo_id or "")
        idle.status = "complete" if done else "error"
        idle.filename = None
        idle.error = None if done else f"no download of {model.model_name} is running"
        return idle.progress_event()

    def active_downloads(self) -> list[dict[str, Any]]:
        """Running and failed downloads (a failed one stays until dismissed, as in Voicebox)."""
        with self._lock:
            tasks = [t for t in self._tasks.values() if t.status in ("downloading", "error")]
        return [t.active_task() for t in tasks]

    def clear_tasks(self) -> int:
        """Forget every finished or failed download (running ones keep going); returns how many."""
        with self._lock:
            done = [n for n, t in self._tasks.items() if t.status != "downloading"]
            for name in done:
                del self._tasks[name]
        return len(done)

    # ------------------------------------------------------------------ delete / unload
    def delete(self, model_name: str) -> str:
        """Remove a model from the volume's cache, under its download lease. Never the one in use."""
        model = self.known(model_name)
        if model.hf_repo_id is None:
            raise ConflictError(f"model {model.model_name} is built in; there is nothing to delete")
        if self._active_kind(model):
            variable = "VOICEBOX_TTS_MODEL" if model.kind == "tts" else "VOICEBOX_STT_MODEL"
            raise ConflictError(
                f"model {model.model_name} is the one this worker runs ({variable}); workers on this "
                "volume load it from the cache, so it is not deleted"
            )
        task = self._tasks.get(model.model_name)
        if task is not None and task.status == "downloading":
            raise ConflictError(f"model {model.model_name} is downloading; cancel that first")
        repo_dir = repo_cache_dir(self.settings.hf_home, model.hf_repo_id)
        if not repo_dir.exists():
            raise NotFoundError(f"model {model.model_name} is not in the cache")
        with repo_lease(self.settings.hf_home, model.hf_repo_id, timeout=30):
            shutil.rmtree(repo_dir)
        self._tasks.pop(model.model_name, None)
        return f"Model {model.model_name} deleted successfully"

    def unload(self, model_name: str) -> str:
        model = self.known(model_name)
        kind = self._active_kind(model)
        if not self._loaded(kind):
            return f"Model {model.model_name} is not loaded"
        if self.settings.serverless:
            raise ConflictError("models stay loaded in serverless mode (SERVERLESS=1)")
        require_engines(self.engines).unload(kind)
        return f"Model {model.model_name} unloaded successfully"
