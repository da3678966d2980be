"""Bearer API keys for the standalone server (a pod or a laptop): ``VOICEBOX_API_KEYS``, ``VOICEBOX_ADMIN_KEYS``.

Why a pure ASGI middleware and not a FastAPI dependency: a dependency runs after FastAPI has read and validated
the body, so an anonymous caller could make the server read a 500 MB upload or learn the request schema from
422 answers; the middleware refuses before the body is read. It sits inside the CORS middleware, so browser
preflights (which never carry credentials) are answered by CORS, and a 401 still carries CORS headers.

Rules (``docs/api.md``, "API keys"):
- No keys configured → nothing is checked (the default; the server binds 127.0.0.1 unless told otherwise).
- ``VOICEBOX_API_KEYS`` set → every route but ``GET /health`` needs ``Authorization: Bearer <key>`` with a key
  from either list; missing or wrong → 401 with ``WWW-Authenticate``.
- Admin routes (declared with ``openapi_extra=ADMIN``, ``backend/api/admin.py``; the RunPod handler gates the same
  table) need a key from ``VOICEBOX_ADMIN_KEYS``; another valid key → 403. With only admin keys set, the other
  routes stay open.
- ``SERVERLESS=1`` → not installed: the app listens on loopback only and RunPod's endpoint key guards the jobs
  (admin routes there are gated by ``VOICEBOX_ALLOW_ADMIN_JOBS`` in the handler).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from backend.api.admin import AdminTable, admin_table, decoded_route
from backend.api.openai_compat import openai_error_body
from backend.config import Settings

log = logging.getLogger("voicebox.auth")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: routes anyone may call even when keys are set: load balancers and the desktop app probe it (HEAD as GET)
OPEN_ROUTES: frozenset[tuple[str, str]] = frozenset({("GET", "/health"), ("HEAD", "/health")})
REALM = "voicebox-worker"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    headers: tuple[tuple[str, str], ...] = ()


class KeyChecker:
    """The decision, apart from ASGI so tests and the CLI can ask it directly."""

    def __init__(
        self, api_keys: tuple[str, ...], admin_keys: tuple[str, ...], admin_routes: AdminTable
    ) -> None:
        self.admin_routes = admin_routes
        # Digests of equal length: compare_digest then leaks neither a key's length nor where it differs.
        self._api = tuple(_digest(k) for k in api_keys)
        self._admin = tuple(_digest(k) for k in admin_keys)
        self.require_key = bool(api_keys)

    @staticmethod
    def _matches(given: bytes, keys: tuple[bytes, ...]) -> bool:
        found = False
        for key in keys:  # no early exit: the time does not say which key matched
            found |= hmac.compare_digest(given, key)
        return found

    def check(self, method: str, raw_path: str, authorization: str | None) -> Refusal | None:
        """``None`` when the request may pass; else the answer to send."""
        route = decoded_route(raw_path.partition("?")[0])
        if (method, route) in OPEN_ROUTES:
            return None
        admin = (method, raw_path) in self.admin_routes
        if not admin and not self.require_key:
            return None
        token = _bearer(authorization)
        if token is None:
            return Refusal(
                401,
                "missing API key: send 'Authorization: Bearer <key>' with a key from "
                + ("VOICEBOX_ADMIN_KEYS" if admin else "VOICEBOX_API_KEYS"),
                (("WWW-Authenticate", f'Bearer realm="{REALM}"'),),
            )
        given = _digest(token)
        is_admin_key = self._matches(given, self._admin)
        if not is_admin_key and not self._matches(given, self._api):
            return Refusal(
                401,
                "invalid API key",
                (("WWW-Authenticate", f'Bearer realm="{REALM}", error="invalid_token"'),),
            )
        if admin and not is_admin_key:
            hint = (
                "use a key from VOICEBOX_ADMIN_KEYS"
                if self._admin
                else "no VOICEBOX_ADMIN_KEYS are configured, so admin routes are disabled"
            )
            return Refusal(403, f"{method} {route} is an admin route; {hint}")
        return None


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class ApiKeyMiddleware:
    """Pure ASGI: refuses before the route (and its body parsing) runs."""

    def __init__(self, app: ASGIApp, checker: KeyChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; the API has no websocket routes
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1") if isinstance(raw, bytes) else scope["path"]
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        refusal = self.checker.check(scope["method"], raw_path, authorization)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        log.info("refused %s %s: %s", scope["method"], scope["path"], refusal.status)
        payload: dict[str, Any] = {"detail": refusal.detail}
        if decoded_route(raw_path).startswith("/v1/"):  # the OpenAI SDKs show only error.message
            payload = openai_error_body(refusal.status, refusal.detail)
        body = json.dumps(payload).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers),
        ]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_api_keys(app: FastAPI, settings: Settings) -> bool:
    """Add the key check when keys are configured outside serverless mode; returns whether it was added.

    Call after the routers are included (the admin table is read from ``app.routes``) and before adding the
    CORS middleware, so CORS stays the outer layer.
    """
    if settings.serverless:
        if settings.api_keys or settings.admin_keys:
            log.info(
                "SERVERLESS=1: API keys are not checked; RunPod's endpoint key guards the jobs"
            )
        return False
    if not (settings.api_keys or settings.admin_keys):
        if not _is_loopback(settings.host):
            log.warning(
                "serving on %s without API keys: anyone who can reach it can use it "
                "(set VOICEBOX_API_KEYS and VOICEBOX_ADMIN_KEYS)",
                settings.host,
            )
        return False
    checker = KeyChecker(settings.api_keys, settings.admin_keys, admin_table(app.routes))
    app.add_middleware(ApiKeyMiddleware, checker=checker)
    return True
