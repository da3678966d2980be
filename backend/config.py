"""Every setting of the worker, read from the environment in one place.

Why one place: the worker runs in three shapes (RunPod serverless, a pod, a laptop) and each is configured only
through environment variables. Reading them here, once, with validation, means a typo in an endpoint's settings
fails the cold start with one clear line instead of surfacing as an odd error in the middle of a job.

Every setting is declared once, in ``SETTINGS`` at the end: its variable, field, kind, default and help. ``load_settings``,
``SETTINGS_DOC`` and the settings table of ``docs/architecture.md`` (``python -m backend.config``) come from it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

RUNPOD_VOLUME = Path("/runpod-volume")
DEFAULT_TTS_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
DEFAULT_STT_MODEL = "openai/whisper-base"
#: RunPod's request caps (decimal MB, the safe reading of its docs): a job's whole input, base64 included.
RUNPOD_RUN_PAYLOAD_BYTES = 10_000_000
RUNPOD_RUNSYNC_PAYLOAD_BYTES = 20_000_000
#: The largest upload one job can carry at all: base64 of it fills ``/runsync``'s cap.
DEFAULT_MAX_JOB_UPLOAD_BYTES = RUNPOD_RUNSYNC_PAYLOAD_BYTES * 3 // 4


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


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The worker's settings; built only by ``load_settings`` from the ``SETTINGS`` table (defaults live there)."""

    volume: Path
    volume_source: str
    local_dir: Path
    tts_model: str
    stt_model: str
    device: str
    serverless: bool
    worker_id: str
    lease_seconds: float
    lease_timeout: float
    db_refresh_seconds: float
    database_url: str | None
    db_pool_size: int
    db_connect_timeout: float
    backups_keep: int
    backup_interval_seconds: float
    backups_hourly: int
    backups_daily: int
    trash_days: float
    job_lease_seconds: float
    idle_unload_seconds: float
    host: str
    port: int
    max_upload_bytes: int
    max_job_upload_bytes: int
    max_bundle_bytes: int
    result_budget_bytes: int
    concurrency: int
    job_timeout_seconds: float
    max_queued: int
    max_streams: int
    stream_buffer_seconds: float
    stream_stall_seconds: float
    stream_jobs: bool
    stream_decode_frames: int
    ready_timeout_seconds: float
    allow_admin_jobs: bool
    api_keys: tuple[str, ...]
    admin_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    cors_any_origin: bool
    allowed_hosts: tuple[str, ...]
    prompt_cache_bytes: int
    export_ttl_hours: float
    log_level: str
    sqlite_vfs: str | None
    demo_prebuilt: Path | None
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

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: ``os.environ``), raising ``SettingsError`` on bad values."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        values.update(setting.read(env, values))
    return Settings(**values)


def parse_origins(raw: str | None) -> tuple[tuple[str, ...], bool]:
    """``VOICEBOX_CORS_ORIGINS`` → (extra origins, any origin allowed). ``*`` must be written explicitly."""
    items = [item.strip().rstrip("/") for item in (raw or "").split(",") if item.strip()]
    return tuple(item for item in items if item != "*"), "*" in items


def _origins(raw: str | None) -> tuple[tuple[str, ...], bool]:
    """Extra allowed browser origins, and whether ``*`` (any origin) was set explicitly."""
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


# ---------------------------------------------------------------------------------------------- the table
#: ``parse(raw, env, done)``: the value(s) of a setting whose reading is more than a plain kind; ``done`` holds
#: the Settings fields read before it (table order). It returns ``{field: value}``.
Parse = Callable[[str | None, Mapping[str, str], Mapping[str, Any]], dict[str, Any]]
_MB = 1024 * 1024


@dataclass(frozen=True)
class Setting:
    """One environment variable: the ``Settings`` field it fills, how it is read, its default and its help.

    ``kind``: ``text`` (stripped; empty → default), ``number`` / ``int`` (at least ``minimum``, times ``scale``:
    MB → bytes), ``flag`` (1/true/yes/on), ``keys`` (comma-separated), or ``custom`` (``parse``). The docs table
    (``markdown_table``) and ``SETTINGS_DOC`` are produced from these entries, so they cannot drift.
    """

    env: str
    attr: str
    help: str
    kind: str = "text"
    default: Any = None
    minimum: float = 0.0
    scale: int = 1
    default_doc: str | None = None
    parse: Parse | None = None

    def read(self, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
        raw = env.get(self.env)
        if self.parse is not None:
            return self.parse(raw, env, done)
        if self.kind == "flag":
            return {self.attr: _truthy(raw)}
        if self.kind == "keys":
            return {self.attr: _keys(raw)}
        if self.kind in ("number", "int"):
            value = _number(env, self.env, self.default, minimum=self.minimum) * self.scale
            return {self.attr: int(value) if self.kind == "int" else value}
        return {self.attr: (raw or "").strip() or self.default}

    @property
    def documented_default(self) -> str:
        """The default as the docs state it: ``default_doc`` when given, else the value itself."""
        if self.default_doc is not None:
            return self.default_doc
        if self.kind in ("flag", "keys") or self.default is None:
            return "unset" if self.kind != "flag" else "0"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    @property
    def doc(self) -> str:
        return f"{self.help}; default {self.documented_default}"


def _volume(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    volume, source = discover_volume(env)
    return {"volume": volume, "volume_source": source}


def _worker_id(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    return {"worker_id": (raw or "").strip() or default_worker_id(env)}


def _local_dir(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    if (raw or "").strip():
        return {"local_dir": Path((raw or "").strip()).absolute()}
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in done["worker_id"])
    return {"local_dir": (Path("/tmp") / f"voicebox-local-{safe}").absolute()}


def _device(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    device = (raw or "auto").strip() or "auto"
    if not (device in {"auto", "cpu", "cuda", "mps"} or device.startswith("cuda:")):
        raise SettingsError(f"VOICEBOX_DEVICE={device!r}: use auto, cpu, cuda, cuda:N or mps")
    return {"device": device}


def _port(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    port = int(_number(env, "VOICEBOX_PORT", 17493, minimum=0))
    if port > 65535:
        raise SettingsError(f"VOICEBOX_PORT={port} is not a TCP port")
    return {"port": port}


def _job_upload(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    job_mb = _number(env, "VOICEBOX_MAX_JOB_UPLOAD_MB", 0.0)
    wanted = int(job_mb * _MB) if job_mb > 0 else DEFAULT_MAX_JOB_UPLOAD_BYTES
    return {"max_job_upload_bytes": min(done["max_upload_bytes"], wanted)}


def _max_queued(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "max_queued": int(_number(env, "VOICEBOX_MAX_QUEUED", default_max_queued(env), minimum=1))
    }


def _cors(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    origins, any_origin = _origins(raw)
    return {"cors_origins": origins, "cors_any_origin": any_origin}


def _log_level(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    level = (raw or "INFO").strip().upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"VOICEBOX_LOG_LEVEL={level!r} is not a logging level")
    return {"log_level": level}


def _demo_prebuilt(
    raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]
) -> dict[str, Any]:
    value = (raw or "").strip()
    return {"demo_prebuilt": Path(value) if value else None}


def _sqlite_vfs(raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]) -> dict[str, Any]:
    return {"sqlite_vfs": _vfs(raw)}


def _database_url(
    raw: str | None, env: Mapping[str, str], done: Mapping[str, Any]
) -> dict[str, Any]:
    return {"database_url": database_url(raw)}


def database_url(raw: str | None) -> str | None:
    """``VOICEBOX_DATABASE_URL`` checked: unset (the volume's SQLite) or a PostgreSQL URL for psycopg 3.

    ``postgres://`` and ``postgresql://`` (what managed providers hand out) are taken as
    ``postgresql+psycopg://``. The error never repeats the URL: it usually carries a password.
    """
    value = (raw or "").strip()
    if not value:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or not rest:
        raise SettingsError(
            "VOICEBOX_DATABASE_URL is not a URL: use postgresql+psycopg://user:password@host:5432/db"
        )
    if scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(f"postgresql://{rest}")
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise SettingsError(
                "VOICEBOX_DATABASE_URL has a port that is not a number (host:5432)"
            ) from None
        if not parts.hostname and "host=" not in parts.query:
            raise SettingsError("VOICEBOX_DATABASE_URL names no host (user:password@host:5432/db)")
        return f"postgresql+psycopg://{rest}"
    raise SettingsError(
        f"VOICEBOX_DATABASE_URL has the scheme {scheme[:30]!r}: only postgresql+psycopg:// is "
        "supported (unset it to use the volume's SQLite database)"
    )


def redact_url(url: str) -> str:
    """``url`` with its password (and any query secrets) replaced: for logs and answers."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}" if ":" in user else f"{name}@{host}"
    path, _, query = path.partition("?")
    safe_query = "&".join(
        part
        if part.split("=", 1)[0] not in {"password", "sslpassword"}
        else part.split("=")[0] + "=***"
        for part in query.split("&")
        if part
    )
    return f"{scheme}://{netloc}{slash}{path}" + (f"?{safe_query}" if safe_query else "")


# fmt: off
#: Every setting, in the order the docs list them. Add a new one here (and its field to ``Settings``); the docs
#: table is regenerated with ``python -m backend.config`` (tests/test_config.py checks it matches).
SETTINGS: tuple[Setting, ...] = (
    Setting("VOICEBOX_VOLUME", "volume", "network volume root", parse=_volume, default_doc="/runpod-volume when mounted, else ./volume"),
    Setting("VOICEBOX_WORKER_ID", "worker_id", "this worker's id in leases and job rows", parse=_worker_id, default_doc="RUNPOD_POD_ID or host-pid"),
    Setting("VOICEBOX_LOCAL_DIR", "local_dir", "worker-private state (local DB copy)", parse=_local_dir, default_doc="/tmp/voicebox-local-<worker>"),
    Setting("VOICEBOX_TTS_MODEL", "tts_model", "Hugging Face repo of the TTS model", default=DEFAULT_TTS_MODEL),
    Setting("VOICEBOX_STT_MODEL", "stt_model", "Hugging Face repo of the Whisper model", default=DEFAULT_STT_MODEL),
    Setting("VOICEBOX_DEVICE", "device", "torch device: auto (cuda if available), cpu, cuda, cuda:N", parse=_device, default_doc="auto"),
    Setting("SERVERLESS", "serverless", "1/true: eager model load, no idle unload", kind="flag", default_doc="unset"),
    Setting("VOICEBOX_LEASE_SECONDS", "lease_seconds", "database lease duration; a killed holder is taken over after it", kind="number", default=30.0, minimum=0.5),
    Setting("VOICEBOX_LEASE_TIMEOUT", "lease_timeout", "seconds a write waits for the lease before answering 503", kind="number", default=120.0, minimum=0.1),
    Setting("VOICEBOX_DB_REFRESH_SECONDS", "db_refresh_seconds", "min seconds between checks of the shared DB by reads (0: every read, one 100-byte header read; a worker then sees a peer's write at once)", kind="number", default=0.0),
    Setting("VOICEBOX_DATABASE_URL", "database_url", "unset: the volume's SQLite database (leased snapshot swap); a postgresql+psycopg://user:pass@host:port/db URL (sslmode etc. as query parameters) runs the same schema on PostgreSQL", parse=_database_url, default_doc="unset"),
    Setting("VOICEBOX_DB_POOL_SIZE", "db_pool_size", "PostgreSQL: connections one worker keeps open (plus as many again in a burst)", kind="int", default=4, minimum=1),
    Setting("VOICEBOX_DB_CONNECT_TIMEOUT", "db_connect_timeout", "PostgreSQL: seconds to wait for a connection before answering 503", kind="number", default=10.0, minimum=0.5),
    Setting("VOICEBOX_BACKUPS_KEEP", "backups_keep", "newest database backups always kept on the volume", kind="int", default=5, minimum=1),
    Setting("VOICEBOX_BACKUP_INTERVAL", "backup_interval_seconds", "seconds between rotating backups taken after a publish (0: off)", kind="number", default=3600.0),
    Setting("VOICEBOX_BACKUPS_HOURLY", "backups_hourly", "rotation: keep the newest backup of each of this many hours", kind="int", default=24),
    Setting("VOICEBOX_BACKUPS_DAILY", "backups_daily", "rotation: keep the newest backup of each of this many days", kind="int", default=14),
    Setting("VOICEBOX_TRASH_DAYS", "trash_days", "days fsck keeps files in trash/ before deleting them", kind="number", default=30.0),
    Setting("VOICEBOX_JOB_LEASE_SECONDS", "job_lease_seconds", "lease of a running generation before peers may recover it", kind="number", default=900.0, minimum=1),
    Setting("VOICEBOX_IDLE_UNLOAD_SECONDS", "idle_unload_seconds", "unload models after this idle time outside serverless (0=never)", kind="number", default=0.0),
    Setting("VOICEBOX_HOST", "host", "serve host", default="127.0.0.1"),
    Setting("VOICEBOX_PORT", "port", "serve port (serverless: the API's port on 127.0.0.1 inside the worker); 0: any free port", parse=_port, default_doc="17493"),
    Setting("VOICEBOX_MAX_UPLOAD_MB", "max_upload_bytes", "upload size limit for samples", kind="int", default=50, minimum=0.001, scale=_MB),
    Setting("VOICEBOX_MAX_JOB_UPLOAD_MB", "max_job_upload_bytes", "largest decoded upload in one RunPod job (checked on the base64 length before decoding)", parse=_job_upload, default_doc="15 (RunPod's 20 MB /runsync cap after base64), never above VOICEBOX_MAX_UPLOAD_MB"),
    Setting("VOICEBOX_MAX_BUNDLE_MB", "max_bundle_bytes", "upload size limit for bundles", kind="int", default=500, minimum=0.001, scale=_MB),
    Setting("VOICEBOX_RESULT_BUDGET_MB", "result_budget_bytes", "largest inline RunPod answer before spilling to the volume", kind="int", default=14, minimum=0.001, scale=_MB),
    Setting("VOICEBOX_CONCURRENCY", "concurrency", "RunPod jobs taken at once by one worker", kind="int", default=1, minimum=1),
    Setting("VOICEBOX_JOB_TIMEOUT_SECONDS", "job_timeout_seconds", "per-job timeout inside the handler", kind="number", default=570.0, minimum=1),
    Setting("VOICEBOX_MAX_QUEUED", "max_queued", "generations queued or running at once before 429", parse=_max_queued, default_doc="4 (16 for the fake and demo engines)"),
    Setting("VOICEBOX_MAX_STREAMS", "max_streams", "streams synthesising at once on one worker (`/generate/stream`, streamed OpenAI speech); more → 429 with `Retry-After`", kind="int", default=4, minimum=1),
    Setting("VOICEBOX_STREAM_BUFFER_SECONDS", "stream_buffer_seconds", "audio a stream buffers for a slow reader before the synthesis pauses", kind="number", default=120.0, minimum=1),
    Setting("VOICEBOX_STREAM_STALL_SECONDS", "stream_stall_seconds", "a stream whose reader takes nothing this long (buffer full) is stopped and its row cancelled", kind="number", default=30.0, minimum=0.1),
    Setting("VOICEBOX_STREAM_DECODE_FRAMES", "stream_decode_frames", "streams only: decode the 12 Hz codec every N frames while the talker runs (audio inside a chunk, ~N/12.5 s of speech per piece; engines that support it, i.e. Qwen3-TTS); 0 = audio per text chunk", kind="int", default=0, default_doc="0 (see `docs/engines.md`)"),
    Setting("VOICEBOX_STREAM_JOBS", "stream_jobs", "1: the RunPod handler is a generator (stream jobs reach `/stream`; outputs are lists, `[answer]`); 0: the plain handler (every job's `output` is its answer)", kind="flag"),
    Setting("VOICEBOX_READY_TIMEOUT_SECONDS", "ready_timeout_seconds", "cold start: seconds to wait for the server", kind="number", default=120.0, minimum=1),
    Setting("VOICEBOX_ALLOW_ADMIN_JOBS", "allow_admin_jobs", "1: RunPod jobs may call admin routes", kind="flag"),
    Setting("VOICEBOX_API_KEYS", "api_keys", "comma-separated bearer keys for standalone serve", kind="keys", default_doc="unset (no auth)"),
    Setting("VOICEBOX_ADMIN_KEYS", "admin_keys", "comma-separated admin bearer keys", kind="keys"),
    Setting("VOICEBOX_CORS_ORIGINS", "cors_origins", "comma-separated browser origins allowed besides the Voicebox app's; `*` allows any (logged as a warning)", parse=_cors, default_doc="unset"),
    Setting("VOICEBOX_ALLOWED_HOSTS", "allowed_hosts", "comma-separated Host names accepted on a loopback connection besides localhost/127.0.0.1/::1 (DNS rebinding guard)", kind="keys"),
    Setting("VOICEBOX_DEMO_PREBUILT", "demo_prebuilt", "an HF home holding the demo models prebuilt (scripts/setup-venv.sh builds them into .venv/voicebox-demo-models; scripts/run-local.sh names it): a volume without them copies them instead of building them", parse=_demo_prebuilt, default_doc="unset"),
    Setting("VOICEBOX_PROMPT_CACHE_MB", "prompt_cache_bytes", "bound of the voice prompt cache on the volume", kind="int", default=2048, minimum=1, scale=_MB),
    Setting("VOICEBOX_EXPORT_TTL_HOURS", "export_ttl_hours", "files in voicebox/exports/ older than this are removed by fsck (at boot and every hour while serving); 0 keeps them", kind="number", default=24.0),
    Setting("VOICEBOX_LOG_LEVEL", "log_level", "logging level", parse=_log_level, default_doc="INFO"),
    Setting("VOICEBOX_SQLITE_VFS", "sqlite_vfs", "SQLite VFS for the worker's local copies (unix-none: no SQLite locks, for the volume simulation)", parse=_sqlite_vfs, default_doc="unset"),
)
# fmt: on

#: ``{variable: "help; default ..."}`` for every setting (produced from ``SETTINGS``)
SETTINGS_DOC: dict[str, str] = {s.env: s.doc for s in SETTINGS}


def markdown_table() -> str:
    """The settings table of ``docs/architecture.md`` (produced from ``SETTINGS``)."""
    rows = ["| variable | meaning and default |", "|---|---|"]
    rows += [f"| `{s.env}` | {s.doc} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m backend.config: print the docs table
    print(markdown_table(), end="")
