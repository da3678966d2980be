"""The ``path`` of a job's envelope: one origin-form path on the local server, or a ``ValueError`` saying why not.

Why so strict: the path is the part of a job that could point the worker somewhere else (``@evil.host/``,
``//host``, a scheme) or past the routes it means (``..`` segments, encoded or double-encoded). It is checked on
the raw text and after one and two rounds of percent-decoding (uvicorn decodes once before routing; the second
round catches double encoding). Pure and cheap: no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

MAX_PATH_LENGTH = 2048

# RFC 3986 pchar plus "/" (no "@": user-info has no business in a path on our own server).
_PATH_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:%/]*")
_QUERY_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:%/?@]*")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (CR, LF, NUL, DEL ...): never allowed in a request line."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def check_path(raw: str) -> tuple[str, list[tuple[str, str]]]:
    """Validate an origin-form path; return (path without query, query items).

    Raises ``ValueError`` with a message a caller can act on. Checked forms: empty, too long, control characters
    (CR/LF included), backslashes, anything not starting with a single ``/`` (schemes, ``//host``, ``@host``),
    user-info ``@``, fragments, characters outside RFC 3986, malformed or encoded separators, and ``.``/``..``
    segments in the raw, once-decoded and twice-decoded forms.
    """
    _check_raw_form(raw)
    path, sep, query = raw.partition("?")
    if "@" in path:
        raise ValueError("must not contain '@' (user-info or host syntax)")
    if not _PATH_RE.fullmatch(path):
        raise ValueError("contains characters outside RFC 3986; percent-encode them")
    if _BAD_ESCAPE_RE.search(raw):
        raise ValueError("contains a malformed percent-escape")
    _check_decoded_forms(path)
    items: list[tuple[str, str]] = []
    if sep:
        if not _QUERY_RE.fullmatch(query):
            raise ValueError("query string contains characters outside RFC 3986")
        items = parse_qsl(query, keep_blank_values=True)
    return path, items


def _check_raw_form(raw: str) -> None:
    """The checks on the path as sent: it must be one origin-form path on the local server."""
    if raw == "":
        raise ValueError("must not be empty; give a path such as '/health'")
    if len(raw) > MAX_PATH_LENGTH:
        raise ValueError(f"is longer than {MAX_PATH_LENGTH} characters")
    if has_control(raw):
        raise ValueError("contains control characters (CR/LF included)")
    if "\\" in raw:
        raise ValueError("contains a backslash")
    if _SCHEME_RE.match(raw) or "://" in raw:
        raise ValueError("must be a path on the local server, not a URL with a scheme")
    if not raw.startswith("/"):
        raise ValueError("must be an origin-form path starting with '/' (no host, no '@host')")
    if raw.startswith("//"):
        raise ValueError("must not start with '//' (that names another host)")
    if "#" in raw:
        raise ValueError("must not contain a fragment ('#')")


def _check_decoded_forms(path: str) -> None:
    """The path, once- and twice-decoded, must not hide what the raw form may not show."""
    forms = [path]
    decoded = path
    for _ in range(2):
        decoded = unquote(decoded)
        forms.append(decoded)
    for form in forms:
        if has_control(form):
            raise ValueError("contains encoded control characters")
        if "\\" in form:
            raise ValueError("contains an encoded backslash")
        if "//" in form or "@" in form:
            raise ValueError("contains an encoded '//' or '@'")
        if any(segment in {".", ".."} for segment in form.split("/")):
            raise ValueError("contains '.' or '..' segments (also percent-encoded)")
