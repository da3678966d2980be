"""The corpus of hostile RunPod job inputs, through ``JobHandler`` in front of the real app (fake engines).

Why through the handler and the real app: ``test_serverless_envelope.py`` checks the envelope parser alone and
``test_serverless_handler.py`` the handler in front of a stand-in app. What a RunPod caller can actually do is
send one of these jobs to a worker whose app holds a volume; so here each bad job must come back as
``{"error": "<field>: ..."}`` naming the field to fix, the app must not see a request at all, and the volume
must be byte-for-byte as it was (no file, no database publish). Framing headers a job sets (Host,
Content-Length, Transfer-Encoding, ...) are not errors: they are dropped, and the app sees the handler's own.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.app import create_app
from backend.config import Settings
from backend.serverless.handler import JobHandler
from backend.services.container import Services
from tests.support.api import api_settings_for, audio_bytes, fresh_volume

UPLOAD_LIMIT_MB = "0.05"  # 52,428 bytes: an oversized file is cheap to build
B64_OK = base64.b64encode(b"abc").decode()


@dataclass
class Worker:
    settings: Settings
    hits: list[tuple[str, str, dict[str, str]]]
    run: Callable[..., list[dict]]


@pytest.fixture
def worker(tmp_path: Path, volume_template: Path) -> Iterator[Worker]:
    """The real app on a fresh volume behind a JobHandler over ASGI; ``hits`` records what the app saw."""
    volume = fresh_volume(volume_template, tmp_path / "volume")
    settings = api_settings_for(volume, tmp_path / "local", VOICEBOX_MAX_UPLOAD_MB=UPLOAD_LIMIT_MB)
    services = Services.create(settings)
    app = create_app(settings, services=services)
    hits: list[tuple[str, str, dict[str, str]]] = []

    async def recording(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            hits.append((scope["method"], scope["path"], headers))
        await app(scope, receive, send)

    def run(*inputs: Any) -> list[dict]:
        async def main() -> list[dict]:
            transport = httpx.ASGITransport(app=recording)
            async with httpx.AsyncClient(transport=transport) as client:
                handler = JobHandler(settings, base_url="http://127.0.0.1:1", client=client)
                return [await handler({"id": f"job-{i}", "input": x}) for i, x in enumerate(inputs)]

        return asyncio.run(main())

    try:
        yield Worker(settings, hits, run)
    finally:
        services.close()


def volume_state(settings: Settings) -> dict[str, tuple[int, int]]:
    """Every file on the volume with its (size, mtime_ns): a refused job must change none of them."""
    out = {}
    for path in sorted(settings.volume.rglob("*")):
        if path.is_file():
            st = os.stat(path)
            out[str(path.relative_to(settings.volume))] = (st.st_size, st.st_mtime_ns)
    return out


def file_job(**spec: Any) -> dict:
    return {"path": "/profiles/p/samples", "files": {"file": spec}, "form": {"reference_text": "x"}}


OVERSIZED = base64.b64encode(audio_bytes(2.0)).decode()  # ~96 KB decoded, over the 52 KB limit

#: job input → the field its error must name. Grouped as in the issue: shape, method, body, uploads, params,
#: SSRF paths, header smuggling, admin routes.
CORPUS: dict[str, tuple[Any, str]] = {
    # -- input not an object
    "input-null": (None, "input"),
    "input-list": (["GET", "/health"], "input"),
    "input-string": ("GET /health", "input"),
    "input-number": (3, "input"),
    # -- path missing or not a string
    "path-missing": ({"method": "GET"}, "input.path"),
    "path-number": ({"path": 3}, "input.path"),
    "path-null": ({"path": None}, "input.path"),
    "path-list": ({"path": ["/health"]}, "input.path"),
    # -- method
    "method-trace": ({"method": "TRACE", "path": "/health"}, "input.method"),
    "method-connect": ({"method": "CONNECT", "path": "/health"}, "input.method"),
    "method-number": ({"method": 7, "path": "/health"}, "input.method"),
    "method-with-path": ({"method": "GET /admin", "path": "/health"}, "input.method"),
    # -- JSON body
    "body-list": ({"path": "/profiles", "body": [{"name": "x"}]}, "input.body"),
    "body-string": ({"path": "/profiles", "body": '{"name": "x"}'}, "input.body"),
    "body-on-get": ({"method": "GET", "path": "/profiles", "body": {"a": 1}}, "input.body"),
    "body-and-files": (
        {
            "path": "/profiles/import",
            "body": {"a": 1},
            "files": {"file": {"content_base64": B64_OK}},
        },
        "input.body",
    ),
    # -- uploads
    "base64-invalid": (file_job(content_base64="!!!!"), "input.files.file.content_base64"),
    "base64-unpadded": (file_job(content_base64="QUJ"), "input.files.file.content_base64"),
    "base64-oversized": (file_job(content_base64=OVERSIZED), "input.files.file.content_base64"),
    "files-total-oversized": (
        {
            "path": "/profiles/import",
            "files": {
                "a": {"content_base64": base64.b64encode(b"y" * 30_000).decode()},
                "b": {"content_base64": base64.b64encode(b"y" * 30_000).decode()},
            },
        },
        "input.files",
    ),
    "file-not-an-object": ({"path": "/x", "files": {"file": B64_OK}}, "input.files.file"),
    "filename-traversal": (
        file_job(content_base64=B64_OK, filename="../../etc/passwd"),
        "input.files.file.filename",
    ),
    "content-type-crlf": (
        file_job(content_base64=B64_OK, content_type="audio/wav\r\nX-Injected: 1"),
        "input.files.file.content_type",
    ),
    # -- params and form
    "params-nested-object": ({"path": "/history", "params": {"a": {"b": 1}}}, "input.params.a"),
    "params-nested-list": ({"path": "/history", "params": {"a": [[1]]}}, "input.params.a"),
    "form-nested": ({"path": "/profiles/import", "form": {"f": {"x": 1}}}, "input.form.f"),
    "unknown-field": ({"path": "/health", "url": "http://evil.example/"}, "input.url"),
    # -- SSRF: paths that would leave the local server or the route table
    "ssrf-double-slash-host": ({"method": "GET", "path": "//evil.example/x"}, "input.path"),
    "ssrf-at-host": ({"method": "GET", "path": "@evil.example/"}, "input.path"),
    "ssrf-at-in-path": ({"method": "GET", "path": "/x@evil.example"}, "input.path"),
    "ssrf-scheme-http": ({"method": "GET", "path": "http://evil.example/"}, "input.path"),
    "ssrf-scheme-file": ({"method": "GET", "path": "file:///etc/passwd"}, "input.path"),
    "ssrf-no-leading-slash": ({"method": "GET", "path": "evil.example/x"}, "input.path"),
    "ssrf-dotdot": ({"method": "GET", "path": "/../etc/passwd"}, "input.path"),
    "ssrf-encoded-dotdot": ({"method": "GET", "path": "/a/%2e%2e/b"}, "input.path"),
    "ssrf-double-encoded-dotdot": ({"method": "GET", "path": "/a/%252e%252e/b"}, "input.path"),
    "ssrf-encoded-slashes": ({"method": "GET", "path": "/%2f%2fevil.example/"}, "input.path"),
    "ssrf-crlf": ({"method": "GET", "path": "/health\r\nHost: evil.example"}, "input.path"),
    "ssrf-encoded-crlf": ({"method": "GET", "path": "/a%0d%0aHost:%20evil"}, "input.path"),
    "ssrf-control-char": ({"method": "GET", "path": "/health\x01"}, "input.path"),
    "ssrf-encoded-nul": ({"method": "GET", "path": "/a%00b"}, "input.path"),
    "ssrf-backslash": ({"method": "GET", "path": "/a\\..\\b"}, "input.path"),
    "ssrf-encoded-backslash": ({"method": "GET", "path": "/a%5c..%5cb"}, "input.path"),
    # -- header smuggling: CR/LF/NUL in a value, or a name that is not a token
    "header-crlf-host": (
        {"method": "GET", "path": "/health", "headers": {"X-A": "a\r\nHost: evil.example"}},
        "input.headers.X-A",
    ),
    "header-lf": (
        {"method": "GET", "path": "/health", "headers": {"X-A": "a\nX-B: c"}},
        "input.headers.X-A",
    ),
    "header-nul": (
        {"method": "GET", "path": "/health", "headers": {"X-A": "a\0b"}},
        "input.headers.X-A",
    ),
    "header-crlf-in-name": (
        {"method": "GET", "path": "/health", "headers": {"X\r\nHost": "evil"}},
        "input.headers",
    ),
    "header-not-a-string": (
        {"method": "GET", "path": "/health", "headers": {"Content-Length": 5}},
        "input.headers.Content-Length",
    ),
    # -- admin routes (VOICEBOX_ALLOW_ADMIN_JOBS unset)
    "admin-models-load": ({"path": "/models/load"}, "input.path"),
    "admin-models-unload-encoded": ({"path": "/models/un%6Coad/"}, "input.path"),
    "admin-volume-probe": ({"path": "/volume/probe", "body": {"quick": True}}, "input.path"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_job_is_refused_naming_the_field(worker: Worker, case: str) -> None:
    job, field = CORPUS[case]
    before = volume_state(worker.settings)
    (answer,) = worker.run(job)
    assert set(answer) == {"error"}, (case, answer)
    assert answer["error"].startswith(f"{field}: "), (case, answer["error"])
    assert worker.hits == [], f"{case}: the app saw a request"
    assert volume_state(worker.settings) == before, f"{case}: the volume changed"


def test_framing_headers_are_dropped_not_forwarded(worker: Worker) -> None:
    """Host, Content-Length, Transfer-Encoding and hop-by-hop headers from a job never reach the app."""
    smuggled = {
        "Host": "evil.example",
        "Content-Length": "0",
        "Transfer-Encoding": "chunked",
        "Connection": "close",
        "Upgrade": "h2c",
        "Expect": "100-continue",
        "X-Keep": "kept",
    }
    (answer,) = worker.run(
        {"path": "/profiles", "headers": smuggled, "body": {"name": "Framed", "language": "en"}}
    )
    assert answer["status_code"] == 200, answer
    assert answer["body"]["name"] == "Framed"  # the body arrived whole despite "Content-Length: 0"
    ((method, path, seen),) = worker.hits
    assert (method, path) == ("POST", "/profiles")
    assert seen["host"] == "127.0.0.1:1"
    assert seen["x-keep"] == "kept"
    assert "transfer-encoding" not in seen and "upgrade" not in seen and "expect" not in seen
    assert seen.get("content-length") != "0"


def test_a_30_mib_upload_job_is_refused_before_decoding(
    tmp_path: Path,
    volume_template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acceptance: a 30 MiB file in ``files`` (40 MiB of base64) with the default settings. The handler must
    refuse it from its length, naming the field, without decoding it or forwarding it; the memory the job
    costs beyond its own input stays small."""
    import tracemalloc

    import backend.serverless.envelope as envelope

    volume = fresh_volume(volume_template, tmp_path / "volume")
    settings = api_settings_for(volume, tmp_path / "local")  # defaults: the per-job cap applies
    assert settings.max_job_upload_bytes == 15_000_000 < settings.max_upload_bytes
    payload = base64.b64encode(os.urandom(30 * 1024 * 1024)).decode()
    job = {
        "id": "big",
        "input": {
            "path": "/transcribe",
            "files": {"file": {"filename": "big.wav", "content_base64": payload}},
        },
    }

    def no_decoding(*_args: Any, **_kwargs: Any) -> bytes:
        raise AssertionError("the upload was decoded before being refused")

    monkeypatch.setattr(envelope.base64, "b64decode", no_decoding)
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async def main() -> dict:
        async with httpx.AsyncClient(transport=httpx.MockTransport(transport)) as client:
            handler = JobHandler(settings, base_url="http://127.0.0.1:1", client=client)
            tracemalloc.start()
            try:
                return await handler(job)
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                assert peak < 4 * 1024 * 1024, f"refusing the job allocated {peak} bytes"

    answer = asyncio.run(main())
    assert answer["error"].startswith("input.files.file.content_base64: decodes to 31457280 bytes")
    assert (
        "VOICEBOX_MAX_JOB_UPLOAD_MB" in answer["error"] and "voicebox/imports/" in answer["error"]
    )
    assert sent == []
    assert payload not in answer["error"]


def test_a_huge_refused_text_leaves_no_spill_on_the_volume(worker: Worker) -> None:
    """15M characters fit RunPod's 20 MB /runsync cap; the 422 used to repeat them, pass the answer budget and
    be spilled to ``voicebox/exports/`` -- a refused request left a 15 MB file. Now the answer is small."""
    (answer,) = worker.run(
        {"path": "/generate", "body": {"profile_id": "p", "text": "B" * 15_000_000}}
    )
    assert answer["status_code"] == 422 and "spilled" not in answer
    assert len(str(answer)) < 4000
    assert "15000000 characters" in str(answer["body"])
    assert list(worker.settings.exports_dir.iterdir()) == []
