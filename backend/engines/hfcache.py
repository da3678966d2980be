"""The Hugging Face model cache on the network volume: environment, completeness, offline switch, download.

Why this module exists:

* ``huggingface_hub`` and ``transformers`` read ``HF_HOME`` / ``HF_HUB_OFFLINE`` once, at import. So the
  environment is set by ``configure_hf_env`` before anything imports them, and ``enable_offline`` also patches the
  already-imported constants when someone was first.
* Without ``HF_HUB_OFFLINE=1``, hub 0.36 spent 46 s retrying the network before loading an already cached repo.
  A snapshot that passes ``check_snapshot`` is therefore loaded offline, always.
* A cold worker with no network and no cached model must fail with one sentence that names the repo and the
  command that fixes it, not a stack of ``OSError``\\ s from deep inside transformers.
* Two cold workers must not fill one cache path at once: downloads run under a per-repo ``SoftFileLease`` in
  ``<volume>/huggingface/.locks/`` (plain POSIX locks are not trusted on MooseFS; see `docs/architecture.md`).

Nothing here imports huggingface_hub at module import time.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.config import Settings

log = logging.getLogger(__name__)

#: marker set beside HF_HUB_OFFLINE when *we* turned offline on, so a later missing repo may still download
_OFFLINE_MARKER = "VOICEBOX_HF_OFFLINE_AUTO"

#: one group = "at least one file matching any of these patterns"; a pattern without "/" is top-level only
Requirement = tuple[str, ...]
WEIGHTS: Requirement = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
BASE_REQUIREMENTS: tuple[Requirement, ...] = (("config.json",), WEIGHTS)
QWEN_TTS_REQUIREMENTS: tuple[Requirement, ...] = (
    *BASE_REQUIREMENTS,
    ("generation_config.json",),
    ("speech_tokenizer/config.json",),
    ("speech_tokenizer/preprocessor_config.json",),
    ("speech_tokenizer/*.safetensors", "speech_tokenizer/*.bin"),
)
WHISPER_REQUIREMENTS: tuple[Requirement, ...] = (
    *BASE_REQUIREMENTS,
    ("preprocessor_config.json",),
    ("tokenizer.json", "vocab.json"),
)


def prefetch_command(repo_id: str) -> str:
    if repo_id.startswith("voicebox-demo/"):
        return "voicebox-worker models install-demo"
    return f"voicebox-worker models prefetch {repo_id}"


def not_downloaded_hint(repo_id: str) -> str:
    """The one line /health, ``models status`` and ``serve`` print for a model missing from the cache."""
    return f"{repo_id} not downloaded — run `{prefetch_command(repo_id)}` (VOICEBOX_VOLUME at the volume)"


class ModelNotCachedError(RuntimeError):
    """A model is not (completely) in the volume's HF cache and cannot be downloaded now."""

    def __init__(self, repo_id: str, reason: str, hf_home: Path | None = None) -> None:
        self.repo_id = repo_id
        self.reason = reason
        where = f" in {hf_home}" if hf_home else ""
        super().__init__(
            f"model {repo_id} is not available{where}: {reason}. "
            f"Fill the volume's cache from a machine with network access: "
            f"`{prefetch_command(repo_id)}` (with VOICEBOX_VOLUME pointing at the volume)."
        )


@dataclass
class SnapshotStatus:
    """What the cache holds for one repo; ``complete`` is what decides offline loading."""

    repo_id: str
    revision: str
    commit: str | None = None
    path: Path | None = None
    complete: bool = False
    problems: list[str] = field(default_factory=list)
    files: int = 0
    size_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path) if self.path else None
        return d


# ------------------------------------------------------------------------------------------ environment
def hub_cache_dir(hf_home: Path) -> Path:
    return Path(hf_home) / "hub"


def configure_hf_env(settings: Settings, env: MutableMapping[str, str] | None = None) -> Path:
    """Point the HF libraries at ``<volume>/huggingface``; call before anything imports huggingface_hub.

    Sets ``HF_HOME`` and ``HF_HUB_CACHE`` (the latter wins over the former in the hub, so a stray value from the
    image cannot send downloads to container disk) and turns telemetry off. If the hub was already imported with
    other paths, its constants are patched too and a warning says so.
    """
    env = os.environ if env is None else env
    hf_home = settings.hf_home
    env["HF_HOME"] = str(hf_home)
    env["HF_HUB_CACHE"] = str(hub_cache_dir(hf_home))
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if env is os.environ and "huggingface_hub.constants" in sys.modules:
        constants: Any = sys.modules["huggingface_hub.constants"]  # patched module attributes
        if getattr(constants, "HF_HUB_CACHE", None) != str(hub_cache_dir(hf_home)):
            log.warning(
                "huggingface_hub was imported before HF_HOME was set; patching its constants"
            )
            constants.HF_HOME = str(hf_home)
            constants.HF_HUB_CACHE = str(hub_cache_dir(hf_home))
            constants.HUGGINGFACE_HUB_CACHE = str(hub_cache_dir(hf_home))
    return hf_home


def offline_requested(env: MutableMapping[str, str] | None = None) -> bool:
    """True when the operator asked for no network (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``).

    Offline mode that ``enable_offline`` switched on itself does not count: it only means "this model is cached".
    """
    env = os.environ if env is None else env
    if env.get(_OFFLINE_MARKER) == "1":
        return False
    raw = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _set_hub_offline_constants(value: bool) -> None:
    constants: Any = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = value
    tf_hub: Any = sys.modules.get("transformers.utils.hub")
    if tf_hub is not None and hasattr(tf_hub, "_is_offline_mode"):
        tf_hub._is_offline_mode = value


def enable_offline(env: MutableMapping[str, str] | None = None) -> None:
    """Set ``HF_HUB_OFFLINE=1`` (and patch imported constants) so loading never touches the network."""
    env = os.environ if env is None else env
    if not offline_requested(env):
        env[_OFFLINE_MARKER] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    if env is os.environ:
        _set_hub_offline_constants(True)


@contextlib.contextmanager
def _online_for_download() -> Iterator[None]:
    """Lift the offline switch that *we* set, for the duration of one download (caller holds the lease)."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ.pop("HF_HUB_OFFLINE", None)
    _set_hub_offline_constants(False)
    try:
        yield
    finally:
        if previous is not None:
            os.environ["HF_HUB_OFFLINE"] = previous
            _set_hub_offline_constants(previous.strip().lower() in {"1", "true", "yes", "on"})


# ------------------------------------------------------------------------------------------ completeness
def repo_cache_dir(hf_home: Path, repo_id: str) -> Path:
    return hub_cache_dir(hf_home) / f"models--{repo_id.replace('/', '--')}"


def _matches(rel: str, pattern: str) -> bool:
    if "/" not in pattern and "/" in rel:
        return False
    return fnmatch.fnmatchcase(rel, pattern)


def requirements_for(snapshot: Path | None) -> tuple[Requirement, ...]:
    """Which files a snapshot must hold, from its ``config.json`` model type (Qwen3-TTS needs its codec)."""
    if snapshot is None:
        return BASE_REQUIREMENTS
    try:
        model_type = json.loads((snapshot / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        return BASE_REQUIREMENTS
    if model_type == "qwen3_tts":
        return QWEN_TTS_REQUIREMENTS
    if model_type == "whisper":
        return WHISPER_REQUIREMENTS
    return BASE_REQUIREMENTS


def _walk_snapshot(snap: Path, status: SnapshotStatus) -> list[str]:
    """Every file of the snapshot (relative paths), counting sizes and noting dangling or empty ones."""
    rels: list[str] = []
    for p in sorted(snap.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        rel = p.relative_to(snap).as_posix()
        rels.append(rel)
        try:
            size = p.stat().st_size  # follows the symlink: fails when the blob is gone
        except OSError:
            status.problems.append(f"{rel} does not resolve (blob missing)")
            continue
        if size == 0 and rel.endswith((".safetensors", ".bin")):
            status.problems.append(f"{rel} is empty")
        status.size_bytes += size
    status.files = len(rels)
    return rels


def _missing_shards(snap: Path, index: str, rels: Sequence[str]) -> list[str]:
    """Problems with one ``*.index.json``: unreadable, or a shard it lists that the snapshot lacks."""
    try:
        shards = set(json.loads((snap / index).read_text()).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return [f"{index} unreadable"]
    prefix = index.rsplit("/", 1)[0] + "/" if "/" in index else ""
    present = set(rels)
    return [
        f"missing shard {prefix + shard}"
        for shard in sorted(shards)
        if prefix + shard not in present
    ]


def check_snapshot(
    hf_home: Path,
    repo_id: str,
    revision: str | None = None,
    requirements: Sequence[Requirement] | None = None,
) -> SnapshotStatus:
    """Decide whether ``repo_id`` can be loaded from the cache without the network.

    Complete means: ``refs/<revision>`` (or a commit hash) names a snapshot that exists; every file in it is
    present and every symlink resolves to a non-empty blob; no ``blobs/*.incomplete`` remains (a download died or
    is running); the files the model type needs are there (for Qwen3-TTS, ``speech_tokenizer/*``); and every
    shard a ``*.index.json`` lists is present.
    """
    revision = revision or "main"
    status = SnapshotStatus(repo_id=repo_id, revision=revision)
    repo_dir = repo_cache_dir(hf_home, repo_id)
    if not repo_dir.is_dir():
        status.problems.append("not in the cache")
        return status
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
    elif len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        commit = revision
    else:
        status.problems.append(f"no refs/{revision}")
        return status
    status.commit = commit
    snap = repo_dir / "snapshots" / commit
    if not snap.is_dir():
        status.problems.append(f"snapshot {commit[:12]} missing")
        return status
    status.path = snap
    incomplete = sorted(p.name for p in (repo_dir / "blobs").glob("*.incomplete"))
    if incomplete:
        status.problems.append(f"unfinished download ({len(incomplete)} *.incomplete blob(s))")
    rels = _walk_snapshot(snap, status)
    reqs = requirements if requirements is not None else requirements_for(snap)
    for group in reqs:
        if not any(_matches(rel, pattern) for rel in rels for pattern in group):
            status.problems.append(f"missing {' or '.join(group)}")
    for index in (r for r in rels if r.endswith(".index.json")):
        status.problems.extend(_missing_shards(snap, index, rels))
    status.complete = not status.problems
    return status


# ------------------------------------------------------------------------------------------ ensure / download
def _lease_path(hf_home: Path, repo_id: str) -> Path:
    return Path(hf_home) / ".locks" / f"{repo_id.replace('/', '--')}.lease"


def repo_lease(
    hf_home: Path, repo_id: str, *, lease_seconds: float = 60.0, timeout: float = 3600.0
):
    """The repo's download lease (a ``SoftFileLease``): held while its cache path is written or removed."""
    from filelock import SoftFileLease

    lease_file = _lease_path(hf_home, repo_id)
    lease_file.parent.mkdir(parents=True, exist_ok=True)
    return SoftFileLease(
        lease_file,
        lease_duration=lease_seconds,
        heartbeat_interval=max(1.0, lease_seconds / 4),
        timeout=timeout,
    )


def download_snapshot(
    hf_home: Path,
    repo_id: str,
    revision: str | None = None,
    *,
    lease_seconds: float = 60.0,
    timeout: float = 3600.0,
    tqdm_class: type | None = None,
) -> SnapshotStatus:
    """Download a whole snapshot into ``<hf_home>/hub`` under the repo's lease, then re-check it.

    The lease is taken first and the cache re-checked under it, so the second of two cold workers finds the
    first one's finished download instead of fetching it again. The lease heartbeats while the download runs;
    a killed holder's lease expires after ``lease_seconds`` and a peer resumes (the hub resumes ``.incomplete``).
    ``tqdm_class`` is handed to the hub's progress bar of files (``/models/download`` follows and cancels with it).
    """
    with repo_lease(hf_home, repo_id, lease_seconds=lease_seconds, timeout=timeout):
        status = check_snapshot(hf_home, repo_id, revision)
        if status.complete:
            return status
        log.info("downloading %s into %s", repo_id, hub_cache_dir(hf_home))
        from huggingface_hub import snapshot_download

        with _online_for_download():
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=str(hub_cache_dir(hf_home)),
                tqdm_class=tqdm_class,
            )
        return check_snapshot(hf_home, repo_id, revision)


def _is_demo(repo_id: str) -> bool:
    return repo_id.startswith("voicebox-demo/")


def ensure_model(
    settings: Settings,
    repo_id: str,
    revision: str | None = None,
    *,
    download: bool | None = None,
) -> SnapshotStatus:
    """Return a complete snapshot of ``repo_id``, downloading it if allowed; then switch the hub offline.

    ``download=None`` means "download unless the operator set ``HF_HUB_OFFLINE``". Missing and not allowed (or
    the download fails, e.g. no network) → ``ModelNotCachedError`` naming the repo and the prefetch command.
    """
    hf_home = configure_hf_env(settings)
    status = check_snapshot(hf_home, repo_id, revision)
    if not status.complete and _is_demo(repo_id):
        from backend.engines.tiny import (
            DEMO_STT_REPO,
            DEMO_TTS_REPO,
            copy_prebuilt_models,
            install_tiny_models,
        )

        # copied from a set-up step's prebuilt set when there is one, else built here; never downloaded
        prebuilt = settings.demo_prebuilt
        if prebuilt is None or not copy_prebuilt_models(
            prebuilt, hf_home, (DEMO_TTS_REPO, DEMO_STT_REPO)
        ):
            install_tiny_models(hf_home, DEMO_TTS_REPO, DEMO_STT_REPO)
        status = check_snapshot(hf_home, repo_id, revision)
    if not status.complete:
        allowed = (not offline_requested()) if download is None else download
        reason = "; ".join(status.problems)
        if not allowed:
            raise ModelNotCachedError(repo_id, f"{reason} (HF_HUB_OFFLINE is set)", hf_home)
        try:
            status = download_snapshot(
                hf_home, repo_id, revision, lease_seconds=max(30.0, settings.lease_seconds)
            )
        except Exception as exc:  # noqa: BLE001 - network, auth, disk: all end in the same advice
            raise ModelNotCachedError(
                repo_id, f"{reason}; download failed: {type(exc).__name__}: {exc}", hf_home
            ) from exc
        if not status.complete:
            raise ModelNotCachedError(
                repo_id, "download finished but " + "; ".join(status.problems), hf_home
            )
    enable_offline()
    return status
