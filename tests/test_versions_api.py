"""Versions, effects, takes and stories through the API, in the desktop app's shapes; bad input is a 4xx naming
the field with nothing written."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.config import Settings
from backend.engines.manager import EngineManager
from backend.services.container import Services
from tests.support.app_contract import GatedTTS, shape, shapes
from tests.test_app_contract import profile_with_sample

pytestmark = [pytest.mark.timeout(180), pytest.mark.both_backends]
ECHO = [{"type": "reverb", "enabled": True, "params": {"room_size": 0.7}}]
FOUR = [
    {"type": "highpass", "params": {"cutoff_frequency_hz": 120}},
    {"type": "compressor", "params": {"ratio": 3}},
    {"type": "reverb", "params": {}},
    {"type": "gain", "params": {"gain_db": -3}},
]


class App(TestClient):
    services: Services


@pytest.fixture
def app(api_settings: Settings) -> Iterator[App]:
    tts = GatedTTS()
    tts.gate.set()
    services = Services.create(
        api_settings, engines=EngineManager(api_settings, tts_factory=lambda _s: tts)
    )
    with App(create_app(api_settings, services=services), raise_server_exceptions=False) as c:
        c.services = services
        yield c
    services.close()


def generate(app: App, profile: str, **extra: Any) -> dict[str, Any]:
    r = app.post(
        "/generate?wait=true", json={"profile_id": profile, "text": "Hello there.", **extra}
    )
    assert r.status_code == 200, r.text
    return shape(r.json(), "GenerationResponse")


def files(app: App) -> list[str]:
    root = app.services.settings.data_dir / "generations"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def rows(app: App, table: str) -> int:
    from sqlalchemy import text

    with app.services.db.read() as session:  # either backend
        return int(session.scalar(text(f"select count(*) from {table}")) or 0)


def test_generation_has_its_original_version_and_effects_make_new_ones(app: App) -> None:
    profile = profile_with_sample(app)
    gen = generate(app, profile)
    assert gen["active_version_id"] and [v["label"] for v in gen["versions"]] == ["original"]

    available = app.get("/effects/available").json()["effects"]
    assert {e["type"] for e in available} >= {"reverb", "pitch_shift", "compressor", "chorus"}
    assert available[0][
        "params"
    ]  # upstream's shape: {name: {default, min, max, step, description}}

    before = files(app)
    r = app.post(f"/effects/preview/{gen['id']}", json={"effects_chain": ECHO})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert sf.info(io.BytesIO(r.content)).frames > 0
    assert files(app) == before  # a preview saves nothing

    r = app.post(
        f"/generations/{gen['id']}/versions/apply-effects",
        json={"effects_chain": ECHO, "label": "hall", "set_as_default": True},
    )
    version = shape(r.json(), "GenerationVersionResponse")
    assert version["is_default"] and version["effects_chain"][0]["type"] == "reverb"
    history = app.get(f"/history/{gen['id']}").json()
    assert (
        history["audio_path"] == version["audio_path"]
    )  # the generation plays its default version
    assert history["active_version_id"] == version["id"] and len(history["versions"]) == 2
    audio = app.get(f"/audio/version/{version['id']}")
    assert audio.status_code == 200
    path = app.services.settings.data_dir / version["audio_path"]
    assert (
        hashlib.sha256(audio.content).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    )

    listed = shapes(
        app.get(f"/generations/{gen['id']}/versions").json(), "GenerationVersionResponse"
    )
    original = next(v for v in listed if v["label"] == "original")
    r = app.put(f"/generations/{gen['id']}/versions/{original['id']}/set-default")
    assert (
        r.status_code == 200
        and app.get(f"/history/{gen['id']}").json()["audio_path"] == (original["audio_path"])
    )
    # deleting the default promotes the oldest remaining one; the last one cannot go
    assert app.delete(f"/generations/{gen['id']}/versions/{original['id']}").status_code == 200
    assert not (app.services.settings.data_dir / original["audio_path"]).exists()
    left = app.get(f"/generations/{gen['id']}/versions").json()
    assert [(v["id"], v["is_default"]) for v in left] == [(version["id"], True)]
    r = app.delete(f"/generations/{gen['id']}/versions/{version['id']}")
    assert r.status_code == 400 and "last" in r.json()["detail"]
    assert app.get(f"/history/{gen['id']}").json()["audio_path"] == version["audio_path"]

    # deleting the generation removes every version and its file
    assert app.delete(f"/history/{gen['id']}").status_code == 200
    assert files(app) == [] and rows(app, "generation_versions") == 0


def test_effects_chain_on_generate_and_profile_chain_apply_to_new_generations(app: App) -> None:
    profile = profile_with_sample(app)
    gen = generate(app, profile, effects_chain=FOUR)
    labels = {v["label"]: v for v in gen["versions"]}
    assert set(labels) == {"original", "effects"} and labels["effects"]["is_default"]
    assert labels["effects"]["source_version_id"] == labels["original"]["id"]
    assert labels["original"]["effects_chain"] is None

    r = app.put(f"/profiles/{profile}/effects", json={"effects_chain": ECHO})
    assert r.status_code == 200 and r.json()["effects_chain"][0]["type"] == "reverb"
    gen2 = generate(app, profile)
    assert {v["label"] for v in gen2["versions"]} == {"original", "effects"}
    assert app.put(f"/profiles/{profile}/effects", json={"effects_chain": None}).status_code == 200
    assert [v["label"] for v in generate(app, profile)["versions"]] == ["original"]


def test_regenerate_makes_a_new_take_as_the_default_version(app: App) -> None:
    profile = profile_with_sample(app)
    gen = generate(app, profile)
    r = app.post(f"/generate/{gen['id']}/regenerate?wait=true")
    assert r.status_code == 200, r.text
    take = shape(r.json(), "GenerationResponse")
    assert take["id"] == gen["id"] and take["status"] == "completed"
    labels = [(v["label"], v["is_default"]) for v in take["versions"]]
    assert labels == [("original", False), ("take-2", True)]
    assert take["audio_path"] != gen["audio_path"]
    assert app.post("/generate/nope/regenerate").status_code == 404


def test_profile_bad_effects_input_is_a_4xx_naming_the_field_and_writes_nothing(app: App) -> None:
    profile = profile_with_sample(app)
    gen = generate(app, profile)
    other = generate(app, profile)
    before_files, before_versions = files(app), rows(app, "generation_versions")
    url = f"/generations/{gen['id']}/versions/apply-effects"
    cases = [
        ({"effects_chain": [{"type": "warp", "params": {}}]}, "effects_chain[0].type"),
        (
            {"effects_chain": [{"type": "reverb", "params": {"room_size": 5}}]},
            "effects_chain[0].params.room_size",
        ),
        ({"effects_chain": [{"type": "gain", "params": {"volume": 1}}]}, "params.volume"),
        ({"effects_chain": ECHO * 1000}, "effects_chain"),
        (
            {"effects_chain": ECHO, "source_version_id": other["versions"][0]["id"]},
            "source_version_id",
        ),
    ]
    for body, field in cases:
        r = app.post(url, json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert field in r.text, (field, r.text)
    r = app.post(
        "/generate", json={"profile_id": profile, "text": "x", "effects_chain": ECHO * 1000}
    )
    assert r.status_code == 422 and "effects_chain" in r.text
    r = app.post(
        "/generate", json={"profile_id": profile, "text": "x", "effects_chain": [{"type": "warp"}]}
    )
    assert r.status_code == 400 and "effects_chain[0].type" in r.text
    r = app.put(f"/profiles/{profile}/effects", json={"effects_chain": [{"type": "warp"}]})
    assert r.status_code == 400 and "effects_chain[0].type" in r.text
    r = app.post("/effects/presets", json={"name": "Bad", "effects_chain": [{"type": "warp"}]})
    assert r.status_code == 400
    assert files(app) == before_files and rows(app, "generation_versions") == before_versions
    assert rows(app, "generations") == 2


def test_presets_builtin_and_user(app: App) -> None:
    presets = shapes(app.get("/effects/presets").json(), "EffectPresetResponse")
    assert len(presets) == 9 and all(p["is_builtin"] for p in presets)
    r = app.post("/effects/presets", json={"name": "Mine", "effects_chain": ECHO})
    mine = shape(r.json(), "EffectPresetResponse")
    assert mine["effects_chain"][0]["params"]["room_size"] == 0.7 and not mine["is_builtin"]
    assert (
        app.post("/effects/presets", json={"name": "Mine", "effects_chain": ECHO}).status_code
        == 409
    )
    r = app.put(f"/effects/presets/{mine['id']}", json={"name": "Mine 2"})
    assert r.json()["name"] == "Mine 2"
    assert app.delete(f"/effects/presets/{presets[0]['id']}").status_code == 400  # a built-in
    assert app.delete(f"/effects/presets/{mine['id']}").status_code == 200
    assert app.get(f"/effects/presets/{mine['id']}").status_code == 404


def _story_with(app: App, gen_ids: list[str]) -> tuple[str, list[dict[str, Any]]]:
    story = shape(app.post("/stories", json={"name": "Saga"}).json(), "StoryResponse")
    items = [
        shape(
            app.post(f"/stories/{story['id']}/items", json={"generation_id": g}).json(),
            "StoryItemDetail",
        )
        for g in gen_ids
    ]
    return story["id"], items


def test_story_routes_and_export(app: App) -> None:
    profile = profile_with_sample(app)
    a, b = generate(app, profile), generate(app, profile)
    story, items = _story_with(app, [a["id"], b["id"]])
    assert items[0]["start_time_ms"] == 0
    assert items[1]["start_time_ms"] == int(a["duration"] * 1000) + 200  # appended after a gap
    sid, first, second = story, items[0]["id"], items[1]["id"]

    assert (
        app.put(
            f"/stories/{sid}/items/{first}/move", json={"start_time_ms": 50, "track": 1}
        ).json()["track"]
        == 1
    )
    assert (
        app.put(
            f"/stories/{sid}/items/{first}/trim", json={"trim_start_ms": 10, "trim_end_ms": 20}
        ).json()["trim_start_ms"]
        == 10
    )
    assert (
        app.put(f"/stories/{sid}/items/{first}/volume", json={"volume": 0.5}).json()["volume"]
        == 0.5
    )
    split = app.post(f"/stories/{sid}/items/{first}/split", json={"split_time_ms": 100}).json()
    assert len(split) == 2 and split[1]["trim_start_ms"] == 110
    dup = shape(app.post(f"/stories/{sid}/items/{second}/duplicate").json(), "StoryItemDetail")
    r = app.put(
        f"/stories/{sid}/items/times",
        json={"updates": [{"generation_id": b["id"], "start_time_ms": 5000}]},
    )
    assert r.status_code == 200
    r = app.put(
        f"/stories/{sid}/items/{dup['id']}/version", json={"version_id": b["versions"][0]["id"]}
    )
    assert r.json()["version_id"] == b["versions"][0]["id"]
    detail = shape(app.get(f"/stories/{sid}").json(), "StoryDetailResponse")
    shapes(detail["items"], "StoryItemDetail")
    assert len(detail["items"]) == 4
    assert shapes(app.get("/stories").json(), "StoryResponse")[0]["item_count"] == 4

    r = app.get(f"/stories/{sid}/export-audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    mixed, rate = sf.read(io.BytesIO(r.content))
    assert rate == 24000 and np.abs(mixed).max() > 0
    ends = [
        i["start_time_ms"] + i["duration"] * 1000 - i["trim_start_ms"] - i["trim_end_ms"]
        for i in detail["items"]
    ]
    assert abs(len(mixed) / rate * 1000 - max(ends)) < 5

    r = app.put(f"/stories/{sid}", json={"name": "Saga 2"})
    assert r.json()["name"] == "Saga 2"
    assert app.delete(f"/stories/{sid}/items/{dup['id']}").status_code == 200
    assert app.delete(f"/stories/{sid}").status_code == 200
    assert app.get(f"/stories/{sid}").status_code == 404
    assert rows(app, "story_items") == 0


def test_a_pinned_version_deleted_falls_back_to_the_default(app: App) -> None:
    profile = profile_with_sample(app)
    gen = generate(app, profile)
    fx_version = app.post(
        f"/generations/{gen['id']}/versions/apply-effects", json={"effects_chain": ECHO}
    ).json()
    sid, items = _story_with(app, [gen["id"]])
    pinned = app.put(
        f"/stories/{sid}/items/{items[0]['id']}/version", json={"version_id": fx_version["id"]}
    ).json()
    assert pinned["audio_path"] == fx_version["audio_path"]
    assert app.delete(f"/generations/{gen['id']}/versions/{fx_version['id']}").status_code == 200
    item = app.get(f"/stories/{sid}").json()["items"][0]
    assert item["version_id"] is None and item["audio_path"] == gen["audio_path"]
    assert app.get(f"/stories/{sid}/export-audio").status_code == 200
    # deleting the generation removes its clips
    assert app.delete(f"/history/{gen['id']}").status_code == 200
    assert app.get(f"/stories/{sid}").json()["items"] == []


def test_story_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(app: App) -> None:
    profile = profile_with_sample(app)
    gen, other = generate(app, profile), generate(app, profile)
    sid, items = _story_with(app, [gen["id"]])
    item = items[0]["id"]
    before = app.get(f"/stories/{sid}").json()
    cases = [
        (
            "post",
            f"/stories/{sid}/items",
            {"generation_id": gen["id"], "start_time_ms": -1},
            "start_time_ms",
        ),
        (
            "post",
            f"/stories/{sid}/items",
            {"generation_id": gen["id"], "start_time_ms": 3_600_001},
            "start_time_ms",
        ),
        (
            "put",
            f"/stories/{sid}/items/{item}/move",
            {"start_time_ms": -5, "track": 0},
            "start_time_ms",
        ),
        (
            "put",
            f"/stories/{sid}/items/{item}/move",
            {"start_time_ms": 4_000_000, "track": 0},
            "start_time_ms",
        ),
        ("post", f"/stories/{sid}/items/{item}/split", {"split_time_ms": 0}, "split_time_ms"),
        ("post", f"/stories/{sid}/items/{item}/split", {"split_time_ms": 999_999}, "split_time_ms"),
        (
            "put",
            f"/stories/{sid}/items/{item}/trim",
            {"trim_start_ms": 99_999, "trim_end_ms": 0},
            "trim",
        ),
        ("put", f"/stories/{sid}/items/{item}/volume", {"volume": 3}, "volume"),
        (
            "put",
            f"/stories/{sid}/items/{item}/version",
            {"version_id": other["versions"][0]["id"]},
            "version_id",
        ),
        (
            "put",
            f"/stories/{sid}/items/times",
            {"updates": [{"generation_id": gen["id"], "start_time_ms": -1}]},
            "start_time_ms",
        ),
    ]
    for method, url, body, field in cases:
        r = getattr(app, method)(url, json=body)
        assert 400 <= r.status_code < 500, (url, body, r.text)
        assert field in r.text, (field, r.text)
    after = app.get(f"/stories/{sid}").json()
    assert after["items"] == before["items"]
