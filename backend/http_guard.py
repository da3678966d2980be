"""Who may talk to a server on this machine: the ``Origin`` allow-list and the ``Host`` (DNS rebinding) guard.

Why one stdlib-only module at the bottom layer: two servers run on a user's machine -- ``voicebox-worker serve``
(the library, keyless by default on loopback) and the bridge (which spends the user's RunPod credit) -- and both
must refuse the same things. The api layer (``backend/app.py``) and the client (``backend/client/bridge.py``,
which may not import the server) both import this module; it imports nothing of the project.

What a browser can do to a loopback server, and what refuses it here:
- A page on ``https://evil.example`` sends a request with ``Origin: https://evil.example``. A preflighted
  request is stopped by CORS, but a *simple* GET or form POST reaches the route before the browser checks the
  answer, so CORS alone is not enough: any ``Origin`` outside the allow-list is answered 403 before the app runs.
- A sandboxed iframe or a ``file://`` page sends ``Origin: null``: refused (it is never the app).
- DNS rebinding: ``evil.example`` re-resolves to 127.0.0.1, so the page's requests are same-origin (no ``Origin``
  on GETs) but carry ``Host: evil.example``. When the connection arrived on a loopback address, a ``Host`` that is
  not a loopback name or address (or one configured) is refused with 403.
- Requests with no ``Origin`` (curl, scripts, the Voicebox app's native HTTP client) pass on ``serve``; the bridge
  asks them for its per-run token (``token``), because an ``<img>`` tag on a rebinding page could otherwise start
  billed jobs.

The desktop app's origins (upstream Voicebox ``backend/app.py`` ``_configure_cors`` and the Tauri config): the
webview is ``tauri://localhost`` (macOS) or ``http(s)://tauri.localhost`` (Windows/Linux), the dev server
``localhost:5173``, and the bundled server page ``localhost:17493``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from backend.config import parse_origins as parse_origins  # bridge and serve read it alike

__all__ = [
    "APP_ORIGINS",
    "GuardMiddleware",
    "OriginPolicy",
    "Refusal",
    "host_name",
    "is_loopback_host",
    "parse_origins",
]

log = logging.getLogger("voicebox.guard")

#: The Voicebox desktop app's origins (Tauri webview on each OS, its Vite dev server, the bundled server page).
APP_ORIGINS: tuple[str, ...] = (
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:17493",
    "http://127.0.0.1:17493",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header, lower-cased: ``[::1]:80`` → ``::1``, ``Localhost:17493`` → ``localhost``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback_host(name: str) -> bool:
    """A loopback address, ``localhost`` or a ``*.localhost`` name (RFC 6761: always resolved to loopback)."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return _is_loopback_ip(name)


def _is_loopback_ip(text: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback seen through a dual-stack socket (``::ffff:127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str


@dataclass(frozen=True)
class OriginPolicy:
    """The decision, apart from ASGI so tests can ask it directly.

    ``origins``: allowed ``Origin`` values; ``any_origin``: every origin allowed (explicit ``*``; ``null`` still
    refused); ``hosts``: extra ``Host`` names accepted on a loopback connection (the configured host,
    ``VOICEBOX_ALLOWED_HOSTS``); ``token``: when set, requests without ``Origin`` must present it as
    ``Authorization: Bearer <token>`` (the bridge).
    """

    origins: frozenset[str]
    any_origin: bool = False
    hosts: frozenset[str] = frozenset()
    token: str | None = None
    what: str = "this server"
    setting: str = "VOICEBOX_CORS_ORIGINS"

    @classmethod
    def build(
        cls,
        origins: Iterable[str],
        *,
        any_origin: bool = False,
        hosts: Iterable[str] = (),
        token: str | None = None,
        what: str = "this server",
    ) -> OriginPolicy:
        return cls(
            origins=frozenset(o.rstrip("/") for o in origins),
            any_origin=any_origin,
            hosts=frozenset(host_name(h) for h in hosts if h.strip()),
            token=token,
            what=what,
        )

    def check(
        self,
        origin: str | None,
        host: str | None,
        *,
        loopback_connection: bool,
        authorization: str | None = None,
    ) -> Refusal | None:
        """``None`` when the request may pass; else the 403 to answer."""
        if loopback_connection and host is not None:
            name = host_name(host)
            if not (is_loopback_host(name) or name in self.hosts):
                return Refusal(
                    403,
                    f"Host {host!r} is not a loopback name; {self.what} answers only localhost, "
                    "127.0.0.1 and the names in VOICEBOX_ALLOWED_HOSTS (DNS rebinding guard)",
                )
        if origin is None:
            if self.token is not None and not _bearer_matches(authorization, self.token):
                return Refusal(
                    403,
                    f"requests without an Origin must carry {self.what}'s token: "
                    "'Authorization: Bearer <token>' (printed at start and written to the token file)",
                )
            return None
        if origin == "null":
            return Refusal(
                403, f"Origin 'null' (a sandboxed or file:// page) may not use {self.what}"
            )
        if self.any_origin or origin.rstrip("/") in self.origins:
            return None
        return Refusal(
            403, f"origin {origin} may not use {self.what}; allow it with {self.setting}"
        )


def _bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def _loopback_connection(scope: Scope) -> bool:
    """Whether the request arrived on a loopback address (ASGI ``server`` is the listening socket's address)."""
    server = scope.get("server")
    return server is not None and _is_loopback_ip(str(server[0]))


class GuardMiddleware:
    """Pure ASGI, outermost: refuses before CORS, authentication, routing or body parsing."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, str] = {}
        for name, value in scope.get("headers", ()):
            if name in (b"origin", b"host", b"authorization") and name not in headers:
                headers[name] = value.decode("latin-1")
        refusal = self.policy.check(
            headers.get(b"origin"),
            headers.get(b"host"),
            loopback_connection=_loopback_connection(scope),
            authorization=headers.get(b"authorization"),
        )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        log.warning("refused %s %s: %s", scope.get("method"), scope.get("path"), refusal.detail)
        body = json.dumps({"detail": refusal.detail}).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
