"""A keyless local server is closed to other websites: foreign Origin, ``Origin: null`` and rebinding Host are 403.

Requests are made the way a browser makes them (a preflight, and the simple GET/POST that needs none) against
the real app over a loopback "connection" (``base_url`` 127.0.0.1, so the ASGI ``server`` is loopback).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.config import Settings, load_settings
from backend.http_guard import APP_ORIGINS, OriginPolicy, host_name, is_loopback_host
from backend.services.container import Services

LOCAL = "http://127.0.0.1:17493"
EVIL = "https://evil.example"


@pytest.fixture
def make_client(api_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    opened: list[tuple[TestClient, Services]] = []

    def make(base_url: str = LOCAL, **overrides: object) -> TestClient:
        settings = api_settings.with_overrides(**overrides)
        services = Services.for_worker(settings)
        client = TestClient(create_app(settings, services=services), base_url=base_url)
        client.__enter__()
        opened.append((client, services))
        return client

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()


def _profile_count(client: TestClient) -> int:
    return len(client.get("/profiles").json())


def test_foreign_origin_preflight_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    created = client.post("/profiles", json={"name": "Mine"}).json()
    r = client.options(
        f"/profiles/{created['id']}",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "DELETE"},
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers
    # the desktop app's preflight passes and names its origin
    for origin in APP_ORIGINS:
        ok = client.options(
            f"/profiles/{created['id']}",
            headers={"Origin": origin, "Access-Control-Request-Method": "DELETE"},
        )
        assert ok.status_code == 200, (origin, ok.text)
        assert ok.headers["access-control-allow-origin"] == origin


def test_foreign_origin_simple_requests_are_refused(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    client.post("/profiles", json={"name": "Mine"})
    # a simple GET would be readable by nobody (no CORS header) but still run: it must not run at all
    r = client.get("/profiles", headers={"Origin": EVIL})
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    # a simple POST (text/plain needs no preflight) must not change the library
    r = client.post(
        "/profiles",
        content=b'{"name": "Planted"}',
        headers={"Origin": EVIL, "Content-Type": "text/plain"},
    )
    assert r.status_code == 403
    r = client.post("/profiles", json={"name": "Planted"}, headers={"Origin": "null"})
    assert r.status_code == 403 and "null" in r.json()["detail"]
    assert [p["name"] for p in client.get("/profiles").json()] == ["Mine"]
    # the app's origin and origin-less tools pass
    r = client.get("/profiles", headers={"Origin": "tauri://localhost"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "tauri://localhost"
    assert client.get("/profiles").status_code == 200


def test_rebinding_host_is_refused_on_loopback(make_client: Callable[..., TestClient]) -> None:
    client = make_client(allowed_hosts=("voicebox.lan",))
    r = client.get("/profiles", headers={"Host": "evil.example:17493"})
    assert r.status_code == 403 and "DNS rebinding" in r.json()["detail"]
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 403
    for host in ("localhost:17493", "127.0.0.1:17493", "[::1]:17493", "LOCALHOST", "voicebox.lan"):
        assert client.get("/profiles", headers={"Host": host}).status_code == 200, host


def test_host_is_not_checked_off_loopback(make_client: Callable[..., TestClient]) -> None:
    """Bound to a LAN address, the Host a client uses (a name, an IP) cannot be known in advance."""
    client = make_client(base_url="http://192.168.1.20:17493", host="0.0.0.0")
    assert client.get("/profiles", headers={"Host": "voicebox.example"}).status_code == 200
    assert client.get("/profiles", headers={"Origin": EVIL}).status_code == 403


def test_configured_origins_and_explicit_star(
    make_client: Callable[..., TestClient], api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"VOICEBOX_VOLUME": str(api_settings.volume), "VOICEBOX_CORS_ORIGINS": "https://a.test"}
    extra = load_settings(env)
    assert extra.cors_origins == ("https://a.test",) and not extra.cors_any_origin
    client = make_client(cors_origins=extra.cors_origins)
    assert client.get("/profiles", headers={"Origin": "https://a.test"}).status_code == 200
    assert client.get("/profiles", headers={"Origin": EVIL}).status_code == 403

    with caplog.at_level(logging.WARNING, logger="voicebox.app"):
        star = make_client(cors_any_origin=True)
    assert any("VOICEBOX_CORS_ORIGINS=*" in r.getMessage() for r in caplog.records)
    r = star.get("/profiles", headers={"Origin": EVIL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert star.get("/profiles", headers={"Origin": "null"}).status_code == 403


def test_star_is_never_the_default(api_settings: Settings) -> None:
    settings = load_settings({"VOICEBOX_VOLUME": str(api_settings.volume)})
    assert settings.cors_any_origin is False and settings.cors_origins == ()
    with pytest.raises(ValueError, match="not an origin"):
        load_settings({"VOICEBOX_VOLUME": "/tmp/x", "VOICEBOX_CORS_ORIGINS": "evil.example"})


# ---------------------------------------------------------------------------------------------- the policy
def test_policy_decisions() -> None:
    policy = OriginPolicy.build(APP_ORIGINS, hosts=("box.lan",))
    assert policy.check(None, "127.0.0.1:17493", loopback_connection=True) is None
    assert policy.check("tauri://localhost", "localhost", loopback_connection=True) is None
    assert policy.check("http://tauri.localhost/", "localhost", loopback_connection=True) is None
    for origin in ("null", EVIL, "http://localhost:8080", "http://tauri.localhost.evil.example"):
        refusal = policy.check(origin, "localhost", loopback_connection=True)
        assert refusal is not None and refusal.status == 403, origin
    assert policy.check(None, "evil.example", loopback_connection=True) is not None
    assert policy.check(None, "box.lan:80", loopback_connection=True) is None
    assert policy.check(None, "evil.example", loopback_connection=False) is None

    token = OriginPolicy.build(APP_ORIGINS, token="s3cret")
    assert token.check(None, "localhost", loopback_connection=True) is not None
    assert token.check(None, "localhost", loopback_connection=True, authorization="Bearer nope")
    assert (
        token.check(None, "localhost", loopback_connection=True, authorization="Bearer s3cret")
        is None
    )
    # the app's own requests carry its origin and need no token
    assert token.check("tauri://localhost", "localhost", loopback_connection=True) is None


@pytest.mark.parametrize(
    ("header", "name", "loopback"),
    [
        ("127.0.0.1:17493", "127.0.0.1", True),
        ("[::1]:17493", "::1", True),
        ("localhost.", "localhost", True),
        ("app.localhost:80", "app.localhost", True),
        ("127.1.2.3", "127.1.2.3", True),
        ("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", True),
        ("evil.example:17493", "evil.example", False),
        ("localhost.evil.example", "localhost.evil.example", False),
        ("0.0.0.0", "0.0.0.0", False),
    ],
)
def test_host_names(header: str, name: str, loopback: bool) -> None:
    assert host_name(header) == name
    assert is_loopback_host(name) is loopback


def test_over_a_real_loopback_socket(api_settings: Settings) -> None:
    """uvicorn on 127.0.0.1: the ASGI ``server`` is the listening address, so the Host guard is on."""
    import httpx

    from backend.serverless.launcher import ServerThread

    services = Services.for_worker(api_settings)
    thread = ServerThread(create_app(api_settings, services=services)).start()
    try:
        assert thread.wait_ready(30), thread.describe_exit()
        base = thread.base_url
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        assert httpx.head(f"{base}/health", timeout=10).status_code == 200
        rebound = httpx.get(f"{base}/profiles", headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 403
        foreign = httpx.post(
            f"{base}/profiles",
            content=b'{"name": "x"}',
            headers={"Origin": EVIL, "Content-Type": "text/plain"},
            timeout=10,
        )
        assert foreign.status_code == 403
        assert httpx.get(f"{base}/profiles", timeout=10).json() == []
    finally:
        thread.stop()
        services.close()
