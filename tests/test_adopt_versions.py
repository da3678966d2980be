"""Acceptance: an upstream Voicebox library with versions, effects, takes and a story pinned to a non-default
version adopts whole — every version row with its id and label, every referenced file byte-identical."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from backend.config import Settings
from tests.support.legacy_schemas import UPSTREAM_DDL, LegacyFixture, _ts, _uid, _Writer
from volume_bootstrap.adopt import adopt_data_dir
from volume_bootstrap.layout import ensure_layout

#: what newer upstream versions added: per-take settings on versions, fades and speed on story items
NEWER_UPSTREAM = """
ALTER TABLE generation_versions ADD COLUMN text TEXT;
ALTER TABLE generation_versions ADD COLUMN language VARCHAR;
ALTER TABLE generation_versions ADD COLUMN instruct TEXT;
ALTER TABLE generation_versions ADD COLUMN seed INTEGER;
ALTER TABLE story_items ADD COLUMN fade_in_ms INTEGER DEFAULT 0;
ALTER TABLE story_items ADD COLUMN fade_out_ms INTEGER DEFAULT 0;
ALTER TABLE story_items ADD COLUMN speed FLOAT DEFAULT 1.0;
"""


@pytest.fixture
def settings(make_settings) -> Settings:  # type: ignore[no-untyped-def]
    s = make_settings()
    ensure_layout(s)
    return s


REVERB = '[{"type": "reverb", "enabled": true, "params": {"room_size": 0.8}}]'


def build_library(data_dir: Path) -> tuple[LegacyFixture, dict[str, dict[str, object]], dict]:
    fx = LegacyFixture("upstream", data_dir, data_dir / "voicebox.db")
    w = _Writer(fx, UPSTREAM_DDL + NEWER_UPSTREAM)
    ann = _uid()
    w.row(
        "profiles",
        id=ann,
        name="Ann",
        language="en",
        effects_chain=REVERB,
        created_at=_ts(1),
        updated_at=_ts(1),
    )
    sample = _uid()
    w.row(
        "profile_samples",
        id=sample,
        profile_id=ann,
        audio_path=f"profiles/{ann}/{sample}.wav",
        reference_text="ref",
    )
    w.audio(f"profiles/{ann}/{sample}.wav")
    versions: dict[str, dict[str, object]] = {}

    def generation(default_rel: str) -> str:
        gid = _uid()
        w.row(
            "generations",
            id=gid,
            profile_id=ann,
            text="line",
            language="en",
            audio_path=default_rel.format(gid=gid),
            duration=1.0,
            seed=1,
            engine="qwen",
            status="completed",
            is_favorited=0,
            source="manual",
            created_at=_ts(2),
        )
        return gid

    def version(
        gid: str, label: str, rel: str, *, default: bool, second: int, **extra: object
    ) -> str:
        vid = _uid()
        row = dict(
            id=vid,
            generation_id=gid,
            label=label,
            audio_path=rel,
            is_default=int(default),
            created_at=_ts(3, second),
            **extra,
        )
        w.row("generation_versions", **row)
        w.audio(rel)
        versions[vid] = row
        return vid

    # effects + a take; the effects version is the default
    g1 = generation("generations/{gid}_fx.wav")
    clean = version(g1, "original", f"generations/{g1}.wav", default=False, second=1)
    version(
        g1,
        "reverb",
        f"generations/{g1}_fx.wav",
        default=True,
        second=2,
        effects_chain=REVERB,
        source_version_id=clean,
    )
    take = version(
        g1,
        "take-2",
        f"generations/{g1}_take2.wav",
        default=False,
        second=3,
        seed=99,
        text="line, again",
    )
    # one plain generation with its original only
    g2 = generation("generations/{gid}.wav")
    version(g2, "original", f"generations/{g2}.wav", default=True, second=4)
    # versions with no default flagged: the oldest becomes the default (upstream's fallback)
    g3 = generation("generations/{gid}.wav")
    oldest = version(g3, "original", f"generations/{g3}.wav", default=False, second=5)
    version(g3, "take-2", f"generations/{g3}_b.wav", default=False, second=6)

    story = _uid()
    w.row("stories", id=story, name="Saga", description="d", created_at=_ts(4), updated_at=_ts(4))
    items = {
        "pinned_clean": dict(
            id=_uid(),
            story_id=story,
            generation_id=g1,
            version_id=clean,
            start_time_ms=0,
            track=0,
            trim_start_ms=100,
            trim_end_ms=50,
            volume=0.5,
            fade_in_ms=10,
            created_at=_ts(4),
        ),
        "pinned_take": dict(
            id=_uid(),
            story_id=story,
            generation_id=g1,
            version_id=take,
            start_time_ms=1500,
            track=1,
            trim_start_ms=0,
            trim_end_ms=0,
            volume=1.5,
            created_at=_ts(4),
        ),
        "default": dict(
            id=_uid(),
            story_id=story,
            generation_id=g2,
            version_id=None,
            start_time_ms=3000,
            track=0,
            trim_start_ms=0,
            trim_end_ms=0,
            volume=1.0,
            created_at=_ts(4),
        ),
    }
    for item in items.values():
        w.row("story_items", **item)
    w.row(
        "effect_presets", id=_uid(), name="Robotic", effects_chain="[]", is_builtin=1, sort_order=0
    )
    mine = _uid()
    w.row(
        "effect_presets",
        id=mine,
        name="My Hall",
        effects_chain=REVERB,
        is_builtin=0,
        sort_order=100,
        created_at=_ts(5),
    )
    w.finish()
    return fx, versions, {"items": items, "story": story, "g3": g3, "oldest": oldest, "mine": mine}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(settings: Settings, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(settings.db_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_upstream_library_with_versions_takes_effects_and_a_pinned_story_adopts_whole(
    settings: Settings, tmp_path: Path
) -> None:
    fx, versions, extra = build_library(tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)

    # every version row: same id, label, chain, source, take settings; the default kept (or promoted)
    got = {r["id"]: dict(r) for r in _rows(settings, "SELECT * FROM generation_versions")}
    assert set(got) == set(versions)
    for vid, legacy in versions.items():
        row = got[vid]
        for key in (
            "generation_id",
            "label",
            "audio_path",
            "effects_chain",
            "source_version_id",
            "seed",
            "text",
        ):
            assert row[key] == legacy.get(key), (vid, key)
        expected_default = legacy["is_default"] == 1 or vid == extra["oldest"]
        assert bool(row["is_default"]) is expected_default, vid
        assert row["sha256"] == fx.file_sha[row["audio_path"]]
    # generations.audio_path is the default version's file
    for gen in _rows(settings, "SELECT id, audio_path FROM generations"):
        defaults = [v for v in got.values() if v["generation_id"] == gen["id"] and v["is_default"]]
        assert len(defaults) == 1 and defaults[0]["audio_path"] == gen["audio_path"]
    # every referenced file (samples and all versions) byte-identical on the volume
    for rel, digest in fx.file_sha.items():
        assert _sha(settings.data_dir / rel) == digest, rel
    assert report["files_missing"] == [] and report["unadopted_versions"] == []

    # the story and its items, with their pins, trims, tracks and volumes
    story = _rows(settings, "SELECT * FROM stories")
    assert [(s["id"], s["name"]) for s in story] == [(extra["story"], "Saga")]
    items = {r["id"]: dict(r) for r in _rows(settings, "SELECT * FROM story_items")}
    for legacy in extra["items"].values():
        row = items[legacy["id"]]
        for key in (
            "generation_id",
            "version_id",
            "start_time_ms",
            "track",
            "trim_start_ms",
            "trim_end_ms",
            "volume",
        ):
            assert row[key] == legacy[key], (legacy["id"], key)
    pinned = items[extra["items"]["pinned_clean"]["id"]]["version_id"]
    assert not got[pinned]["is_default"]  # pinned to a non-default version
    assert "story_items.fade_in_ms" in report["dropped_columns"]  # reported, not silently lost

    # presets: the user's arrives with its id, the built-in is merged with the seeded one
    presets = {r["name"]: dict(r) for r in _rows(settings, "SELECT * FROM effect_presets")}
    assert (
        presets["My Hall"]["id"] == extra["mine"] and presets["My Hall"]["effects_chain"] == REVERB
    )
    assert presets["Robotic"]["is_builtin"] == 1 and report["presets_merged"] == ["Robotic"]
    assert [r["effects_chain"] for r in _rows(settings, "SELECT effects_chain FROM profiles")] == [
        REVERB
    ]

    again = adopt_data_dir(settings, fx.data_dir)
    assert again["already_adopted"] is True and again["files_copied"] == 0
    assert len(_rows(settings, "SELECT id FROM generation_versions")) == len(versions)


def test_fork_stories_arrive_laid_out_in_order(settings: Settings, tmp_path: Path) -> None:
    """The old fork's items have a position, no time: laid out on track 0 with a 200 ms gap."""
    from tests.support.legacy_schemas import build_fork_old

    fx = build_fork_old(tmp_path / "legacy")
    report = adopt_data_dir(settings, fx.data_dir)
    assert report["counts_after"]["stories"] == 1 and report["counts_after"]["story_items"] == 1
    items = _rows(
        settings, "SELECT generation_id, start_time_ms, track, version_id FROM story_items"
    )
    assert [tuple(i) for i in items] == [(fx.generation_ids[0], 0, 0, None)]
