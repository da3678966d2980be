"""The Voicebox desktop app against ``serve``: every upstream route answers (never a missing-route 404), the app's
main flows answer in the shapes of its own types, and bad input is a 4xx that names the problem and writes nothing.

The app's expectations come from ``tests/support/voicebox_app_contract.json`` (upstream's route table and types).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

from backend.api import unavailable
from backend.app import create_app
from backend.config import Settings
from backend.db.models import AudioChannel, GenerationSettingsRow, ProfileChannel
from backend.engines.manager import EngineManager
from backend.services.container import Services
from backend.services.model_management import ModelManagementService
from tests.support.api import audio_bytes, files_under
from tests.support.app_contract import (
    MOUNTS,
    ROUTES,
    FakeDownloader,
    GatedTTS,
    concrete,
    shape,
    shapes,
    sse_events,
    whisper_files,
)

pytestmark = pytest.mark.timeout(120)


class App(TestClient):
    services: Services
    tts: GatedTTS
    downloader: FakeDownloader


@pytest.fixture
def app(api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # other tests may leave them set
        monkeypatch.delenv(name, raising=False)
    tts = GatedTTS()
    tts.gate.set()
    services = Services.create(
        api_settings, engines=EngineManager(api_settings, tts_factory=lambda _s: tts)
    )
    downloader = FakeDownloader(whisper_files(tmp_path / "whisper-src"))
    services.__dict__["model_management"] = ModelManagementService(
        services.settings, services.engines, downloader
    )
    with App(create_app(api_settings, services=services), raise_server_exceptions=False) as c:
        c.services, c.tts, c.downloader = services, tts, downloader
        yield c
    tts.gate.set()  # a test that failed mid-generation must not leave a thread waiting
    downloader.hold.set()
    services.close()


def profile_with_sample(client: TestClient, name: str = "Narrator") -> str:
    r = client.post("/profiles", json={"name": name, "language": "en"})
    profile = shape(r.json(), "VoiceProfileResponse")
    r = client.post(
        f"/profiles/{profile['id']}/samples",
        files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "hello there, this is my voice"},
    )
    shape(r.json(), "ProfileSampleResponse")
    return profile["id"]


def wait_status(client: TestClient, gen_id: str, *done: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        row = client.get(f"/history/{gen_id}").json()
        if row["status"] in done or time.monotonic() > deadline:
            return row
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- route parity
def test_every_upstream_route_exists_and_never_answers_a_missing_route(app: App) -> None:
    routes = app.app.router.routes  # type: ignore[attr-defined]
    missing, bad = [], []
    for method, template in ROUTES + MOUNTS:
        path = concrete(template, {"model_name": "qwen-tts-0.6B", "engine": "qwen"})
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        if not any(route.matches(scope)[0] == Match.FULL for route in routes):
            missing.append(f"{method} {template}")
            continue
        body = {} if method in ("POST", "PUT") else None
        r = app.request(method, path, json=body)
        answer = r.json() if "json" in r.headers.get("content-type", "") else None
        detail = answer.get("detail") if isinstance(answer, dict) else None
        if r.status_code == 405 or (r.status_code == 404 and detail == "Not Found"):
            bad.append(f"{method} {template} -> {r.status_code}")
    assert not missing, missing
    assert not bad, bad
    assert len(ROUTES) == 118


def test_not_available_routes_answer_their_documented_shape(app: App) -> None:
    for route in unavailable.UNAVAILABLE:
        assert (route.method, route.path) in ROUTES + MOUNTS, f"{route.path} is not upstream's"
        r = app.request(
            route.method, concrete(route.path), json={} if route.kind == "refuse" else None
        )
        if route.kind == "json":
            assert r.status_code == 200, (route.path, r.text)
        elif route.kind == "refuse":
            assert r.status_code == 400, (route.path, r.text)
            assert "not available on this server" in r.json()["detail"]
        else:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache"
            (event,) = sse_events(r.text)
            assert event["status"] == "error" and "not available" in event["error"]
    readiness = shape(app.get("/capture/readiness").json(), "CaptureReadinessResponse")
    shape(readiness["stt"], "ModelReadiness")
    assert readiness["stt"]["ready"] is False and readiness["reason"]
    assert app.get("/capture/readiness").json() == readiness  # stable: nothing changes while polled
    for gpu in ("cuda", "rocm"):
        status = app.get(f"/backend/{gpu}-status").json()
        shape(status, "CudaStatus")
        assert status["available"] is False and status["applicable"] is False
    shape(app.get("/settings/captures").json(), "CaptureSettings")
    shape(app.get("/mcp/bindings").json(), "MCPClientBindingListResponse")
    shape(app.get("/effects/available").json(), "AvailableEffectsResponse")
    assert app.get("/profiles/presets/kokoro").json() == {"engine": "kokoro", "voices": []}


# ---------------------------------------------------------------------------------------------- main flows
def test_startup_queries(app: App) -> None:
    shape(app.get("/health").json(), "HealthResponse")
    assert app.get("/profiles").json() == []
    shape(app.get("/history").json(), "HistoryListResponse")
    shape(app.get("/settings/generation").json(), "GenerationSettings")
    shape(app.get("/tasks/active").json(), "ActiveTasksResponse")
    models = shape(app.get("/models/status").json(), "ModelStatusListResponse")["models"]
    shapes(models, "ModelStatus")
    names = [m["model_name"] for m in models]
    assert {"qwen-tts-1.7B", "qwen-tts-0.6B", "whisper-base"} <= set(names)
    assert [m["model_name"] for m in models if m["active"]] == ["tts-fake", "stt-fake"]
    channels = shapes(app.get("/channels").json(), "AudioChannel")
    assert [(c["name"], c["is_default"]) for c in channels] == [("Default", True)]
    assert app.get("/stories").json() == []  # the stories page opens empty
    fs = shape(app.get("/health/filesystem").json(), "FilesystemHealthResponse")
    shapes(fs["directories"], "DirectoryCheck")
    assert fs["healthy"] is True and not any(d["path"].startswith("/") for d in fs["directories"])
    assert app.get("/models/cache-dir").json() == {"path": "huggingface/hub"}


def test_profile_form_and_samples(app: App) -> None:
    """What the app's profile form sends (every optional field of its VoiceProfileCreate) and reads back."""
    form = {
        "name": "Form Voice",
        "description": "from the form",
        "language": "en",
        "voice_type": "cloned",
        "default_engine": "qwen",
        "personality": "",
    }
    profile = shape(app.post("/profiles", json=form).json(), "VoiceProfileResponse")
    assert (profile["sample_count"], profile["generation_count"]) == (0, 0)
    updated = app.put(f"/profiles/{profile['id']}", json={**form, "name": "Renamed"})
    assert shape(updated.json(), "VoiceProfileResponse")["name"] == "Renamed"
    r = app.post(
        f"/profiles/{profile['id']}/samples",
        files={"file": ("rec.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "the words I read"},
    )
    sample = shape(r.json(), "ProfileSampleResponse")
    listed = shapes(app.get(f"/profiles/{profile['id']}/samples").json(), "ProfileSampleResponse")
    assert [s["id"] for s in listed] == [sample["id"]]
    assert app.get(f"/samples/{sample['id']}").content.startswith(b"RIFF")
    edited = app.put(f"/profiles/samples/{sample['id']}", json={"reference_text": "new words"})
    assert shape(edited.json(), "ProfileSampleResponse")["reference_text"] == "new words"
    assert app.get(f"/profiles/{profile['id']}").json()["sample_count"] == 1
    assert app.delete(f"/profiles/samples/{sample['id']}").json()["message"]


def test_generate_with_status_stream(app: App) -> None:
    pid = profile_with_sample(app)
    r = app.post(
        "/generate",
        json={"profile_id": pid, "text": "Hello there.", "language": "en", "engine": "qwen"},
    )
    generation = shape(r.json(), "GenerationResponse")
    with app.stream("GET", f"/generate/{generation['id']}/status") as stream:
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        events = sse_events("\n".join(stream.iter_lines()))
    shapes(events, "GenerationStatusEvent")
    assert events[-1]["status"] == "completed" and events[-1]["duration"] > 0
    history = shape(app.get(f"/history/{generation['id']}").json(), "HistoryResponse")
    assert history["profile_name"] == "Narrator"
    audio = app.get(f"/audio/{generation['id']}")
    assert audio.status_code == 200 and audio.content.startswith(b"RIFF")
    part = app.get(f"/audio/{generation['id']}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == audio.content[:100]  # the player seeks


def test_unknown_generation_status_is_one_not_found_event(app: App) -> None:
    r = app.get("/generate/00000000-0000-0000-0000-000000000000/status")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
    assert sse_events(r.text) == [
        {"id": "00000000-0000-0000-0000-000000000000", "status": "not_found"}
    ]


def test_cancel_marks_failed_with_voicebox_error_and_retry_reruns_the_same_row(app: App) -> None:
    pid = profile_with_sample(app)
    app.tts.gate.clear()
    gen = app.post("/generate", json={"profile_id": pid, "text": "One. Two. Three."}).json()
    assert app.tts.started.wait(10)
    queued = app.post("/generate", json={"profile_id": pid, "text": "Queued behind."}).json()
    tasks = shape(app.get("/tasks/active").json(), "ActiveTasksResponse")
    assert [t["task_id"] for t in shapes(tasks["generations"], "ActiveGenerationTask")] == [
        gen["id"],
        queued["id"],
    ]
    r = app.post(f"/generate/{queued['id']}/cancel")  # still queued: marked at once
    assert r.status_code == 200 and shape(r.json(), "Message")["message"] == "Generation cancelled"
    row = app.get(f"/history/{queued['id']}").json()
    assert (row["status"], row["error"]) == ("failed", "Generation cancelled")
    app.tts.gate.set()
    assert wait_status(app, gen["id"], "completed")["status"] == "completed"
    events = sse_events(app.get(f"/generate/{queued['id']}/status").text)
    assert events == [
        {**events[0], "status": "failed", "error": "Generation cancelled"}
    ]  # the app ends its stream and shows the toast
    assert app.get(f"/audio/{queued['id']}").status_code == 404  # failed rows are not playable

    before = app.get("/history").json()["total"]
    r = app.post(f"/generate/{queued['id']}/retry")
    retried = shape(r.json(), "GenerationResponse")
    assert retried["id"] == queued["id"] and retried["status"] == "generating"
    done = wait_status(app, queued["id"], "completed", "failed")
    assert (done["status"], done["error"]) == ("completed", None)
    assert app.get("/history").json()["total"] == before  # the same row, not a second one
    assert app.get(f"/audio/{queued['id']}").content.startswith(b"RIFF")


def test_retry_never_overlaps_a_cancelled_run_still_in_the_queue(app: App) -> None:
    pid = profile_with_sample(app)
    app.tts.gate.clear()
    first = app.post("/generate", json={"profile_id": pid, "text": "Hold the queue."}).json()
    assert app.tts.started.wait(10)
    queued = app.post("/generate", json={"profile_id": pid, "text": "Cancel me."}).json()
    app.post(f"/generate/{queued['id']}/cancel")
    app.services.generation.retry_queue_wait = 0.2
    r = app.post(f"/generate/{queued['id']}/retry")  # its cancelled run has not left the queue
    assert r.status_code == 409 and "has not left" in r.json()["detail"]
    assert app.get(f"/history/{queued['id']}").json()["status"] == "failed"  # nothing written
    app.tts.gate.set()
    assert wait_status(app, first["id"], "completed")["status"] == "completed"
    app.services.generation.retry_queue_wait = 10
    assert app.post(f"/generate/{queued['id']}/retry").status_code == 200
    done = wait_status(app, queued["id"], "completed", "failed")
    assert (done["status"], done["error"]) == ("completed", None)


def test_cancel_while_running_stops_at_the_next_chunk(app: App) -> None:
    pid = profile_with_sample(app)
    app.tts.gate.clear()
    text = "First sentence here. Second sentence here. Third sentence here. " * 3
    gen = app.post(
        "/generate", json={"profile_id": pid, "text": text, "max_chunk_chars": 100}
    ).json()
    assert app.tts.started.wait(10)
    import threading

    reply: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: reply.update(r=app.post(f"/generate/{gen['id']}/cancel"))
    )
    thread.start()
    deadline = time.monotonic() + 20
    while gen["id"] not in app.services.generation._cancel and time.monotonic() < deadline:
        time.sleep(0.01)  # the flag is set: the next chunk boundary stops it
    app.tts.gate.set()
    thread.join(30)
    assert reply["r"].json()["message"] == "Generation cancelled"
    row = app.get(f"/history/{gen['id']}").json()
    assert (row["status"], row["error"], row["audio_path"]) == (
        "failed",
        "Generation cancelled",
        None,
    )


def test_history_actions_and_clear_failed(app: App) -> None:
    pid = profile_with_sample(app)
    good = app.post("/generate?wait=true", json={"profile_id": pid, "text": "Keep me."}).json()
    app.tts.fail_next = True
    bad = app.post("/generate?wait=true", json={"profile_id": pid, "text": "Break me."}).json()
    assert bad["status"] == "failed" and "failed once" in bad["error"]
    assert app.post(f"/history/{good['id']}/favorite").json() == {"is_favorited": True}
    r = app.delete("/history/failed")
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert app.get(f"/history/{bad['id']}").status_code == 404
    assert app.delete("/history/failed").json() == {"deleted": 0}
    assert app.get(f"/history/{good['id']}").json()["is_favorited"] is True
    assert app.delete(f"/history/{good['id']}").json()["message"]


def test_generation_settings_persist_and_are_the_defaults_of_generate(app: App) -> None:
    pid = profile_with_sample(app)
    r = app.put(
        "/settings/generation", json={"max_chunk_chars": 100, "autoplay_on_generate": False}
    )
    assert shape(r.json(), "GenerationSettings") == {
        "max_chunk_chars": 100,
        "crossfade_ms": 50,
        "normalize_audio": True,
        "autoplay_on_generate": False,
    }
    with app.services.db.read() as session:  # stored in the database, not in memory
        assert session.get(GenerationSettingsRow, 1).max_chunk_chars == 100
    text = "A sentence that is long enough to matter here. " * 6
    stats = app.services.engines.stats  # type: ignore[attr-defined]
    before = stats.chunks
    app.post("/generate?wait=true", json={"profile_id": pid, "text": text})
    small = stats.chunks - before
    before = stats.chunks
    app.post("/generate?wait=true", json={"profile_id": pid, "text": text, "max_chunk_chars": 2000})
    assert small >= 3 and stats.chunks - before == 1  # the setting was the default; a field wins
    bad = app.put("/settings/generation", json={"max_chunk_chars": 5})
    assert bad.status_code == 422 and "max_chunk_chars" in bad.text
    assert app.put("/settings/generation", json={"colour": "red"}).status_code == 422
    assert app.get("/settings/generation").json()["max_chunk_chars"] == 100


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"engine": "kokoro"}, "engine"),
        ({"effects_chain": [{"type": "warp", "enabled": True, "params": {}}]}, "effects_chain"),
        ({"personality": True}, "personality"),
    ],
)
def test_options_this_server_cannot_honour_are_a_400_naming_the_field(
    app: App, extra: dict[str, Any], field: str
) -> None:
    pid = profile_with_sample(app)
    r = app.post("/generate", json={"profile_id": pid, "text": "hi", **extra})
    assert r.status_code == 400 and r.json()["detail"].startswith(field)
    assert app.get("/history").json()["total"] == 0  # nothing written


def test_honoured_options_are_accepted(app: App) -> None:
    pid = profile_with_sample(app)
    r = app.post(
        "/generate?wait=true",
        json={
            "profile_id": pid,
            "text": "hi",
            "engine": "qwen",
            "effects_chain": [],
            "personality": False,
        },
    )
    assert r.json()["status"] == "completed"
    r = app.put(f"/profiles/{pid}/effects", json={"effects_chain": None})
    assert shape(r.json(), "VoiceProfileResponse")["id"] == pid
    r = app.put(
        f"/profiles/{pid}/effects", json={"effects_chain": [{"type": "gain", "params": {}}]}
    )
    assert r.json()["effects_chain"][0]["params"] == {"gain_db": 0.0}  # stored, defaults filled
    r = app.put(f"/profiles/{pid}/effects", json={"effects_chain": [{"type": "warp"}]})
    assert r.status_code == 400 and "effects_chain" in r.json()["detail"]


def test_channels_stored_in_the_database(app: App) -> None:
    pid = profile_with_sample(app)
    default = app.get("/channels").json()[0]
    made = shape(
        app.post("/channels", json={"name": "Stream", "device_ids": ["dev-a", "dev-b"]}).json(),
        "AudioChannel",
    )
    assert made["device_ids"] == ["dev-a", "dev-b"] and made["is_default"] is False
    assert app.post("/channels", json={"name": "stream"}).status_code == 409
    assert app.put(f"/channels/{made['id']}", json={"name": "Live"}).json()["name"] == "Live"
    assert app.put(f"/channels/{default['id']}", json={"name": "X"}).status_code == 409
    r = app.put(f"/profiles/{pid}/channels", json={"channel_ids": [made["id"], default["id"]]})
    assert r.json() == {"message": "Profile channels updated successfully"}
    assert sorted(app.get(f"/profiles/{pid}/channels").json()["channel_ids"]) == sorted(
        [made["id"], default["id"]]
    )
    assert app.get(f"/channels/{made['id']}/voices").json() == {"profile_ids": [pid]}
    assert app.put(f"/channels/{made['id']}/voices", json={"profile_ids": []}).status_code == 200
    assert app.get(f"/profiles/{pid}/channels").json() == {"channel_ids": [default["id"]]}
    assert app.delete(f"/channels/{made['id']}").json()["message"]
    assert app.get(f"/channels/{made['id']}").status_code == 404
    assert app.delete(f"/channels/{default['id']}").status_code == 409
    app.delete(f"/profiles/{pid}")
    with app.services.db.read() as session:  # a deleted profile leaves no mapping behind
        assert session.query(ProfileChannel).count() == 0


def test_channel_with_unknown_profile_or_channel_writes_nothing(app: App) -> None:
    pid = profile_with_sample(app)
    channel = app.post("/channels", json={"name": "Desk"}).json()
    r = app.put(f"/channels/{channel['id']}/voices", json={"profile_ids": [pid, "nobody"]})
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    r = app.put(f"/profiles/{pid}/channels", json={"channel_ids": [channel["id"], "nowhere"]})
    assert r.status_code == 404 and "nowhere" in r.json()["detail"]
    r = app.get("/profiles/nobody/channels")
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    with app.services.db.read() as session:
        assert session.query(ProfileChannel).filter_by(channel_id=channel["id"]).count() == 0
        assert session.query(AudioChannel).count() == 2


# ---------------------------------------------------------------------------------------------- models page
def test_models_download_progress_and_delete(app: App) -> None:
    status = {m["model_name"]: m for m in app.get("/models/status").json()["models"]}
    assert status["whisper-small"]["downloaded"] is False
    app.downloader.hold.clear()
    r = app.post("/models/download", json={"model_name": "whisper-small"})
    assert r.json() == {"message": "Model whisper-small download started"}
    tasks = app.get("/tasks/active").json()["downloads"]
    assert [shape(t, "ActiveDownloadTask")["status"] for t in tasks] == ["downloading"]
    assert {m["model_name"]: m for m in app.get("/models/status").json()["models"]}[
        "whisper-small"
    ]["downloading"] is True
    app.downloader.hold.set()
    with app.stream("GET", "/models/progress/whisper-small") as stream:
        assert stream.headers["x-accel-buffering"] == "no"
        events = sse_events("\n".join(stream.iter_lines()))
    shapes(events, "ModelProgress")
    assert events[-1]["status"] == "complete" and events[-1]["progress"] == 100
    model = {m["model_name"]: m for m in app.get("/models/status").json()["models"]}[
        "whisper-small"
    ]
    assert model["downloaded"] is True and model["size_mb"] is not None
    assert app.get("/tasks/active").json()["downloads"] == []
    again = app.post("/models/download", json={"model_name": "whisper-small"}).json()
    assert "already downloaded" in again["message"]
    assert app.post("/models/whisper-small/unload").json()["message"].endswith("is not loaded")
    r = app.delete("/models/whisper-small")
    assert r.json() == {"message": "Model whisper-small deleted successfully"}
    assert app.delete("/models/whisper-small").status_code == 404


def test_download_cancel_removes_what_it_wrote(app: App) -> None:
    hub = app.services.settings.hf_home / "hub"
    app.downloader.hold.clear()
    app.post("/models/download", json={"model_name": "whisper-medium"})
    r = app.post("/models/download/cancel", json={"model_name": "whisper-medium"})
    assert r.json() == {"message": "Download task for whisper-medium cancelled"}
    deadline = time.monotonic() + 10
    while (hub / "models--openai--whisper-medium").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (hub / "models--openai--whisper-medium").exists()
    event = app.get("/models/progress/whisper-medium").text
    assert sse_events(event)[-1]["status"] == "error"
    r = app.post("/models/download/cancel", json={"model_name": "whisper-medium"})
    assert r.json() == {"message": "Download task for whisper-medium cancelled"}  # dismissed
    assert app.post("/models/download/cancel", json={"model_name": "whisper-medium"}).json() == {
        "message": "No active task found for whisper-medium"
    }


def test_failed_download_is_reported_then_cleared(app: App) -> None:
    app.downloader.fail = "connection reset"
    app.post("/models/download", json={"model_name": "whisper-turbo"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tasks = app.get("/tasks/active").json()["downloads"]
        if tasks and tasks[0]["status"] == "error":
            break
        time.sleep(0.02)
    assert "connection reset" in tasks[0]["error"]
    assert app.post("/tasks/clear").json()["message"] == "All task state cleared"
    assert app.get("/tasks/active").json()["downloads"] == []
    assert not files_under(
        app.services.settings.hf_home / "hub" / "models--openai--whisper-large-v3-turbo"
    )


def test_model_bad_input_is_a_4xx_that_writes_nothing(app: App, monkeypatch) -> None:
    hub = app.services.settings.hf_home / "hub"
    before = files_under(hub)
    for method, path, body in [
        ("POST", "/models/download", {"model_name": "gpt-5"}),
        ("POST", "/models/download/cancel", {"model_name": "gpt-5"}),
        ("DELETE", "/models/gpt-5", None),
        ("POST", "/models/gpt-5/unload", None),
        ("GET", "/models/progress/gpt-5", None),
    ]:
        r = app.request(method, path, json=body)
        assert r.status_code == 400 and "unknown model 'gpt-5'" in r.json()["detail"], path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = app.post("/models/download", json={"model_name": "whisper-small"})
    assert r.status_code == 409 and "offline" in r.json()["detail"]
    assert app.downloader.calls == [] and files_under(hub) == before
    r = app.delete("/models/stt-fake")
    assert r.status_code == 409
    assert app.post("/cache/clear").json()["message"] == "Voice prompt cache cleared successfully"


def test_new_state_changing_routes_are_admin_routes_in_both_gates() -> None:
    """The app's model and cache management changes shared state: admin in the one table both gates read."""
    from backend.app import api_admin_table

    table = api_admin_table()
    for method, path in [
        ("POST", "/models/download"),
        ("POST", "/models/download/cancel"),
        ("POST", "/models/whisper-base/unload"),
        ("DELETE", "/models/whisper-base"),
        ("POST", "/tasks/clear"),
        ("POST", "/cache/clear"),
    ]:
        assert (method, path) in table, path
    assert ("GET", "/models/status") not in table
    assert ("GET", "/tasks/active") not in table


def test_migration_0003_upgrade_downgrade_on_sqlite(tmp_path: Path) -> None:
    """Batch-mode DDL on SQLite: profiles present before the upgrade land on the seeded Default channel."""
    import sqlite3

    from migrations.runner import downgrade_file, upgrade_file

    db = tmp_path / "v.db"
    upgrade_file(db, "0002_generation_request_id")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "insert into profiles (id, name, language, created_at, updated_at) "
            "values ('p1', 'Old', 'en', '2026-01-01', '2026-01-01')"
        )
    upgrade_file(db)
    with sqlite3.connect(db) as conn:
        channels = conn.execute("select id, name, is_default from audio_channels").fetchall()
        mapped = conn.execute(
            "select profile_id, channel_id from profile_channel_mappings"
        ).fetchall()
        assert conn.execute("select count(*) from generation_settings").fetchone() == (0,)
    assert [(name, flag) for _, name, flag in channels] == [("Default", 1)]
    assert mapped == [("p1", channels[0][0])]
    downgrade_file(db, "0002_generation_request_id")
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        assert conn.execute("select name from profiles").fetchall() == [("Old",)]
    assert not tables & {"audio_channels", "generation_settings", "profile_channel_mappings"}
    upgrade_file(db)  # and up again


def test_docs_route_table_matches_the_code() -> None:
    """docs/api.md's parity table says "implemented" or "not available here" as the code does."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    rows = re.findall(r"^\| (GET|POST|PUT|DELETE) \| `([^`]+)`[^|]* \| ([^|]+) \|$", text, re.M)
    documented = {(m, p): here for m, p, here in rows}
    not_here = {(r.method, r.path) for r in unavailable.UNAVAILABLE}
    for route in ROUTES + MOUNTS:
        assert route in documented, f"{route} missing from docs/api.md"
        expected = "not available here" if route in not_here else "implemented"
        assert documented[route].startswith(expected), (route, documented[route])


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_migration_0003_is_portable_ddl(dialect: str) -> None:
    """The revision renders for other databases too (Alembic offline mode): no SQLite-only SQL."""
    import importlib.util
    import io

    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    path = Path(__file__).resolve().parents[1] / "migrations/versions/0003_settings_and_channels.py"
    spec = importlib.util.spec_from_file_location("rev_0003", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    buf = io.StringIO()
    ctx = MigrationContext.configure(
        dialect_name=dialect, opts={"as_sql": True, "output_buffer": buf}
    )
    with Operations.context(ctx):
        module.upgrade()
        module.downgrade()
    sql = buf.getvalue()
    for table in ("generation_settings", "audio_channels", "profile_channel_mappings"):
        assert f"CREATE TABLE {table}" in sql and f"DROP TABLE {table}" in sql
    assert "INSERT INTO profile_channel_mappings" in sql
    assert "?" not in sql and "%(" not in sql  # every value rendered: runnable as a script
