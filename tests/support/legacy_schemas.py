"""Builders of legacy Voicebox data directories (``voicebox.db`` + audio files) for the adoption tests.

Why hand-written DDL instead of importing Voicebox: the point is to reproduce what real installs left on disk —
the RunPod fork's absolute ``/app/data`` paths, soft deletes and job table; upstream's relative paths, statuses
and versions; the older fork without ``instruct``/``avatar_path`` — including the quirks (a legacy ``data/``
prefix, stale ``generating`` rows, a file that went missing). The DDL is what SQLAlchemy's ``create_all`` of
each codebase wrote (upstream Voicebox's ``backend/database`` models and the forks' own).

Each builder writes real 1 s sine waves at 24 kHz (soundfile, PCM16) and returns a ``LegacyFixture`` that says
what adoption must produce, so the tests compare against facts recorded at build time, not recomputed ones.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import audio

SAMPLE_RATE = 24000
FORK_ROOT = "/app/data"

# ---------------------------------------------------------------------------------------------- DDL
_CHANNELS = """
CREATE TABLE audio_channels (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, is_default BOOLEAN, created_at DATETIME,
    PRIMARY KEY (id));
CREATE TABLE channel_device_mappings (
    id VARCHAR NOT NULL, channel_id VARCHAR NOT NULL, device_id VARCHAR NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(channel_id) REFERENCES audio_channels (id));
CREATE TABLE profile_channel_mappings (
    profile_id VARCHAR NOT NULL, channel_id VARCHAR NOT NULL,
    PRIMARY KEY (profile_id, channel_id),
    FOREIGN KEY(profile_id) REFERENCES profiles (id),
    FOREIGN KEY(channel_id) REFERENCES audio_channels (id));
CREATE TABLE projects (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, data TEXT, created_at DATETIME, updated_at DATETIME,
    PRIMARY KEY (id));
"""

FORK_DDL = (
    """
CREATE TABLE profiles (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, language VARCHAR,
    avatar_path VARCHAR, created_at DATETIME, updated_at DATETIME,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE profile_samples (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, audio_path VARCHAR NOT NULL,
    reference_text TEXT NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE generations (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, text TEXT NOT NULL, language VARCHAR,
    audio_path VARCHAR NOT NULL, duration FLOAT NOT NULL, seed INTEGER, instruct TEXT,
    generation_time_seconds FLOAT, model_size VARCHAR, backend_type VARCHAR,
    request_user_id VARCHAR, request_user_first_name VARCHAR, request_ip VARCHAR,
    deleted_at DATETIME, created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE generation_jobs (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, text TEXT, language VARCHAR, seed INTEGER,
    model_size VARCHAR, instruct TEXT, status VARCHAR, progress FLOAT, error TEXT,
    generation_id VARCHAR, request_user_id VARCHAR, request_user_first_name VARCHAR,
    request_ip VARCHAR, backend_type VARCHAR, created_at DATETIME, started_at DATETIME,
    completed_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE stories (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, created_at DATETIME,
    updated_at DATETIME, PRIMARY KEY (id));
CREATE TABLE story_items (
    id VARCHAR NOT NULL, story_id VARCHAR NOT NULL, generation_id VARCHAR NOT NULL,
    start_time_ms INTEGER NOT NULL, track INTEGER NOT NULL DEFAULT 0, trim_start_ms INTEGER,
    trim_end_ms INTEGER, created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(story_id) REFERENCES stories (id),
    FOREIGN KEY(generation_id) REFERENCES generations (id));
"""
    + _CHANNELS
)

FORK_OLD_DDL = (
    """
CREATE TABLE profiles (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, language VARCHAR,
    created_at DATETIME, updated_at DATETIME,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE profile_samples (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, audio_path VARCHAR NOT NULL,
    reference_text TEXT NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE generations (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, text TEXT NOT NULL, language VARCHAR,
    audio_path VARCHAR NOT NULL, duration FLOAT NOT NULL, seed INTEGER, created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE stories (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, created_at DATETIME,
    updated_at DATETIME, PRIMARY KEY (id));
CREATE TABLE story_items (
    id VARCHAR NOT NULL, story_id VARCHAR NOT NULL, generation_id VARCHAR NOT NULL,
    position INTEGER NOT NULL, created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(story_id) REFERENCES stories (id));
"""
    + _CHANNELS
)

UPSTREAM_DDL = (
    """
CREATE TABLE profiles (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, language VARCHAR,
    avatar_path VARCHAR, effects_chain TEXT, voice_type VARCHAR DEFAULT 'cloned',
    preset_engine VARCHAR, preset_voice_id VARCHAR, design_prompt TEXT, default_engine VARCHAR,
    personality TEXT, created_at DATETIME, updated_at DATETIME,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE profile_samples (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, audio_path VARCHAR NOT NULL,
    reference_text TEXT NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE generations (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, text TEXT NOT NULL, language VARCHAR,
    audio_path VARCHAR, duration FLOAT, seed INTEGER, instruct TEXT, engine VARCHAR DEFAULT 'qwen',
    model_size VARCHAR, status VARCHAR DEFAULT 'completed', error TEXT,
    is_favorited BOOLEAN DEFAULT 0, source VARCHAR NOT NULL DEFAULT 'manual', created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(profile_id) REFERENCES profiles (id));
CREATE TABLE generation_versions (
    id VARCHAR NOT NULL, generation_id VARCHAR NOT NULL, label VARCHAR NOT NULL,
    audio_path VARCHAR NOT NULL, effects_chain TEXT, source_version_id VARCHAR,
    is_default BOOLEAN, created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(generation_id) REFERENCES generations (id),
    FOREIGN KEY(source_version_id) REFERENCES generation_versions (id));
CREATE TABLE stories (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, created_at DATETIME,
    updated_at DATETIME, PRIMARY KEY (id));
CREATE TABLE story_items (
    id VARCHAR NOT NULL, story_id VARCHAR NOT NULL, generation_id VARCHAR NOT NULL,
    version_id VARCHAR, start_time_ms INTEGER NOT NULL, track INTEGER NOT NULL DEFAULT 0,
    trim_start_ms INTEGER, trim_end_ms INTEGER, volume FLOAT DEFAULT 1.0, created_at DATETIME,
    PRIMARY KEY (id), FOREIGN KEY(story_id) REFERENCES stories (id),
    FOREIGN KEY(generation_id) REFERENCES generations (id));
CREATE TABLE effect_presets (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, effects_chain TEXT NOT NULL,
    is_builtin BOOLEAN, sort_order INTEGER, created_at DATETIME,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE generation_settings (id INTEGER NOT NULL, data TEXT, PRIMARY KEY (id));
CREATE TABLE capture_settings (id INTEGER NOT NULL, data TEXT, PRIMARY KEY (id));
CREATE TABLE mcp_client_bindings (
    id VARCHAR NOT NULL, client_id VARCHAR, profile_id VARCHAR, default_personality TEXT,
    PRIMARY KEY (id));
CREATE TABLE captures (id VARCHAR NOT NULL, audio_path VARCHAR, text TEXT, PRIMARY KEY (id));
"""
    + _CHANNELS
)


# ---------------------------------------------------------------------------------------------- fixture
@dataclass
class LegacyFixture:
    """What a builder wrote, and what a correct adoption must end with."""

    schema: str
    data_dir: Path
    db_path: Path
    counts: dict[str, int] = field(default_factory=dict)  # rows per legacy table
    expected_after: dict[str, int] = field(default_factory=dict)  # rows per table of ours
    file_sha: dict[str, str] = field(
        default_factory=dict
    )  # relative path → sha256 of written files
    missing_rows: list[str] = field(default_factory=list)  # row ids whose file was never written
    soft_deleted: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    orphan_generations: list[str] = field(default_factory=list)
    dropped_tables: dict[str, int] = field(default_factory=dict)
    dropped_columns: list[str] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)
    generation_ids: list[str] = field(default_factory=list)  # those that must be in history
    default_version_path: dict[str, str] = field(default_factory=dict)  # gen id → relative path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_wav(path: Path, freq: float, seconds: float = 1.0) -> str:
    """One second of sine at ``freq`` (each file gets its own frequency, so each has its own hash)."""
    return sha256_of(audio.write_wav(path, seconds, rate=SAMPLE_RATE, freq=freq))


def _uid() -> str:
    return str(uuid.uuid4())


def _ts(day: int, second: int = 0) -> str:
    """A timestamp as SQLAlchemy's SQLite DateTime stored it in both codebases."""
    return f"2025-0{1 + day % 9}-{10 + day:02d} 12:00:{second:02d}.123456"


class _Writer:
    """Inserts rows and writes files; records what adoption must find."""

    def __init__(self, fixture: LegacyFixture, ddl: str) -> None:
        self.fx = fixture
        fixture.data_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(fixture.db_path)
        self.conn.executescript(ddl)
        self.freq = 200.0

    def row(self, table: str, **values: object) -> None:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(values.values()))

    def audio(self, rel: str, *, write: bool = True) -> None:
        """Write the file at ``<data_dir>/<rel>`` (rel as adoption will store it)."""
        self.freq += 37.0
        if write:
            self.fx.file_sha[rel] = write_wav(self.fx.data_dir / rel, self.freq)

    def avatar(self, rel: str) -> None:
        path = self.fx.data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes)
        self.fx.file_sha[rel] = sha256_of(path)

    def finish(self) -> LegacyFixture:
        self.conn.commit()
        tables = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        self.fx.counts = {
            t: self.conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables
        }
        self.fx.dropped_tables = {
            t: n
            for t, n in self.fx.counts.items()
            if t not in ("profiles", "profile_samples", "generations", *CARRIED)
        }
        self.conn.close()
        return self.fx


#: the legacy tables adoption carries besides the core ones (``volume_bootstrap.adopt.extras``)
CARRIED = ("generation_versions", "effect_presets", "stories", "story_items")


def _extras(versions: int, presets: int, stories: int, items: int) -> dict[str, int]:
    return {
        "generation_versions": versions,
        "effect_presets_adopted": presets,
        "stories": stories,
        "story_items": items,
    }


def _channels(w: _Writer, profile_id: str) -> None:
    channel = _uid()
    w.row("audio_channels", id=channel, name="Default", is_default=1, created_at=_ts(0))
    w.row("profile_channel_mappings", profile_id=profile_id, channel_id=channel)


# ---------------------------------------------------------------------------------------------- builders
def build_fork(data_dir: Path) -> LegacyFixture:
    """The RunPod fork: absolute ``/app/data`` paths, ``generation_jobs``, soft deletes, file ≠ row id."""
    fx = LegacyFixture("fork", data_dir, data_dir / "voicebox.db")
    w = _Writer(fx, FORK_DDL)
    alice, bob = _uid(), _uid()
    w.row(
        "profiles",
        id=alice,
        name="Alice",
        description="warm",
        language="en",
        avatar_path=f"{FORK_ROOT}/profiles/{alice}/avatar.png",
        created_at=_ts(1),
        updated_at=_ts(2),
    )
    w.avatar(f"profiles/{alice}/avatar.png")
    w.row("profiles", id=bob, name="Bob", language="de", created_at=_ts(3), updated_at=_ts(3))
    for pid, n in ((alice, 2), (bob, 1)):
        for i in range(n):
            sid = _uid()
            rel = f"profiles/{pid}/{sid}.wav"
            w.row(
                "profile_samples",
                id=sid,
                profile_id=pid,
                audio_path=f"{FORK_ROOT}/{rel}",
                reference_text=f"sample {i}",
            )
            w.audio(rel)
            fx.sample_ids.append(sid)
    jobs = []
    for i, (pid, state) in enumerate(
        ((alice, "ok"), (bob, "ok"), (alice, "deleted"), (alice, "missing"))
    ):
        gid, job = _uid(), _uid()
        jobs.append(job)
        rel = f"generations/{job}.wav"  # the fork names the file after the job, not the row
        w.row(
            "generations",
            id=gid,
            profile_id=pid,
            text=f"hello {i}",
            language="en",
            audio_path=f"{FORK_ROOT}/{rel}",
            duration=1.0,
            seed=42 + i,
            instruct="calm" if i == 0 else None,
            generation_time_seconds=2.5,
            model_size="1.7B",
            backend_type="pytorch",
            request_user_id="u1",
            request_user_first_name="Ann",
            request_ip="10.0.0.1",
            deleted_at=_ts(9) if state == "deleted" else None,
            created_at=_ts(4, i),
        )
        w.audio(rel, write=state != "missing")
        w.row(
            "generation_jobs",
            id=job,
            profile_id=pid,
            text=f"hello {i}",
            status="complete",
            progress=1.0,
            generation_id=gid,
            created_at=_ts(4, i),
        )
        if state == "deleted":
            fx.soft_deleted.append(gid)
        else:
            fx.generation_ids.append(gid)
        if state == "missing":
            fx.missing_rows.append(gid)
    w.row("generation_jobs", id=_uid(), profile_id=bob, text="never ran", status="queued")
    w.row("generation_jobs", id=_uid(), profile_id=bob, text="broke", status="error", error="OOM")
    story = _uid()
    w.row("stories", id=story, name="Tale", created_at=_ts(5), updated_at=_ts(5))
    w.row(
        "story_items",
        id=_uid(),
        story_id=story,
        generation_id=fx.generation_ids[0],
        start_time_ms=0,
        track=0,
        created_at=_ts(5),
    )
    _channels(w, alice)
    fx.expected_after = {
        "profiles": 2,
        "profile_samples": 3,
        "generations": 3,
        **_extras(0, 0, 1, 1),
    }
    fx.dropped_columns = [
        "generations.backend_type",
        "generations.deleted_at",
        "generations.request_ip",
        "generations.request_user_first_name",
        "generations.request_user_id",
    ]
    return w.finish()


def build_upstream(data_dir: Path) -> LegacyFixture:
    """Upstream: relative paths (one with a legacy ``data/`` prefix), statuses, versions, extra tables."""
    fx = LegacyFixture("upstream", data_dir, data_dir / "voicebox.db")
    w = _Writer(fx, UPSTREAM_DDL)
    carol, dave = _uid(), _uid()
    w.row(
        "profiles",
        id=carol,
        name="Carol",
        language="en",
        avatar_path=f"profiles/{carol}/avatar.png",
        effects_chain='[{"type":"reverb"}]',
        voice_type="cloned",
        default_engine="qwen",
        personality="cheerful",
        created_at=_ts(1),
        updated_at=_ts(1),
    )
    w.avatar(f"profiles/{carol}/avatar.png")
    w.row(
        "profiles",
        id=dave,
        name="Dave",
        language="fr",
        voice_type="cloned",
        created_at="2025-02-03T04:05:06",
        updated_at=None,
    )
    for pid, prefix in ((carol, ""), (carol, "data/"), (dave, "")):
        sid = _uid()
        rel = f"profiles/{pid}/{sid}.wav"
        w.row(
            "profile_samples",
            id=sid,
            profile_id=pid,
            audio_path=prefix + rel,
            reference_text="ref",
        )
        w.audio(rel)
        fx.sample_ids.append(sid)

    def gen(pid: str, status: str, *, audio: bool, **extra: object) -> str:
        gid = _uid()
        rel = f"generations/{gid}.wav" if audio else None
        w.row(
            "generations",
            id=gid,
            profile_id=pid,
            text=f"{status} text",
            language="en",
            audio_path=rel,
            duration=1.0 if audio else None,
            seed=7,
            engine="qwen",
            model_size="0.6B",
            status=status,
            is_favorited=1 if status == "completed" else 0,
            source="manual",
            created_at=_ts(6),
            **extra,
        )
        if rel:
            w.audio(rel)
        fx.generation_ids.append(gid)
        return gid

    plain = gen(carol, "completed", audio=True, instruct="slowly")
    fx.default_version_path[plain] = f"generations/{plain}.wav"
    w.row(
        "generation_versions",
        id=_uid(),
        generation_id=plain,
        label="original",
        audio_path=f"generations/{plain}.wav",
        is_default=1,
        created_at=_ts(6),
    )
    versioned = gen(dave, "completed", audio=True)
    original_version = _uid()
    w.row(
        "generation_versions",
        id=original_version,
        generation_id=versioned,
        label="original",
        audio_path=f"generations/{versioned}.wav",
        is_default=0,
        created_at=_ts(6),
    )
    processed = f"generations/{versioned}_processed.wav"
    w.row(
        "generation_versions",
        id=_uid(),
        generation_id=versioned,
        label="reverb",
        audio_path=processed,
        effects_chain='[{"type":"reverb"}]',
        source_version_id=original_version,
        is_default=1,
        created_at=_ts(7),
    )
    w.audio(processed)
    fx.default_version_path[versioned] = processed
    gen(dave, "failed", audio=False, error="CUDA out of memory")
    fx.unfinished.append(gen(carol, "generating", audio=False))
    fx.unfinished.append(gen(carol, "loading_model", audio=False))
    story = _uid()
    w.row("stories", id=story, name="Saga", created_at=_ts(8), updated_at=_ts(8))
    for i in range(2):
        w.row(
            "story_items",
            id=_uid(),
            story_id=story,
            generation_id=plain,
            start_time_ms=i * 1200,
            track=0,
            volume=1.0,
            created_at=_ts(8),
        )
    for i, name in enumerate(("Robot", "Radio", "Echo Chamber", "Deep Voice")):
        w.row(
            "effect_presets",
            id=_uid(),
            name=name,
            effects_chain="[]",
            is_builtin=1,
            sort_order=i,
        )
    w.row("generation_settings", id=1, data="{}")
    w.row("capture_settings", id=1, data="{}")
    _channels(w, carol)
    # 3 versions; of 4 presets, Radio, Echo Chamber and Deep Voice are built-ins here already (merged)
    fx.expected_after = {
        "profiles": 2,
        "profile_samples": 3,
        "generations": 5,
        **_extras(3, 1, 1, 2),
    }
    fx.dropped_columns = [
        "profiles.default_engine",
        "profiles.design_prompt",
        "profiles.personality",
        "profiles.preset_engine",
        "profiles.preset_voice_id",
        "profiles.voice_type",
    ]
    return w.finish()


def build_fork_old(data_dir: Path, root: str = "/home/someone/.voicebox/data") -> LegacyFixture:
    """The older fork: no ``instruct``, no ``avatar_path``; absolute paths under some other data dir."""
    fx = LegacyFixture("fork-old", data_dir, data_dir / "voicebox.db")
    w = _Writer(fx, FORK_OLD_DDL)
    erin = _uid()
    w.row("profiles", id=erin, name="Erin", language=None, created_at=None, updated_at=None)
    for i in range(2):
        sid = _uid()
        rel = f"profiles/{erin}/{sid}.wav"
        w.row(
            "profile_samples",
            id=sid,
            profile_id=erin,
            audio_path=f"{root}/{rel}",
            reference_text=f"old {i}",
        )
        w.audio(rel)
        fx.sample_ids.append(sid)
    for i in range(2):
        gid = _uid()
        rel = f"generations/{gid}.wav"
        w.row(
            "generations",
            id=gid,
            profile_id=erin,
            text=f"old {i}",
            language="en",
            audio_path=f"{root}/{rel}",
            duration=1.0,
            seed=None,
            created_at=_ts(2, i),
        )
        w.audio(rel)
        fx.generation_ids.append(gid)
    story = _uid()
    w.row("stories", id=story, name="Old", created_at=_ts(3), updated_at=_ts(3))
    w.row(
        "story_items",
        id=_uid(),
        story_id=story,
        generation_id=fx.generation_ids[0],
        position=0,
        created_at=_ts(3),
    )
    _channels(w, erin)
    fx.expected_after = {
        "profiles": 1,
        "profile_samples": 2,
        "generations": 2,
        **_extras(0, 0, 1, 1),
    }
    return w.finish()


def build_partial(data_dir: Path) -> LegacyFixture:
    """Profiles and generations but no ``profile_samples``: a half-created or hand-trimmed database."""
    fx = LegacyFixture("partial", data_dir, data_dir / "voicebox.db")
    ddl = """
CREATE TABLE profiles (
    id VARCHAR NOT NULL, name VARCHAR NOT NULL, description TEXT, language VARCHAR,
    avatar_path VARCHAR, created_at DATETIME, updated_at DATETIME,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE generations (
    id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL, text TEXT NOT NULL, language VARCHAR,
    audio_path VARCHAR NOT NULL, duration FLOAT NOT NULL, created_at DATETIME, PRIMARY KEY (id));
"""
    w = _Writer(fx, ddl)
    w.row("profiles", id=_uid(), name="Lonely", language="en", created_at=_ts(1), updated_at=_ts(1))
    return w.finish()


BUILDERS: dict[str, Callable[[Path], LegacyFixture]] = {
    "fork": build_fork,
    "upstream": build_upstream,
    "fork-old": build_fork_old,
}
