"""Bundles over HTTP: Voicebox v1.0 round trip, v1.1, hostile zips, bulk library moves between volumes."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.app import create_app
from backend.db.models import Generation, Profile, ProfileSample
from backend.services.container import Services
from tests.support.api import (
    PNG_1PX,
    add_generation,
    api_settings_for,
    audio_bytes,
    files_under,
    fresh_volume,
    voicebox_v10_bundle,
)

#: API tests run on the volume's SQLite and on PostgreSQL
pytestmark = pytest.mark.both_backends

SAMPLE_A = "0b7a3c1e-6f1d-4c55-9a43-2f4d8f1e9a01.wav"
SAMPLE_B = "5d2c8a8e-1b4f-4d7e-8e0b-0c3c2b1a9f77.wav"


def _import(client: TestClient, data: bytes, path: str = "/profiles/import"):
    return client.post(path, files={"file": ("bundle.zip", data, "application/zip")})


def _assert_nothing_written(services: Services) -> None:
    data = services.settings.data_dir
    assert files_under(data / "profiles") == []
    assert files_under(data / "generations") == []
    assert files_under(services.settings.tmp_dir) == []
    with services.db.read() as session:
        for model in (Profile, ProfileSample, Generation):
            assert session.scalar(select(func.count()).select_from(model)) == 0


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _manifest(version: str = "1.0") -> bytes:
    return json.dumps(
        {
            "version": version,
            "profile": {"name": "Evil", "description": None, "language": "en"},
            "has_avatar": False,
        },
        indent=2,
    ).encode()


def _samples_json(name: str = SAMPLE_A) -> bytes:
    return json.dumps({name: "hello"}).encode()


# ---------------------------------------------------------------------------------------------- v1.0
def test_voicebox_v10_round_trip_is_byte_exact(api_client: TestClient) -> None:
    a, b = audio_bytes(3.0, seed=1), audio_bytes(4.0, seed=2)
    bundle = voicebox_v10_bundle(
        samples=[(SAMPLE_A, a, "First line."), (SAMPLE_B, b, "Second line.")],
        avatar=(".png", PNG_1PX),
    )
    r = _import(api_client, bundle)
    assert r.status_code == 200, r.text
    profile = r.json()
    assert profile["name"] == "Narrator" and profile["sample_count"] == 2
    exported = api_client.get(f"/profiles/{profile['id']}/export", params={"format": "1.0"})
    assert exported.status_code == 200
    assert "profile-Narrator.voicebox.zip" in exported.headers["content-disposition"]
    with (
        zipfile.ZipFile(io.BytesIO(bundle)) as src,
        zipfile.ZipFile(io.BytesIO(exported.content)) as out,
    ):
        assert out.namelist() == src.namelist()
        assert out.read("manifest.json") == src.read("manifest.json")
        assert out.read("samples.json") == src.read("samples.json")
        for name in src.namelist():
            assert (
                hashlib.sha256(out.read(name)).hexdigest()
                == hashlib.sha256(src.read(name)).hexdigest()
            ), name


def test_voicebox_import_names_duplicates_like_voicebox(api_client: TestClient) -> None:
    bundle = voicebox_v10_bundle()
    names = [_import(api_client, bundle).json()["name"] for _ in range(3)]
    assert names == ["Narrator", "Narrator (1)", "Narrator (2)"]


def test_v11_export_carries_every_field_and_imports_back(
    api_client: TestClient, api_services: Services
) -> None:
    pid = _import(api_client, voicebox_v10_bundle(avatar=(".png", PNG_1PX))).json()["id"]
    api_client.put(f"/profiles/{pid}", json={"name": "Full", "description": "d", "language": "ja"})
    data = api_client.get(f"/profiles/{pid}/export").content
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["version"] == "1.1" and manifest["kind"] == "profile"
    assert manifest["profile"]["id"] == pid and manifest["profile"]["language"] == "ja"
    assert manifest["samples"][0]["sha256"] and manifest["samples"][0]["duration"]
    assert manifest["voice_prompt"]["tts_model"] == "fake"
    assert manifest["avatar"]["sha256"] == hashlib.sha256(PNG_1PX).hexdigest()
    api_client.delete(f"/profiles/{pid}")
    r = _import(api_client, data)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == pid and r.json()["name"] == "Full" and r.json()["language"] == "ja"
    assert r.json()["avatar_path"]
    samples = api_client.get(f"/profiles/{pid}/samples").json()
    assert [s["sha256"] for s in samples] == [m["sha256"] for m in manifest["samples"]]


def test_export_format_must_be_known(api_client: TestClient) -> None:
    pid = api_client.post("/profiles", json={"name": "x"}).json()["id"]
    r = api_client.get(f"/profiles/{pid}/export", params={"format": "2.0"})
    assert r.status_code == 422 and "2.0" in r.text  # an enum in the spec, so FastAPI refuses it


# ---------------------------------------------------------------------------------------------- hostile
def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"samples/{SAMPLE_A}")
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def _zeros_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", _manifest())
        zf.writestr("samples.json", _samples_json())
        with zf.open(f"samples/{SAMPLE_A}", "w") as entry:  # streamed zeros, ~1000:1
            chunk = b"\x00" * (1024 * 1024)
            for _ in range(40):
                entry.write(chunk)
    return buf.getvalue()


def _many_entries() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", _manifest())
        zf.writestr("samples.json", b"{}")
        for i in range(20_000):
            zf.writestr(f"junk/{i}", b"")
    return buf.getvalue()


def _duplicate_names() -> bytes:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _zip(
            [
                ("manifest.json", _manifest()),
                ("samples.json", _samples_json()),
                (f"samples/{SAMPLE_A}", audio_bytes(3.0)),
                (f"samples/{SAMPLE_A}", audio_bytes(3.0, seed=9)),
            ]
        )


HOSTILE: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "zip-slip": (
        lambda: _zip(
            [
                ("manifest.json", _manifest()),
                ("samples.json", _samples_json("../x.wav")),
                ("samples/../x.wav", audio_bytes(3.0)),
            ]
        ),
        400,
        "unsafe entry name",
    ),
    "absolute-name": (
        lambda: _zip([("manifest.json", _manifest()), ("/etc/cron.d/x", b"x")]),
        400,
        "unsafe entry name",
    ),
    "backslash-name": (
        lambda: _zip([("manifest.json", _manifest()), ("samples\\..\\..\\x.wav", b"x")]),
        400,
        "unsafe entry name",
    ),
    "symlink": (
        lambda: _zip(
            [
                ("manifest.json", _manifest()),
                ("samples.json", _samples_json()),
                (_symlink_entry(), b"/etc/passwd"),
            ]
        ),
        400,
        "symbolic link",
    ),
    "duplicate-names": (_duplicate_names, 400, "twice"),
    "zip-bomb": (_zeros_bomb, 413, "zip bomb"),
    "too-many-entries": (_many_entries, 400, "20002 entries"),
    "truncated": (lambda: voicebox_v10_bundle()[:-200], 400, "zip"),
    "not-a-zip": (lambda: b"PK\x03\x04 definitely not a zip" * 10, 400, "zip"),
    "non-audio-sample": (
        lambda: voicebox_v10_bundle(samples=[(SAMPLE_A, b"RIFF not really a wav" * 30, "x")]),
        400,
        SAMPLE_A,
    ),
    "too-short-sample": (
        lambda: voicebox_v10_bundle(
            samples=[(SAMPLE_A, audio_bytes(3.0), "ok"), (SAMPLE_B, audio_bytes(1.0), "short")]
        ),
        400,
        "at least 2",
    ),
    "unknown-major-version": (
        lambda: _zip([("manifest.json", _manifest("2.0")), ("samples.json", b"{}")]),
        400,
        "version 2.0",
    ),
    "missing-manifest": (lambda: _zip([("samples.json", b"{}")]), 400, "manifest.json"),
    "manifest-not-json": (
        lambda: _zip([("manifest.json", b"{nope"), ("samples.json", b"{}")]),
        400,
        "not valid JSON",
    ),
    "sample-listed-but-absent": (
        lambda: _zip([("manifest.json", _manifest()), ("samples.json", _samples_json())]),
        400,
        "has no samples/",
    ),
    "bad-language": (
        lambda: _zip(
            [
                (
                    "manifest.json",
                    json.dumps(
                        {"version": "1.0", "profile": {"name": "x", "language": "xx"}}
                    ).encode(),
                ),
                ("samples.json", b"{}"),
            ]
        ),
        400,
        "language",
    ),
    "avatar-not-an-image": (
        lambda: voicebox_v10_bundle(avatar=(".png", b"<svg>not png</svg>")),
        400,
        "avatar",
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_bundles_are_refused_and_leave_nothing(
    api_client: TestClient, api_services: Services, kind: str
) -> None:
    build, status, needle = HOSTILE[kind]
    r = _import(api_client, build())
    assert r.status_code == status, (kind, r.text)
    assert needle in r.json()["detail"], (kind, r.json()["detail"])
    _assert_nothing_written(api_services)


def test_failure_after_files_were_moved_removes_them(
    api_client: TestClient, api_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure inside the write unit (after files moved into place) leaves no files and no rows."""
    from backend.db.errors import WriteConflictError
    from backend.services import bundles

    original = bundles.BundleService._add_profile

    def failing(self, session, stage, plan, *, keep_id):  # type: ignore[no-untyped-def]
        original(self, session, stage, plan, keep_id=keep_id)
        assert stage.moved, "files should be in place by now"
        raise WriteConflictError("simulated fence failure")

    monkeypatch.setattr(bundles.BundleService, "_add_profile", failing)
    r = _import(api_client, voicebox_v10_bundle(avatar=(".png", PNG_1PX)))
    assert r.status_code == 503 and r.headers["retry-after"]
    _assert_nothing_written(api_services)


def test_import_form_errors(api_client: TestClient) -> None:
    r = api_client.post("/profiles/import", files={"other": ("x", b"1", "a/b")})
    assert r.status_code == 400 and "volume_name" in r.json()["detail"]
    r = api_client.post("/profiles/import", data={"volume_name": "../../etc/passwd"})
    assert r.status_code == 400  # not multipart
    r = api_client.post(
        "/profiles/import", data={"volume_name": "../x"}, files={"other": ("x", b"1", "a/b")}
    )
    assert r.status_code == 400 and "plain file name" in r.json()["detail"]
    r = api_client.post(
        "/profiles/import", data={"volume_name": "absent.zip"}, files={"other": ("x", b"", "a/b")}
    )
    assert r.status_code == 404 and "voicebox/imports/" in r.json()["detail"]
    r = _import(
        api_client,
        _zip(
            [
                (
                    "manifest.json",
                    json.dumps({"version": "1.1", "kind": "library", "profiles": []}).encode(),
                )
            ]
        ),
    )
    assert r.status_code == 400 and "/library/import" in r.json()["detail"]


def test_bundle_upload_size_limit(tmp_path: Path, volume_template: Path) -> None:
    volume = fresh_volume(volume_template, tmp_path / "v")
    settings = api_settings_for(volume, tmp_path / "l", VOICEBOX_MAX_BUNDLE_MB="0.5")
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services)) as client:
        big = voicebox_v10_bundle(samples=[(SAMPLE_A, audio_bytes(20.0, sr=48000), "x")])
        assert len(big) > 512 * 1024
        r = _import(client, big)
        assert r.status_code == 413
        _assert_nothing_written(services)
    services.close()


# ---------------------------------------------------------------------------------------------- library
@pytest.fixture
def second_volume(tmp_path: Path, volume_template: Path) -> Iterator[tuple[TestClient, Services]]:
    volume = fresh_volume(volume_template, tmp_path / "other-volume")
    settings = api_settings_for(volume, tmp_path / "other-local", worker_id="other")
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services)) as client:
        yield client, services
    services.close()


def _library_snapshot(client: TestClient) -> dict:
    profiles = sorted(client.get("/profiles").json(), key=lambda p: p["id"])
    out = {
        "profiles": [
            (p["id"], p["name"], p["description"], p["language"], bool(p["avatar_path"]))
            for p in profiles
        ],
        "samples": {
            p["id"]: [
                (s["id"], s["sha256"], s["reference_text"])
                for s in client.get(f"/profiles/{p['id']}/samples").json()
            ]
            for p in profiles
        },
        "history": sorted(
            (h["id"], h["profile_id"], h["profile_name"], h["text"], h["status"])
            for h in client.get("/history", params={"limit": 100}).json()["items"]
        ),
    }
    return out


def _build_library(client: TestClient, services: Services) -> None:
    a = _import(client, voicebox_v10_bundle(name="Alice", avatar=(".png", PNG_1PX))).json()["id"]
    b = client.post("/profiles", json={"name": "Bob", "description": "deep", "language": "de"})
    b_id = b.json()["id"]
    for i in range(2):
        client.post(
            f"/profiles/{b_id}/samples",
            files={"file": ("x.flac", audio_bytes(2.5, fmt="FLAC", seed=i), "audio/flac")},
            data={"reference_text": f"bob {i}"},
        )
    add_generation(services, profile_id=a, profile_name="Alice", text="alice speaks")
    add_generation(services, profile_id=None, profile_name="Deleted Dora", text="orphan take")


def test_bulk_export_import_moves_the_library_idempotently(
    api_client: TestClient, api_services: Services, second_volume
) -> None:
    other, other_services = second_volume
    _build_library(api_client, api_services)
    exported = api_client.get("/library/export", params={"include_history": "true"})
    assert exported.status_code == 200
    r = _import(other, exported.content, "/library/import")
    assert r.status_code == 200, r.text
    report = r.json()
    assert sorted(report["profiles_created"]) == ["Alice", "Bob"]
    assert report["samples_created"] == 3 and report["generations_created"] == 2
    assert _library_snapshot(other) == _library_snapshot(api_client)
    again = _import(other, exported.content, "/library/import").json()
    assert again["profiles_created"] == [] and again["samples_created"] == 0
    assert again["generations_created"] == 0 and again["generations_skipped"] == 2
    assert sorted(again["profiles_skipped"]) == ["Alice", "Bob"]
    assert "nothing new" in again["message"]
    assert _library_snapshot(other) == _library_snapshot(api_client)
    assert files_under(other_services.settings.tmp_dir) == []


def test_bulk_export_without_history(
    api_client: TestClient, api_services: Services, second_volume
) -> None:
    other, _ = second_volume
    _build_library(api_client, api_services)
    data = api_client.get("/library/export").content
    report = _import(other, data, "/library/import").json()
    assert report["generations_created"] == 0
    assert other.get("/history").json()["total"] == 0


def test_bulk_import_renames_on_name_clash(
    api_client: TestClient, api_services: Services, second_volume
) -> None:
    other, _ = second_volume
    _build_library(api_client, api_services)
    other.post("/profiles", json={"name": "Bob"})
    report = _import(other, api_client.get("/library/export").content, "/library/import").json()
    assert report["profiles_renamed"] == {"Bob": "Bob (1)"}


def test_library_via_the_volume(
    api_client: TestClient, api_services: Services, second_volume
) -> None:
    other, other_services = second_volume
    _build_library(api_client, api_services)
    r = api_client.post(
        "/library/export", json={"volume_name": "lib-1.zip", "include_history": True}
    )
    assert r.status_code == 200, r.text
    assert r.json()["profiles"] == 2 and r.json()["generations"] == 2
    assert str(api_services.settings.volume) not in r.text
    src = api_services.settings.exports_dir / "lib-1.zip"
    assert hashlib.sha256(src.read_bytes()).hexdigest() == r.json()["sha256"]
    r = api_client.post("/library/export", json={"volume_name": "lib-1.zip"})
    assert r.status_code == 409
    for bad in ("../lib.zip", "a/b.zip", "/abs.zip", ".hidden", ""):
        r = api_client.post("/library/export", json={"volume_name": bad})
        assert r.status_code in (400, 422), bad
    shutil.copy(src, other_services.settings.imports_dir / "lib-1.zip")
    r = other.post(
        "/library/import", data={"volume_name": "lib-1.zip"}, files={"none": ("", b"", "a/b")}
    )
    assert r.status_code == 200, r.text
    assert _library_snapshot(other) == _library_snapshot(api_client)
    # Profile and generation bundles can come from the volume as well.
    pid = api_client.get("/profiles").json()[0]["id"]
    (other_services.settings.imports_dir / "one.zip").write_bytes(
        api_client.get(f"/profiles/{pid}/export").content
    )
    r = other.post(
        "/profiles/import", data={"volume_name": "one.zip"}, files={"n": ("", b"", "a/b")}
    )
    assert r.status_code == 200, r.text
    link = other_services.settings.imports_dir / "link.zip"
    link.symlink_to(other_services.settings.imports_dir / "one.zip")
    r = other.post(
        "/profiles/import", data={"volume_name": "link.zip"}, files={"n": ("", b"", "a/b")}
    )
    assert r.status_code == 400 and "regular file" in r.json()["detail"]
