"""API keys for the standalone server: on (``VOICEBOX_API_KEYS``), off (no keys), and ignored when serverless."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from backend.api.auth import KeyChecker
from backend.app import api_admin_table, create_app
from backend.config import Settings
from backend.serverless.launcher import ServerThread
from backend.services.container import Services
from tests.support.generation import add_profile_with_sample

pytestmark = pytest.mark.timeout(120)

KEYS = {"api_keys": ("user-key-1", "user-key-2"), "admin_keys": ("admin-key",)}


@pytest.fixture
def make_client(api_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """A TestClient over an app with the fake engines and the given settings overrides."""
    opened: list[tuple[TestClient, Services]] = []

    def make(**overrides: object) -> TestClient:
        settings = api_settings.with_overrides(**overrides)
        services = Services.for_worker(settings)
        client = TestClient(create_app(settings, services=services), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, services))
        return client

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------------------------------- with the SDK
def test_openai_client_with_keys_over_http(api_settings: Settings) -> None:
    settings = api_settings.with_overrides(**KEYS)
    services = Services.for_worker(settings)
    add_profile_with_sample(services, "Narrator")
    thread = ServerThread(create_app(settings, services=services)).start()
    assert thread.wait_ready(30), thread.describe_exit()
    base = f"{thread.base_url}/v1"
    try:

        def client(key: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=base, api_key=key, max_retries=0)

        with pytest.raises(openai.AuthenticationError) as missing:
            # the SDK always sends a key; an empty header is what a keyless caller sends
            client("x").models.list(extra_headers={"Authorization": ""})
        assert "missing API key" in str(missing.value)
        assert missing.value.response.headers["www-authenticate"].startswith("Bearer realm=")
        with pytest.raises(openai.AuthenticationError) as wrong:
            client("not-a-key").audio.speech.create(model="tts-1", voice="Narrator", input="Hi.")
        assert "invalid API key" in str(wrong.value)
        assert 'error="invalid_token"' in wrong.value.response.headers["www-authenticate"]

        ok = client("user-key-2")
        assert "tts-1" in [m.id for m in ok.models.list()]
        audio = ok.audio.speech.create(
            model="tts-1", voice="Narrator", input="Hello there.", response_format="wav"
        ).read()
        assert audio[:4] == b"RIFF"
        # an admin key is a key too
        assert client("admin-key").models.list().data

        # admin routes over the same server: a user key is 403, the admin key passes
        unload = httpx.post(
            f"{thread.base_url}/models/unload", headers=bearer("user-key-1"), timeout=30
        )
        assert unload.status_code == 403
        load = httpx.post(f"{thread.base_url}/models/load", headers=bearer("admin-key"), timeout=30)
        assert load.status_code == 200
        assert httpx.get(f"{thread.base_url}/health", timeout=10).status_code == 200
    finally:
        thread.stop()
        services.close()


# ---------------------------------------------------------------------------------------------- auth on
def test_every_route_but_health_needs_a_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**KEYS)
    assert client.get("/health").status_code == 200
    for method, path in [
        ("GET", "/"),
        ("GET", "/profiles"),
        ("GET", "/history"),
        ("GET", "/v1/audio/voices"),
        ("POST", "/generate"),
        ("GET", "/no/such/route"),  # 401, not 404: the route table is not revealed either
        ("GET", "/health/../profiles"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="voicebox-worker"'
        assert "VOICEBOX_API_KEYS" in response.json()["detail"]
    assert client.get("/profiles", headers=bearer("user-key-1")).status_code == 200
    assert client.get("/profiles", headers={"Authorization": "bearer  user-key-2 "}).is_success
    assert client.get("/profiles", headers={"Authorization": "Basic user-key-1"}).status_code == 401
    assert client.get("/profiles", headers=bearer("user-key-1x")).status_code == 401
    assert client.get("/profiles", headers=bearer("admin-key")).status_code == 200


def test_refused_before_the_body_is_read(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**KEYS)
    response = client.post("/profiles", content=b"{not json", headers={"Content-Type": "x/y"})
    assert response.status_code == 401  # not 422: validation never ran


def test_admin_routes_need_an_admin_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**KEYS)
    for path in ("/models/load", "/models/%6Coad", "/models/unload"):
        response = client.post(path, headers=bearer("user-key-1"))
        assert response.status_code == 403, path
        assert "VOICEBOX_ADMIN_KEYS" in response.json()["detail"]
    assert client.post("/models/load").status_code == 401
    loaded = client.post("/models/load", headers=bearer("admin-key"))
    assert loaded.status_code == 200 and loaded.json()["message"] == "models loaded"
    assert client.post("/volume/probe", headers=bearer("user-key-2")).status_code == 403
    # a route this build does not serve is not admin: a key holder learns only that it is not there
    assert client.post("/no-such-route", headers=bearer("user-key-1")).status_code == 404
    # upstream's /shutdown answers the not-available shape (RunPod stops idle workers), to any key holder
    assert client.post("/shutdown", headers=bearer("user-key-1")).status_code == 400
    # a non-admin method on an admin path is an ordinary route
    assert client.get("/models/status", headers=bearer("user-key-1")).status_code == 200


def test_api_keys_without_admin_keys_disable_admin_routes(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(api_keys=("k",), admin_keys=())
    response = client.post("/models/load", headers=bearer("k"))
    assert response.status_code == 403
    assert "no VOICEBOX_ADMIN_KEYS are configured" in response.json()["detail"]


def test_admin_keys_alone_guard_only_admin_routes(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=(), admin_keys=("root",))
    assert client.get("/profiles").status_code == 200
    assert client.post("/models/load").status_code == 401
    assert client.post("/models/load", headers=bearer("wrong")).status_code == 401
    assert client.post("/models/load", headers=bearer("root")).status_code == 200


def test_cors_preflight_and_401_keep_cors_headers(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**KEYS)
    preflight = client.options(
        "/profiles",
        headers={
            "Origin": "tauri://localhost",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    refused = client.get("/profiles", headers={"Origin": "tauri://localhost"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "tauri://localhost"


def test_v1_refusals_carry_openai_error_shape(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**KEYS)
    body = client.get("/v1/models").json()
    assert body["error"]["type"] == "authentication_error"
    assert body["detail"] == body["error"]["message"]
    assert "error" not in client.get("/profiles").json()  # Voicebox routes keep Voicebox's shape


# ---------------------------------------------------------------------------------------------- auth off
def test_without_keys_everything_is_open(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/").status_code == 200
    assert client.get("/profiles").status_code == 200
    assert client.get("/v1/models").status_code == 200
    assert client.post("/models/load").status_code == 200
    # a key sent anyway is ignored
    assert client.get("/profiles", headers=bearer("anything")).status_code == 200


def test_serverless_mode_does_not_check_keys(make_client: Callable[..., TestClient]) -> None:
    client = make_client(serverless=True, **KEYS)
    assert client.get("/profiles").status_code == 200
    assert client.get("/v1/audio/voices").status_code == 200
    assert client.get("/profiles", headers=bearer("wrong")).status_code == 200


# ---------------------------------------------------------------------------------------------- the checker
def test_admin_table_matches_as_the_app_routes() -> None:
    table = api_admin_table()
    for method, path in [
        ("POST", "/models/load"),
        ("POST", "/models/load/"),
        ("POST", "/models/%6Coad"),
        ("POST", "/models/unload?x=1"),
        ("POST", "/volume/probe"),
    ]:
        assert (method, path) in table, (method, path)
    assert ("GET", "/models/status") not in table
    assert ("POST", "/v1/audio/speech") not in table


def test_head_health_agrees_with_get(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**KEYS)
    assert client.get("/health").status_code == 200
    head = client.head("/health")
    assert head.status_code == 200, head.text
    assert client.head("/profiles").status_code == 401


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    checker = KeyChecker(("first", "second", "third"), ("admin",), api_admin_table())
    assert checker.check("GET", "/profiles", "Bearer first") is None
    # every configured key is compared (no early exit), as equal-length digests
    assert len(calls) == 4 and all(len(a) == len(b) == 32 for a, b in calls)
    refusal = checker.check("GET", "/profiles", "Bearer nope")
    assert refusal is not None and refusal.status == 401
