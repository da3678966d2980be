"""History over HTTP: list/search/paging, stats, favourites, delete, audio formats, exports, import."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.db.models import Generation
from backend.services.container import Services
from tests.support.api import add_generation, audio_bytes, files_under

pytestmark = pytest.mark.both_backends


def _profile(client: TestClient, name: str = "Narrator") -> str:
    return client.post("/profiles", json={"name": name}).json()["id"]


def test_list_search_paging_and_limits(api_client: TestClient, api_services: Services) -> None:
    a = _profile(api_client, "Alice")
    b = _profile(api_client, "Bob")
    ids = [
        add_generation(
            api_services, profile_id=a, profile_name="Alice", text=f"apple {i}", created_offset_s=i
        )
        for i in range(3)
    ]
    add_generation(
        api_services, profile_id=b, profile_name="Bob", text="banana 50%_off", created_offset_s=10
    )
    body = api_client.get("/history").json()
    assert body["total"] == 4
    assert body["items"][0]["text"] == "banana 50%_off"  # newest first
    assert all("profile_name" in item for item in body["items"])
    assert all(not (item["audio_path"] or "").startswith("/") for item in body["items"])
    page = api_client.get("/history", params={"profile_id": a, "limit": 2, "offset": 1}).json()
    assert page["total"] == 3 and [i["id"] for i in page["items"]] == [ids[1], ids[0]]
    assert api_client.get("/history", params={"search": "APPLE"}).json()["total"] == 3
    assert api_client.get("/history", params={"search": "bob"}).json()["total"] == 1
    assert api_client.get("/history", params={"search": "%"}).json()["total"] == 1  # literal %
    assert api_client.get("/history", params={"search": "_"}).json()["total"] == 1
    for params in ({"limit": 101}, {"limit": 0}, {"offset": -1}, {"limit": "x"}):
        r = api_client.get("/history", params=params)
        assert r.status_code == 422, params
    assert api_client.get("/history", params={"limit": 100}).status_code == 200


def test_stats_favorite_get_delete(api_client: TestClient, api_services: Services) -> None:
    a = _profile(api_client)
    g1 = add_generation(api_services, profile_id=a, profile_name="Narrator", seconds=2.0)
    add_generation(api_services, profile_id=a, profile_name="Narrator", seconds=1.0)
    stats = api_client.get("/history/stats").json()
    assert stats["total_generations"] == 2
    assert stats["total_duration_seconds"] == pytest.approx(3.0)
    assert stats["generations_by_profile"] == {a: 2}
    assert api_client.post(f"/history/{g1}/favorite").json() == {"is_favorited": True}
    assert api_client.get(f"/history/{g1}").json()["is_favorited"] is True
    assert api_client.post(f"/history/{g1}/favorite").json() == {"is_favorited": False}
    path = api_client.get(f"/history/{g1}").json()["audio_path"]
    assert api_client.delete(f"/history/{g1}").status_code == 200
    assert not api_services.blobs.exists(path)
    assert api_client.get(f"/history/{g1}").status_code == 404
    assert api_client.get("/history/stats").json()["total_generations"] == 1


def test_generating_rows_cannot_be_deleted(api_client: TestClient, api_services: Services) -> None:
    a = _profile(api_client)
    g = add_generation(api_services, profile_id=a, profile_name="Narrator", status="generating")
    r = api_client.delete(f"/history/{g}")
    assert r.status_code == 409
    r = api_client.get(f"/audio/{g}")
    assert r.status_code == 404 and "generating" in r.json()["detail"]


def test_unknown_generation_ids_are_404(api_client: TestClient) -> None:
    missing = "11111111-1111-1111-1111-111111111111"
    for method, path in [
        ("GET", f"/history/{missing}"),
        ("DELETE", f"/history/{missing}"),
        ("POST", f"/history/{missing}/favorite"),
        ("GET", f"/history/{missing}/export"),
        ("GET", f"/history/{missing}/export-audio"),
        ("GET", f"/audio/{missing}"),
    ]:
        r = api_client.request(method, path)
        assert r.status_code == 404, (method, path, r.text)


@pytest.mark.parametrize(
    ("fmt", "ctype"),
    [("wav", "audio/wav"), ("flac", "audio/flac"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg")],
)
def test_audio_in_each_format(
    api_client: TestClient, api_services: Services, fmt: str, ctype: str
) -> None:
    g = add_generation(api_services, profile_id=None, profile_name="x", seconds=1.5)
    r = api_client.get(f"/audio/{g}", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(ctype)
    audio, _ = sf.read(io.BytesIO(r.content))
    assert len(audio) > 0


def test_audio_rejects_unknown_formats(api_client: TestClient, api_services: Services) -> None:
    g = add_generation(api_services, profile_id=None, profile_name="x")
    assert api_client.get(f"/audio/{g}", params={"format": "aac"}).status_code == 422


def test_export_audio_and_zip(api_client: TestClient, api_services: Services) -> None:
    a = _profile(api_client)
    g = add_generation(api_services, profile_id=a, profile_name="Narrator", text="Hi: there/you")
    r = api_client.get(f"/history/{g}/export-audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert (
        "attachment" in r.headers["content-disposition"]
        and "/" not in r.headers["content-disposition"].split("filename=")[1].split(";")[0]
    )
    r = api_client.get(f"/history/{g}/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["generation"]["id"] == g
        assert manifest["profile"]["name"] == "Narrator"
        assert zf.namelist() == ["manifest.json", f"audio/{g}.wav"]
    assert files_under(api_services.settings.tmp_dir) == []


def _voicebox_generation_zip(profile_name: str, *, audio: bytes | None = None) -> bytes:
    """As Voicebox upstream's ``export_generation_to_zip`` writes it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        manifest = {
            "version": "1.0",
            "generation": {
                "id": "22222222-2222-4222-8222-222222222222",
                "text": "An imported take.",
                "language": "en",
                "duration": 999.0,
                "seed": 7,
                "instruct": None,
                "created_at": "2025-01-02T03:04:05",
            },
            "profile": {"id": "x", "name": profile_name, "description": None, "language": "en"},
            "versions": [
                {
                    "id": "v1",
                    "label": "original",
                    "is_default": True,
                    "effects_chain": None,
                    "filename": "take.wav",
                }
            ],
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        zf.writestr("audio/take.wav", audio if audio is not None else audio_bytes(2.0))
    return buf.getvalue()


def test_history_import_matches_profile_by_name_and_trusts_the_audio(
    api_client: TestClient, api_services: Services
) -> None:
    a = _profile(api_client, "Alice")
    _profile(api_client, "Zed")
    r = api_client.post(
        "/history/import", files={"file": ("g.zip", _voicebox_generation_zip("Alice"), "a/zip")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["profile_id"] == a and body["profile_name"] == "Alice"
    assert body["duration"] == pytest.approx(2.0)  # from the audio, not the manifest's 999
    item = api_client.get(f"/history/{body['id']}").json()
    assert item["seed"] == 7 and item["created_at"].startswith("2025-01-02")
    assert api_client.get(f"/audio/{body['id']}").status_code == 200


def test_history_import_never_guesses_a_profile(
    api_client: TestClient, api_services: Services
) -> None:
    _profile(api_client, "Somebody Else")
    r = api_client.post(
        "/history/import", files={"file": ("g.zip", _voicebox_generation_zip("Ghost"), "a/zip")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["profile_id"] is None and r.json()["profile_name"] == "Ghost"


def test_history_import_rejects_bad_audio_and_writes_nothing(
    api_client: TestClient, api_services: Services
) -> None:
    r = api_client.post(
        "/history/import",
        files={"file": ("g.zip", _voicebox_generation_zip("A", audio=b"garbage" * 50), "a/zip")},
    )
    assert r.status_code == 400 and "audio/take.wav" in r.json()["detail"]
    assert files_under(api_services.settings.data_dir / "generations") == []
    assert files_under(api_services.settings.tmp_dir) == []
    with api_services.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Generation)) == 0


def test_history_export_then_import_round_trip(
    api_client: TestClient, api_services: Services
) -> None:
    a = _profile(api_client, "Alice")
    g = add_generation(api_services, profile_id=a, profile_name="Alice", text="round trip")
    data = api_client.get(f"/history/{g}/export").content
    api_client.delete(f"/history/{g}")
    r = api_client.post("/history/import", files={"file": ("g.zip", data, "a/zip")})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == g and r.json()["profile_id"] == a


def test_keyset_pages_walk_the_same_order_as_offsets(
    api_client: TestClient, api_services: Services
) -> None:
    pid = _profile(api_client, "Pager")
    for i in range(23):  # same second for some rows: the id breaks the tie
        add_generation(
            api_services,
            profile_id=pid,
            profile_name="Pager",
            text=f"page {i}",
            created_offset_s=i // 3,
            status="failed",
        )
    by_offset = [
        item["id"]
        for offset in range(0, 23, 5)
        for item in api_client.get("/history", params={"limit": 5, "offset": offset}).json()[
            "items"
        ]
    ]
    by_key, after, pages = [], None, 0
    while True:
        params = {"limit": 5, **({"after": after} if after else {})}
        body = api_client.get("/history", params=params).json()
        assert body["total"] == 23
        by_key += [item["id"] for item in body["items"]]
        pages += 1
        after = body["next_cursor"]
        if after is None:
            break
    assert by_key == by_offset and len(by_key) == 23 and pages == 5
    searched = api_client.get("/history", params={"search": "page 1", "limit": 2}).json()
    rest = api_client.get(
        "/history", params={"search": "page 1", "limit": 50, "after": searched["next_cursor"]}
    ).json()
    assert len(searched["items"]) + len(rest["items"]) == searched["total"] == 11
    assert api_client.get("/history", params={"after": "gone"}).status_code == 404
    skipped = api_client.get(
        "/history", params={"limit": 5, "after": by_key[4], "offset": 5}
    ).json()
    assert [item["id"] for item in skipped["items"]] == by_key[10:15]
