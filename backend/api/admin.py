"""Which routes are admin: declared on the route itself, read back from the route table by both gates.

Why on the route: the two gates -- the standalone server's key check (``backend/api/auth.py``, admin keys) and
the RunPod job handler (``VOICEBOX_ALLOW_ADMIN_JOBS``) -- used to keep their own lists, and they drifted
(``/models/load`` was admin in one only). Now a route that changes engine or volume state says so where it is
declared::

    @router.post("/models/load", openapi_extra=ADMIN)

and ``admin_table(routes)`` builds the one list both gates use. The marker is also in the OpenAPI document
(``x-voicebox-admin: true``), so a client can see which operations need an admin key.
``tests/test_admin_routes.py`` checks that every state-changing route outside the library is marked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = [
    "ADMIN",
    "ADMIN_KEY",
    "AdminRoute",
    "AdminTable",
    "admin_table",
    "decoded_route",
    "flat_routes",
]

ADMIN_KEY = "x-voicebox-admin"
#: ``openapi_extra`` of an admin route.
ADMIN: dict[str, Any] = {ADMIN_KEY: True}


def decoded_route(path: str) -> str:
    """The path as the app routes it (uvicorn percent-decodes once), without a trailing slash."""
    route = unquote(path)
    return route.rstrip("/") or "/"


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str  # the route's template, e.g. /models/{name}
    regex: re.Pattern[str]  # what the app routes with (Starlette's compiled template)


@dataclass(frozen=True)
class AdminTable:
    routes: tuple[AdminRoute, ...]

    def matches(self, method: str, raw_path: str) -> AdminRoute | None:
        """The admin route ``method raw_path`` reaches, matched on the path as the app routes it
        (percent-decoded once, no query, no trailing slash): ``/models/%6Coad`` is ``/models/load``."""
        route = decoded_route(raw_path.partition("?")[0])
        for entry in self.routes:
            if method.upper() == entry.method and entry.regex.match(route):
                return entry
        return None

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self.matches(*item) is not None


def flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes of an app or router, with included routers opened up (recent FastAPI keeps an included router
    as one entry of ``app.routes``). The API's routers are included without a prefix, so paths are the app's."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes)
        else:
            yield route


def admin_table(routes: Iterable[Any]) -> AdminTable:
    """Every (method, route) marked ``ADMIN`` among ``routes`` (an app's or routers' ``.routes``)."""
    found: list[AdminRoute] = []
    for route in flat_routes(routes):
        extra = getattr(route, "openapi_extra", None) or {}
        if not extra.get(ADMIN_KEY):
            continue
        for method in sorted(route.methods):
            found.append(AdminRoute(method, route.path, route.path_regex))
    return AdminTable(tuple(found))
