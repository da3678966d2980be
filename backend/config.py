"""Every setting of the worker, read from the environment in one place.

Why one place: the worker runs in three shapes (RunPod serverless, a pod, a laptop) and each is configured only
through environment variables. Reading them here, once, with validation, means a typo in an endpoint's settings
fails the cold start with one clear line instead of surfacing as an odd error in the middle of a job.

Defaults are documented in ``docs/architecture.md`` (settings table) and in ``SETTINGS_DOC`` below.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

RUNPOD_VOLUME = Path("/runpod-volume")
DEFAULT_TTS_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
DEFAULT_STT_MODEL = "openai/whisper-base"
#: RunPod's request caps (decimal MB, the safe reading of its docs): a job's whole input, base64 included.
RUNPOD_RUN_PAYLOAD_BYTES = 10_000_000
RUNPOD_RUNSYNC_PAYLOAD_BYTES = 20_000_000
#: The largest upload one job can carry at all: base64 of it fills ``/runsync``'s cap.
DEFAULT_MAX_JOB_UPLOAD_BYTES = RUNPOD_RUNSYNC_PAYLOAD_BYTES * 3 // 4

SETTINGS_DOC: dict[str, str] = {
    "VOICEBOX_VOLUME": "network volume root; default /runpod-volume when mounted, else ./volume",
    "VOICEBOX_LOCAL_DIR": "worker-private state (local DB copy); default /tmp/voicebox-local-<worker>",
    "VOICEBOX_TTS_MODEL": f"Hugging Face repo of the TTS model; default {DEFAULT_TTS_MODEL}",
    "VOICEBOX_STT_MODEL": f"Hugging Face repo of the Whisper model; default {DEFAULT_STT_MODEL}",
    "VOICEBOX_DEVICE": "torch device: auto (cuda if available), cpu, cuda, cuda:N; default auto",
    "SERVERLESS": "1/true: eager model load, no idle unload; default unset",
    "VOICEBOX_WORKER_ID": "this worker's id in leases and job rows; default RUNPOD_POD_ID or host-pid",
    "VOICEBOX_LEASE_SECONDS": "database lease duration; a killed holder is taken over after it; default 30",
    "VOICEBOX_LEASE_TIMEOUT": "seconds a write waits for the lease before answering 503; default 120",
    "VOICEBOX_DB_REFRESH_SECONDS": "min seconds between checks of the shared DB by reads (0: every read, one 100-byte header read; a worker then sees a peer's write at once); default 0",
    "VOICEBOX_BACKUPS_KEEP": "newest database backups always kept on the volume; default 5",
    "VOICEBOX_BACKUP_INTERVAL": "seconds between rotating backups taken after a publish (0: off); default 3600",
    "VOICEBOX_BACKUPS_HOURLY": "rotation: keep the newest backup of each of this many hours; default 24",
    "VOICEBOX_BACKUPS_DAILY": "rotation: keep the newest backup of each of this many days; default 14",
    "VOICEBOX_TRASH_DAYS": "days fsck keeps files in trash/ before deleting them; default 30",
    "VOICEBOX_JOB_LEASE_SECONDS": "lease of a running generation before peers may recover it; default 900",
    "VOICEBOX_IDLE_UNLOAD_SECONDS": "unload models after this idle time outside serverless (0=never); default 0",
    "VOICEBOX_HOST": "serve host; default 127.0.0.1",
    "VOICEBOX_PORT": "serve port (serverless: the API's port on 127.0.0.1 inside the worker); 0: any free port; default 17493",
    "VOICEBOX_MAX_UPLOAD_MB": "upload size limit for samples; default 50",
    "VOICEBOX_MAX_JOB_UPLOAD_MB": "largest decoded upload in one RunPod job (checked on the base64 length before decoding); default 15 (RunPod's 20 MB /runsync cap after base64), never above VOICEBOX_MAX_UPLOAD_MB",
    "VOICEBOX_MAX_BUNDLE_MB": "upload size limit for bundles; default 500",
    "VOICEBOX_RESULT_BUDGET_MB": "largest inline RunPod answer before spilling to the volume; default 14",
    "VOICEBOX_CONCURRENCY": "RunPod jobs taken at once by one worker; default 1",
    "VOICEBOX_JOB_TIMEOUT_SECONDS": "per-job timeout inside the handler; default 570",
    "VOICEBOX_MAX_QUEUED": "generations queued or running at once before 429; default 4 (16 for the fake and demo engines)",
    "VOICEBOX_MAX_STREAMS": "streams synthesising at once on one worker; more are refused (429); default 4",
    "VOICEBOX_STREAM_BUFFER_SECONDS": "audio a stream buffers for its reader before synthesis pauses; default 120",
    "VOICEBOX_STREAM_STALL_SECONDS": "a stream whose reader takes nothing this long is stopped; default 30",
    "VOICEBOX_STREAM_JOBS": "1: generator RunPod handler (stream jobs; outputs are [answer]); 0: plain; default 0",
    "VOICEBOX_STREAM_DECODE_FRAMES": "streams decode the codec every N frames inside a chunk (0: per chunk); default 0",
    "VOICEBOX_READY_TIMEOUT_SECONDS": "cold start: seconds to wait for the server; default 120",
    "VOICEBOX_ALLOW_ADMIN_JOBS": "1: RunPod jobs may call admin routes; default 0",
    "VOICEBOX_API_KEYS": "comma-separated bearer keys for standalone serve; default unset (no auth)",
    "VOICEBOX_ADMIN_KEYS": "comma-separated admin bearer keys; default unset",
    "VOICEBOX_CORS_ORIGINS": "comma-separated browser origins allowed besides the Voicebox app's; `*` allows any (logged as a warning); default unset",
    "VOICEBOX_ALLOWED_HOSTS": "comma-separated Host names accepted on a loopback connection besides localhost/127.0.0.1/::1 (DNS rebinding guard); default unset",
    "VOICEBOX_PROMPT_CACHE_MB": "bound of the voice prompt cache on the volume; default 2048",
    "VOICEBOX_EXPORT_TTL_HOURS": "files in voicebox/exports/ older than this are removed by fsck (at boot and every hour while serving); 0 keeps them; default 24",
    "VOICEBOX_LOG_LEVEL": "logging level; default INFO",
    "VOICEBOX_SQLITE_VFS": "SQLite VFS for the worker's local copies (unix-none: no SQLite locks, for the volume simulation); default unset",
}


class SettingsError(ValueError):
    """A setting has a value the worker cannot run with; the message names the variable."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _falsy(value: str | None) -> bool:
    """An explicit off (``0``, ``false``, ``no``, ``off``) for settings that default to on."""
    return (value or "").strip().lower() in {"0", "false", "no", "off"}


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _keys(raw: str | None) -> tuple[str, ...]:
    return tuple(key.strip() for key in (raw or "").split(",") if key.strip())


def default_worker_id(env: Mapping[str, str]) -> str:
    """RunPod's pod id when present (it names the worker in RunPod's console), else host and pid."""
    pod = env.get("RUNPOD_POD_ID", "").strip()
    if pod:
        return pod
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def discover_volume(env: Mapping[str, str]) -> tuple[Path, str]:
    """Where the volume is, and why: an explicit setting, the RunPod mount, or a local stand-in."""
    explicit = env.get("VOICEBOX_VOLUME", "").strip()
    if explicit:
        return Path(explicit).expanduser().absolute(), "VOICEBOX_VOLUME"
    if RUNPOD_VOLUME.is_dir():
        return RUNPOD_VOLUME, "runpod mount"
    return Path("volume").absolute(), "local stand-in (no /runpod-volume mounted)"


@dataclass(frozen=True)
class Settings:
    volume: Path
    volume_source: str
    local_dir: Path
    tts_model: str = DEFAULT_TTS_MODEL
    stt_model: str = DEFAULT_STT_MODEL
    device: str = "auto"
    serverless: bool = False
    worker_id: str = "worker"
    lease_seconds: float = 30.0
    lease_timeout: float = 120.0
    db_refresh_seconds: float = 0.0
    backups_keep: int = 5
    backup_interval_seconds: float = 3600.0
    backups_hourly: int = 24
    backups_daily: int = 14
    trash_days: float = 30.0
    job_lease_seconds: float = 900.0
    idle_unload_seconds: float = 0.0
    host: str = "127.0.0.1"
    port: int = 17493
    max_upload_bytes: int = 50 * 1024 * 1024
    max_job_upload_bytes: int = DEFAULT_MAX_JOB_UPLOAD_BYTES
    max_bundle_bytes: int = 500 * 1024 * 1024
    result_budget_bytes: int = 14 * 1024 * 1024
    concurrency: int = 1
    job_timeout_seconds: float = 570.0
    max_queued: int = 4
    max_streams: int = 4
    stream_buffer_seconds: float = 120.0
    stream_stall_seconds: float = 30.0
    stream_jobs: bool = False
    stream_decode_frames: int = 0
    ready_timeout_seconds: float = 120.0
    allow_admin_jobs: bool = False
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    cors_any_origin: bool = False
    allowed_hosts: tuple[str, ...] = ()
    prompt_cache_bytes: int = 2048 * 1024 * 1024
    export_ttl_hours: float = 24.0
    log_level: str = "INFO"
    sqlite_vfs: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    # Layout of the volume: everything the worker owns lives under <volume>/voicebox.
    @property
    def data_dir(self) -> Path:
        return self.volume / "voicebox"

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def db_path(self) -> Path:
        return self.db_dir / "voicebox.db"

    @property
    def lease_path(self) -> Path:
        return self.db_dir / "voicebox.db.lease"

    @property
    def backups_dir(self) -> Path:
        return self.db_dir / "backups"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / ".tmp"

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / "trash"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def imports_dir(self) -> Path:
        return self.data_dir / "imports"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def hf_home(self) -> Path:
        return self.volume / "huggingface"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: ``os.environ``), raising ``SettingsError`` on bad values."""
    env = os.environ if env is None else env
    volume, source = discover_volume(env)
    worker_id = env.get("VOICEBOX_WORKER_ID", "").strip() or default_worker_id(env)
    safe_worker = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in worker_id)
    local_raw = env.get("VOICEBOX_LOCAL_DIR", "").strip()
    local_dir = Path(local_raw) if local_raw else Path("/tmp") / f"voicebox-local-{safe_worker}"
    device = env.get("VOICEBOX_DEVICE", "auto").strip() or "auto"
    if not (device in {"auto", "cpu", "cuda", "mps"} or device.startswith("cuda:")):
        raise SettingsError(f"VOICEBOX_DEVICE={device!r}: use auto, cpu, cuda, cuda:N or mps")
    port = int(_number(env, "VOICEBOX_PORT", 17493, minimum=0))
    if port > 65535:
        raise SettingsError(f"VOICEBOX_PORT={port} is not a TCP port")
    lease_seconds = _number(env, "VOICEBOX_LEASE_SECONDS", 30.0, minimum=0.5)
    level = env.get("VOICEBOX_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"VOICEBOX_LOG_LEVEL={level!r} is not a logging level")
    mb = 1024 * 1024
    max_upload = int(_number(env, "VOICEBOX_MAX_UPLOAD_MB", 50, minimum=0.001) * mb)
    job_mb = _number(env, "VOICEBOX_MAX_JOB_UPLOAD_MB", 0.0)
    max_job_upload = int(job_mb * mb) if job_mb > 0 else DEFAULT_MAX_JOB_UPLOAD_BYTES
    cors_origins, cors_any = _origins(env.get("VOICEBOX_CORS_ORIGINS"))
    return Settings(
        volume=volume,
        volume_source=source,
        local_dir=local_dir.absolute(),
        tts_model=env.get("VOICEBOX_TTS_MODEL", "").strip() or DEFAULT_TTS_MODEL,
        stt_model=env.get("VOICEBOX_STT_MODEL", "").strip() or DEFAULT_STT_MODEL,
        device=device,
        serverless=_truthy(env.get("SERVERLESS")),
        worker_id=worker_id,
        lease_seconds=lease_seconds,
        lease_timeout=_number(env, "VOICEBOX_LEASE_TIMEOUT", 120.0, minimum=0.1),
        db_refresh_seconds=_number(env, "VOICEBOX_DB_REFRESH_SECONDS", 0.0),
        backups_keep=int(_number(env, "VOICEBOX_BACKUPS_KEEP", 5, minimum=1)),
        backup_interval_seconds=_number(env, "VOICEBOX_BACKUP_INTERVAL", 3600.0),
        backups_hourly=int(_number(env, "VOICEBOX_BACKUPS_HOURLY", 24)),
        backups_daily=int(_number(env, "VOICEBOX_BACKUPS_DAILY", 14)),
        trash_days=_number(env, "VOICEBOX_TRASH_DAYS", 30.0),
        job_lease_seconds=_number(env, "VOICEBOX_JOB_LEASE_SECONDS", 900.0, minimum=1),
        idle_unload_seconds=_number(env, "VOICEBOX_IDLE_UNLOAD_SECONDS", 0.0),
        host=env.get("VOICEBOX_HOST", "127.0.0.1").strip() or "127.0.0.1",
        port=port,
        max_upload_bytes=max_upload,
        max_job_upload_bytes=min(max_upload, max_job_upload),
        max_bundle_bytes=int(_number(env, "VOICEBOX_MAX_BUNDLE_MB", 500, minimum=0.001) * mb),
        result_budget_bytes=int(_number(env, "VOICEBOX_RESULT_BUDGET_MB", 14, minimum=0.001) * mb),
        concurrency=int(_number(env, "VOICEBOX_CONCURRENCY", 1, minimum=1)),
        job_timeout_seconds=_number(env, "VOICEBOX_JOB_TIMEOUT_SECONDS", 570.0, minimum=1),
        max_queued=int(_number(env, "VOICEBOX_MAX_QUEUED", default_max_queued(env), minimum=1)),
        max_streams=int(_number(env, "VOICEBOX_MAX_STREAMS", 4, minimum=1)),
        stream_buffer_seconds=_number(env, "VOICEBOX_STREAM_BUFFER_SECONDS", 120.0, minimum=1),
        stream_stall_seconds=_number(env, "VOICEBOX_STREAM_STALL_SECONDS", 30.0, minimum=0.1),
        stream_jobs=_truthy(env.get("VOICEBOX_STREAM_JOBS")),
        stream_decode_frames=int(_number(env, "VOICEBOX_STREAM_DECODE_FRAMES", 0)),
        ready_timeout_seconds=_number(env, "VOICEBOX_READY_TIMEOUT_SECONDS", 120.0, minimum=1),
        allow_admin_jobs=_truthy(env.get("VOICEBOX_ALLOW_ADMIN_JOBS")),
        api_keys=_keys(env.get("VOICEBOX_API_KEYS")),
        admin_keys=_keys(env.get("VOICEBOX_ADMIN_KEYS")),
        cors_origins=cors_origins,
        cors_any_origin=cors_any,
        allowed_hosts=_keys(env.get("VOICEBOX_ALLOWED_HOSTS")),
        prompt_cache_bytes=int(_number(env, "VOICEBOX_PROMPT_CACHE_MB", 2048, minimum=1) * mb),
        export_ttl_hours=_number(env, "VOICEBOX_EXPORT_TTL_HOURS", 24.0),
        log_level=level,
        sqlite_vfs=_vfs(env.get("VOICEBOX_SQLITE_VFS")),
    )


def _origins(raw: str | None) -> tuple[tuple[str, ...], bool]:
    """Extra allowed browser origins, and whether ``*`` (any origin) was set explicitly."""
    from backend.http_guard import parse_origins

    origins, any_origin = parse_origins(raw)
    for item in origins:
        if "://" not in item:
            raise SettingsError(
                f"VOICEBOX_CORS_ORIGINS: {item!r} is not an origin (scheme://host[:port]) or *"
            )
    return origins, any_origin


def default_max_queued(env: Mapping[str, str]) -> int:
    """Generations one worker accepts at once (queued or running): a real model synthesises one at a time and
    takes seconds per request, so a short queue keeps waits bounded; the fake and demo engines are instant."""
    model = env.get("VOICEBOX_TTS_MODEL", "").strip()
    return 16 if model == "fake" or model.startswith("voicebox-demo/") else 4


def _vfs(raw: str | None) -> str | None:
    value = (raw or "").strip()
    if value and value not in {"unix", "unix-none", "unix-dotfile", "unix-excl"}:
        raise SettingsError(
            f"VOICEBOX_SQLITE_VFS={value!r}: use unix, unix-none, unix-dotfile or unix-excl"
        )
    return value or None
