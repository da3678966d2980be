"""Profiles over HTTP: CRUD, validation, conflicts, delete semantics, avatars, health."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.services.container import Services
from tests.support.api import (
    PNG_1PX,
    add_generation,
    audio_bytes,
    files_under,
)

#: API tests run on the volume's SQLite and on PostgreSQL
pytestmark = pytest.mark.both_backends


def _create(client: TestClient, name: str = "Narrator", **extra: object) -> dict:
    r = client.post("/profiles", json={"name": name, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def _add_sample(client: TestClient, pid: str, text: str = "Hello there.") -> dict:
    r = client.post(
        f"/profiles/{pid}/samples",
        files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": text},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_root_and_health_are_cheap_and_truthful(api_client: TestClient) -> None:
    assert api_client.get("/").json()["version"]
    body = api_client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["worker_id"] == "test-worker"
    assert body["database_revision"]
    assert body["model_loaded"] is False


def test_profile_crud_round_trip(api_client: TestClient) -> None:
    p = _create(api_client, "Narrator", description="warm", language="de")
    assert p["voice_type"] == "cloned" and p["sample_count"] == 0
    assert api_client.get(f"/profiles/{p['id']}").json()["name"] == "Narrator"
    assert [x["id"] for x in api_client.get("/profiles").json()] == [p["id"]]
    r = api_client.put(
        f"/profiles/{p['id']}", json={"name": "Renamed", "description": None, "language": "fr"}
    )
    assert r.status_code == 200
    assert (r.json()["name"], r.json()["language"], r.json()["description"]) == (
        "Renamed",
        "fr",
        None,
    )
    assert r.json()["updated_at"] >= p["updated_at"]
    r = api_client.delete(f"/profiles/{p['id']}")
    assert r.status_code == 200 and r.json()["message"]
    assert api_client.get(f"/profiles/{p['id']}").status_code == 404


def test_profile_validation_errors(api_client: TestClient) -> None:
    cases = [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "ok", "description": "d" * 501},
        {"name": "ok", "language": "xx"},
        {"name": "ok", "voice_type": "preset"},
        {},
    ]
    for body in cases:
        r = api_client.post("/profiles", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"]
    assert api_client.post("/profiles", content=b"not json").status_code == 422
    assert api_client.get("/profiles").json() == []


def test_duplicate_names_conflict_with_a_clear_message(api_client: TestClient) -> None:
    a = _create(api_client, "Alice")
    b = _create(api_client, "Bob")
    r = api_client.post("/profiles", json={"name": "Alice"})
    assert r.status_code == 409 and "Alice" in r.json()["detail"]
    r = api_client.put(f"/profiles/{b['id']}", json={"name": "Alice"})
    assert r.status_code == 409 and "Alice" in r.json()["detail"]
    # Renaming a profile to its own name is not a conflict.
    assert api_client.put(f"/profiles/{a['id']}", json={"name": "Alice"}).status_code == 200


def test_unknown_ids_are_404_never_500(api_client: TestClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    for method, path in [
        ("GET", f"/profiles/{missing}"),
        ("DELETE", f"/profiles/{missing}"),
        ("GET", f"/profiles/{missing}/samples"),
        ("GET", f"/profiles/{missing}/export"),
        ("GET", f"/profiles/{missing}/avatar"),
        ("DELETE", f"/profiles/{missing}/avatar"),
        ("DELETE", f"/profiles/samples/{missing}"),
        ("GET", f"/samples/{missing}"),
    ]:
        r = api_client.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert missing in r.json()["detail"]
    r = api_client.put(f"/profiles/{missing}", json={"name": "x"})
    assert r.status_code == 404
    r = api_client.put(f"/profiles/samples/{missing}", json={"reference_text": "x"})
    assert r.status_code == 404
    r = api_client.post(
        f"/profiles/{missing}/samples",
        files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "hi"},
    )
    assert r.status_code == 404


def test_delete_profile_removes_files_and_keeps_history(
    api_client: TestClient, api_services: Services
) -> None:
    p = _create(api_client, "Gone Soon")
    _add_sample(api_client, p["id"])
    assert (
        api_client.post(
            f"/profiles/{p['id']}/avatar", files={"file": ("x.bin", PNG_1PX, "image/png")}
        ).status_code
        == 200
    )
    seen: list[tuple[str, int]] = []
    api_services.profiles.prompt_hooks.append(lambda pid, refs: seen.append((pid, len(refs))))
    gen_id = add_generation(api_services, profile_id=p["id"], profile_name=p["name"])
    assert api_client.get(f"/profiles/{p['id']}").json()["generation_count"] == 1

    r = api_client.delete(f"/profiles/{p['id']}")
    assert r.status_code == 200
    assert r.json()["samples_deleted"] == 1 and r.json()["generations_kept"] == 1
    assert seen == [(p["id"], 1)]
    assert not (api_services.settings.data_dir / "profiles" / p["id"]).exists()
    item = api_client.get(f"/history/{gen_id}").json()
    assert item["profile_id"] is None and item["profile_name"] == "Gone Soon"
    assert api_client.get(f"/audio/{gen_id}").status_code == 200


def test_delete_profile_refuses_while_generating(
    api_client: TestClient, api_services: Services
) -> None:
    p = _create(api_client, "Busy")
    add_generation(api_services, profile_id=p["id"], profile_name="Busy", status="generating")
    r = api_client.delete(f"/profiles/{p['id']}")
    assert r.status_code == 409 and "in progress" in r.json()["detail"]


def test_avatar_upload_get_delete(api_client: TestClient, api_services: Services) -> None:
    p = _create(api_client)
    r = api_client.post(
        f"/profiles/{p['id']}/avatar", files={"file": ("evil.exe", PNG_1PX, "text/plain")}
    )
    assert r.status_code == 200, r.text
    avatar_path = r.json()["avatar_path"]
    assert avatar_path.startswith(f"profiles/{p['id']}/avatar-") and avatar_path.endswith(".png")
    got = api_client.get(f"/profiles/{p['id']}/avatar")
    assert got.status_code == 200 and got.content == PNG_1PX
    assert got.headers["content-type"] == "image/png"
    # Replacing removes the old file.
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    r = api_client.post(f"/profiles/{p['id']}/avatar", files={"file": ("a.png", jpeg, "image/png")})
    assert r.json()["avatar_path"].endswith(".jpg")
    assert not api_services.blobs.exists(avatar_path)
    assert api_client.delete(f"/profiles/{p['id']}/avatar").status_code == 200
    assert api_client.get(f"/profiles/{p['id']}/avatar").status_code == 404
    assert api_client.delete(f"/profiles/{p['id']}/avatar").status_code == 404
    assert files_under(api_services.settings.data_dir / "profiles") == []


def test_avatar_rejects_non_images_and_big_files(
    api_client: TestClient, api_services: Services
) -> None:
    p = _create(api_client)
    r = api_client.post(
        f"/profiles/{p['id']}/avatar", files={"file": ("a.png", b"GIF89a....", "image/png")}
    )
    assert r.status_code == 400 and "PNG" in r.json()["detail"]
    big = PNG_1PX + b"\x00" * (5 * 1024 * 1024)
    r = api_client.post(f"/profiles/{p['id']}/avatar", files={"file": ("a.png", big, "image/png")})
    assert r.status_code == 413
    r = api_client.post(f"/profiles/{p['id']}/avatar", data={"x": "y"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
    r = api_client.post(f"/profiles/{p['id']}/avatar", files={"other": ("x", b"1", "a/b")})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]
    assert files_under(api_services.settings.data_dir / "profiles") == []
    assert files_under(api_services.settings.tmp_dir) == []
    assert api_client.get(f"/profiles/{p['id']}").json()["avatar_path"] is None


def test_database_busy_is_503_with_retry_after(
    api_client: TestClient, api_services: Services
) -> None:
    from backend.db.errors import LeaseTimeoutError

    def busy(*_a: object, **_k: object) -> None:
        raise LeaseTimeoutError("the database lease stayed busy; retry")

    api_services.profiles.create_profile = busy  # type: ignore[method-assign]
    r = api_client.post("/profiles", json={"name": "x"})
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "retry" in r.json()["detail"]


def test_schema_mismatch_is_503_with_its_message(
    api_client: TestClient, api_services: Services
) -> None:
    from backend.db.errors import SchemaMismatchError

    def newer(*_a: object, **_k: object) -> None:
        raise SchemaMismatchError("migrated by a newer image")

    api_services.profiles.list_profiles = newer  # type: ignore[method-assign]
    r = api_client.get("/profiles")
    assert r.status_code == 503 and "newer image" in r.json()["detail"]


def test_unexpected_errors_do_not_leak_paths(
    api_client: TestClient, api_services: Services
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError(f"exploded at {api_services.settings.volume}")

    api_services.profiles.list_profiles = boom  # type: ignore[method-assign]
    r = api_client.get("/profiles")
    assert r.status_code == 500
    assert str(api_services.settings.volume) not in r.text
