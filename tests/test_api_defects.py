"""Defects an acceptance run found in answers: validation errors echoing the whole input, an object repr in a
/transcribe 400, an OPTIONS ``Allow`` that omitted DELETE."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.config import Settings
from backend.engines.manager import EngineManager
from backend.services.container import Services


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    services = Services.create(api_settings, engines=EngineManager(api_settings))
    try:
        with TestClient(create_app(api_settings, services=services)) as c:
            yield c
    finally:
        services.close()


def test_validation_errors_do_not_echo_a_huge_input(client: TestClient) -> None:
    text = "A" * 5_000_000
    r = client.post("/generate", json={"profile_id": "x", "text": text})
    assert r.status_code == 422
    assert len(r.content) < 4000, len(r.content)
    (error,) = [e for e in r.json()["detail"] if e["loc"][-1] == "text"]
    assert error["input"] == "A" * 200 + "… (5000000 characters)"
    # a missing field echoes the whole body as its input: its long values are cut too
    r = client.post("/generate", json={"text": text})
    assert r.status_code == 422 and len(r.content) < 4000
    assert "5000000 characters" in r.text
    # the OpenAI shape carries the same short detail
    r = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "x", "input": text})
    assert r.status_code == 422 and len(r.content) < 4000
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_short_inputs_are_echoed_whole(client: TestClient) -> None:
    r = client.post("/generate", json={"profile_id": "x", "text": "hi", "seed": -1})
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "seed"] and error["input"] == -1


def test_transcribe_refusal_names_no_object(client: TestClient) -> None:
    r = client.post("/transcribe", files={"file": ("x.wav", b"not audio at all" * 10, "audio/wav")})
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "could not decode the audio" in detail
    assert "object at 0x" not in detail and "<_io" not in detail and "Error opening" not in detail


def test_options_allow_names_every_method_of_the_path(client: TestClient) -> None:
    pid = client.post("/profiles", json={"name": "P"}).json()["id"]
    r = client.options(f"/profiles/{pid}")
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= allowed
    r = client.request("PATCH", "/history")
    assert r.status_code == 405 and "GET" in r.headers["allow"]


def test_timestamps_say_they_are_utc(client: TestClient) -> None:
    """``format: date-time`` needs a zone; the Voicebox app appends ``Z`` only to a time without one
    (``parseServerDate``: no ``Z`` and no ``±hh:mm`` suffix), so ``...Z`` parses there unchanged."""
    import re
    from datetime import UTC, datetime

    profile = client.post("/profiles", json={"name": "Zoned"}).json()
    for key in ("created_at", "updated_at"):
        value = profile[key]
        assert value.endswith("Z"), value
        assert "Z" in value or re.search(
            r"[+-]\d{2}:\d{2}$", value
        )  # the app's rule: no Z appended
        parsed = datetime.fromisoformat(value)
        assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)
    listed = client.get("/profiles").json()[0]
    assert listed["created_at"] == profile["created_at"]


def test_spec_declares_errors_and_the_rules_the_server_applies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["detail"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            declared = set(op["responses"])
            assert {"400", "404", "409", "413", "422", "500", "503"} <= declared, (method, path)
            ref = op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse"), (method, path)
    create = spec["components"]["schemas"]["VoiceProfileCreate"]["properties"]["voice_type"]
    assert [c.get("const") for c in create["anyOf"]] == ["cloned", None]
    sample = spec["paths"]["/profiles/{profile_id}/samples"]["post"]["requestBody"]["content"]
    text_rule = sample["multipart/form-data"]["schema"]["properties"]["reference_text"]
    assert text_rule["minLength"] == 1 and text_rule["maxLength"] == 1000
    audio = spec["paths"]["/audio/{generation_id}"]["get"]["parameters"]
    (fmt,) = [p for p in audio if p["name"] == "format"]
    assert fmt["schema"]["enum"] == ["wav", "flac", "mp3", "opus"]
    export = spec["paths"]["/profiles/{profile_id}/export"]["get"]["parameters"]
    (fmt,) = [p for p in export if p["name"] == "format"]
    assert set(fmt["schema"]["enum"]) == {"1.0", "1.1"}
    assert (
        "audio/wav" in spec["paths"]["/audio/{generation_id}"]["get"]["responses"]["200"]["content"]
    )


def test_server_refuses_what_the_spec_refuses(client: TestClient) -> None:
    r = client.post("/profiles", json={"name": "V", "voice_type": "preset"})
    assert r.status_code == 422 and "clones voices from samples only" in r.text
    assert client.get("/audio/x", params={"format": ""}).status_code == 422
    assert client.get("/profiles/x/export", params={"format": "2.0"}).status_code == 422
    assert client.get("/exports/a..b").status_code == 422
